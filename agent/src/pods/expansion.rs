//! `$(VAR)` expansion as kubelet applies it to env values, command, args and `subPathExpr`.
//!
//! `$(NAME)` is replaced by the mapping's value; an unknown name is left as written; `$$` is an
//! escaped `$`; a `$` before anything else, or an unclosed `$(`, is kept verbatim.

/// Expands every `$(NAME)` in `input` with `lookup`; `None` keeps the reference as written.
pub(crate) fn expand(input: &str, mut lookup: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let mut chars = after.chars();
        match chars.next() {
            None => {
                out.push('$');
                rest = after;
            }
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('(') => match after.find(')') {
                Some(close) => {
                    let name = &after[1..close];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            Some(other) => {
                out.push('$');
                out.push(other);
                rest = chars.as_str();
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn references_expand_like_kubelet() {
        let lookup = |name: &str| match name {
            "A" => Some("alpha".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let cases = [
            ("$(A)", "alpha"),
            ("x-$(A)-y", "x-alpha-y"),
            ("$(A)$(A)", "alphaalpha"),
            ("$(MISSING)", "$(MISSING)"),
            ("$(EMPTY)!", "!"),
            ("$$(A)", "$(A)"),
            ("$$$(A)", "$alpha"),
            ("$A", "$A"),
            ("$(A", "$(A"),
            ("cost: 5$", "cost: 5$"),
            ("$é", "$é"),
            ("no refs", "no refs"),
        ];
        for (input, expected) in cases {
            assert_eq!(expand(input, lookup), expected, "{input}");
        }
    }
}
