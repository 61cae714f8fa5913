//! Parsing of Kubernetes resource quantities (`100m`, `1Gi`, `2`, `1e3`) into integers.

/// Parses a quantity and returns its value multiplied by 1000 (milli-units), rounded up as
/// `resource.Quantity.MilliValue()` does. `None` when the string is not a valid quantity.
pub fn parse_milli(s: &str) -> Option<i128> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let (neg, body) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = body.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(body.len());
    let (number, suffix) = body.split_at(num_end);
    if number.is_empty() || number == "." {
        return None;
    }
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if frac_part.contains('.') {
        return None;
    }
    let mut mantissa: i128 = 0;
    for c in int_part.chars().chain(frac_part.chars()) {
        mantissa = mantissa.checked_mul(10)?.checked_add(i128::from(c.to_digit(10)? as u8))?;
    }
    // value = mantissa * 10^dec_exp * 2^bin_exp
    let mut dec_exp: i32 = -(frac_part.len() as i32);
    let mut bin_exp: u32 = 0;
    match suffix {
        "" => {}
        "n" => dec_exp -= 9,
        "u" => dec_exp -= 6,
        "m" => dec_exp -= 3,
        "k" => dec_exp += 3,
        "M" => dec_exp += 6,
        "G" => dec_exp += 9,
        "T" => dec_exp += 12,
        "P" => dec_exp += 15,
        "E" => dec_exp += 18,
        "Ki" => bin_exp = 10,
        "Mi" => bin_exp = 20,
        "Gi" => bin_exp = 30,
        "Ti" => bin_exp = 40,
        "Pi" => bin_exp = 50,
        "Ei" => bin_exp = 60,
        _ => {
            let exp = suffix.strip_prefix(['e', 'E'])?;
            let e: i32 = exp.parse().ok()?;
            dec_exp = dec_exp.checked_add(e)?;
        }
    }
    dec_exp += 3; // milli
    let mut v = mantissa.checked_mul(1i128.checked_shl(bin_exp)?)?;
    if dec_exp >= 0 {
        v = v.checked_mul(10i128.checked_pow(dec_exp as u32)?)?;
    } else {
        let d = 10i128.checked_pow((-dec_exp) as u32).unwrap_or(i128::MAX);
        v = (v + d - 1) / d; // round up like MilliValue()
    }
    Some(if neg { -v } else { v })
}

/// Milli-value clamped to i64 (0 for unparsable input).
pub fn milli(s: &str) -> i64 {
    parse_milli(s).map(clamp).unwrap_or(0)
}

/// Whole-unit value rounded up (as `Quantity.Value()`), clamped to i64 (0 for unparsable input).
pub fn value(s: &str) -> i64 {
    parse_milli(s).map(|m| if m >= 0 { (m + 999) / 1000 } else { m / 1000 }).map(clamp).unwrap_or(0)
}

fn clamp(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

#[cfg(test)]
mod tests {
    use super::parse_milli;

    #[test]
    fn milli_values_round_up() {
        let cases = [
            ("1", Some(1_000)),
            ("10Gi", Some(10 * (1 << 30) * 1000)),
            ("500M", Some(500_000_000_000)),
            ("1.5Gi", Some(1_610_612_736_000)),
            ("2e3", Some(2_000_000)),
            ("100m", Some(100)),
            ("0.5", Some(500)),
            ("1n", Some(1)),
            ("-1k", Some(-1_000_000)),
            ("", None),
            ("Gi", None),
            ("1.2.3", None),
            ("10GB", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_milli(text), expected, "{text}");
        }
    }
}
