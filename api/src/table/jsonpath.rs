//! The JSONPath subset CRD printer columns use, with `client-go/util/jsonpath`'s
//! missing-keys-allowed semantics: a missing key or an out-of-range index yields no
//! result rather than an error.
//!
//! Supported: `.field`, `['field']`, escaped dots (`.metadata.labels.app\.kubernetes\.io/name`),
//! `[n]` and `[-n]`, `[start:end]`, `[*]` and `.*`, `..field`, and filters
//! `[?(@.path)]` / `[?(@.path op literal)]` with `== != < <= > >=`. An optional `$`
//! root and surrounding `{}` are accepted.

use serde_json::Value;
use thiserror::Error;

/// A JSONPath expression that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid JSONPath {path:?} at byte {position}: {message}")]
pub struct JsonPathError {
    pub path: String,
    pub position: usize,
    pub message: &'static str,
}

/// A parsed JSONPath.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    Slice(Option<i64>, Option<i64>),
    Wildcard,
    Descendants,
    Filter(Filter),
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    left: Vec<Step>,
    comparison: Option<(Operator, Value)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Equal,
    NotEqual,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

impl JsonPath {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<JsonPath, JsonPathError> {
        let trimmed = text.trim();
        let inner = trimmed
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'))
            .unwrap_or(trimmed)
            .trim();
        let inner = inner.strip_prefix('$').unwrap_or(inner);
        let mut parser = Parser { text, source: inner.as_bytes(), position: 0 };
        let steps = parser.steps(false)?;
        Ok(JsonPath { steps })
    }

    /// Returns every value the path selects, in document order.
    pub fn find<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        evaluate(&self.steps, vec![root])
    }
}

fn evaluate<'a>(steps: &[Step], mut current: Vec<&'a Value>) -> Vec<&'a Value> {
    for step in steps {
        let mut next = Vec::new();
        for value in current {
            apply(step, value, &mut next);
        }
        current = next;
    }
    current
}

fn apply<'a>(step: &Step, value: &'a Value, out: &mut Vec<&'a Value>) {
    match step {
        Step::Field(name) => out.extend(value.as_object().and_then(|map| map.get(name))),
        Step::Index(index) => {
            if let Some(list) = value.as_array() {
                let resolved = if *index < 0 { list.len() as i64 + index } else { *index };
                out.extend(usize::try_from(resolved).ok().and_then(|i| list.get(i)));
            }
        }
        Step::Slice(start, end) => {
            if let Some(list) = value.as_array() {
                let length = list.len() as i64;
                let clamp = |bound: i64| {
                    if bound < 0 {
                        (length + bound).max(0)
                    } else {
                        bound.min(length)
                    }
                };
                let from = clamp(start.unwrap_or(0)) as usize;
                let to = clamp(end.unwrap_or(length)) as usize;
                if from < to {
                    out.extend(&list[from..to]);
                }
            }
        }
        Step::Wildcard => match value {
            Value::Array(list) => out.extend(list),
            Value::Object(map) => out.extend(map.values()),
            _ => {}
        },
        Step::Descendants => descendants(value, out),
        Step::Filter(filter) => {
            if let Some(list) = value.as_array() {
                out.extend(list.iter().filter(|item| filter.matches(item)));
            }
        }
    }
}

fn descendants<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(value);
    match value {
        Value::Array(list) => list.iter().for_each(|item| descendants(item, out)),
        Value::Object(map) => map.values().for_each(|item| descendants(item, out)),
        _ => {}
    }
}

impl Filter {
    fn matches(&self, item: &Value) -> bool {
        let found = evaluate(&self.left, vec![item]);
        let Some(left) = found.first() else { return false };
        let Some((operator, right)) = &self.comparison else { return true };
        let ordering = match (left, right) {
            (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
            (Value::Number(a), Value::Number(b)) => {
                a.as_f64().zip(b.as_f64()).and_then(|(a, b)| a.partial_cmp(&b))
            }
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            _ => None,
        };
        let Some(ordering) = ordering else { return *operator == Operator::NotEqual };
        match operator {
            Operator::Equal => ordering.is_eq(),
            Operator::NotEqual => ordering.is_ne(),
            Operator::Less => ordering.is_lt(),
            Operator::LessOrEqual => ordering.is_le(),
            Operator::Greater => ordering.is_gt(),
            Operator::GreaterOrEqual => ordering.is_ge(),
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    source: &'a [u8],
    position: usize,
}

impl Parser<'_> {
    fn error(&self, message: &'static str) -> JsonPathError {
        JsonPathError { path: self.text.to_string(), position: self.position, message }
    }

    fn peek(&self) -> Option<u8> {
        self.source.get(self.position).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.position += 1;
        }
    }

    /// Parses steps until the end, or (inside a filter) until a space, operator or `)`.
    fn steps(&mut self, in_filter: bool) -> Result<Vec<Step>, JsonPathError> {
        let mut steps = Vec::new();
        while let Some(byte) = self.peek() {
            match byte {
                b'.' => {
                    self.position += 1;
                    if self.eat(b'.') {
                        steps.push(Step::Descendants);
                    }
                    if self.eat(b'*') {
                        steps.push(Step::Wildcard);
                    } else if self.peek() != Some(b'[') {
                        let name = self.field_name(in_filter)?;
                        if name.is_empty() {
                            // A lone `.` (the root) selects nothing further.
                            if steps.is_empty() && self.peek().is_none() {
                                break;
                            }
                            return Err(self.error("empty field name"));
                        }
                        steps.push(Step::Field(name));
                    }
                }
                b'[' => {
                    self.position += 1;
                    steps.push(self.bracket()?);
                }
                b' ' | b')' | b'=' | b'!' | b'<' | b'>' if in_filter => break,
                _ if steps.is_empty() && !in_filter => {
                    // Tolerate a path without its leading dot (`metadata.name`).
                    let name = self.field_name(false)?;
                    steps.push(Step::Field(name));
                }
                _ => return Err(self.error("unexpected character")),
            }
        }
        Ok(steps)
    }

    fn field_name(&mut self, in_filter: bool) -> Result<String, JsonPathError> {
        let mut name = Vec::new();
        while let Some(byte) = self.peek() {
            match byte {
                b'\\' => {
                    self.position += 1;
                    let escaped = self.peek().ok_or_else(|| self.error("dangling escape"))?;
                    name.push(escaped);
                    self.position += 1;
                }
                b'.' | b'[' => break,
                b' ' | b')' | b'=' | b'!' | b'<' | b'>' if in_filter => break,
                b'{' | b'}' | b']' | b'(' | b')' | b'\'' | b'"' => {
                    return Err(self.error("unexpected character in field name"))
                }
                _ => {
                    name.push(byte);
                    self.position += 1;
                }
            }
        }
        String::from_utf8(name).map_err(|_| self.error("field name is not UTF-8"))
    }

    fn bracket(&mut self) -> Result<Step, JsonPathError> {
        self.skip_spaces();
        let step = match self.peek() {
            Some(b'*') => {
                self.position += 1;
                Step::Wildcard
            }
            Some(quote @ (b'\'' | b'"')) => {
                self.position += 1;
                Step::Field(self.quoted(quote)?)
            }
            Some(b'?') => {
                self.position += 1;
                self.filter()?
            }
            _ => self.index_or_slice()?,
        };
        self.skip_spaces();
        if !self.eat(b']') {
            return Err(self.error("expected ]"));
        }
        Ok(step)
    }

    fn quoted(&mut self, quote: u8) -> Result<String, JsonPathError> {
        let start = self.position;
        while self.peek().is_some_and(|byte| byte != quote) {
            self.position += 1;
        }
        let text = std::str::from_utf8(&self.source[start..self.position])
            .map_err(|_| self.error("string is not UTF-8"))?
            .to_string();
        if !self.eat(quote) {
            return Err(self.error("unterminated string"));
        }
        Ok(text)
    }

    fn integer(&mut self) -> Result<Option<i64>, JsonPathError> {
        self.skip_spaces();
        let start = self.position;
        if self.peek() == Some(b'-') {
            self.position += 1;
        }
        while self.peek().is_some_and(|byte| byte.is_ascii_digit()) {
            self.position += 1;
        }
        if start == self.position {
            return Ok(None);
        }
        let text = std::str::from_utf8(&self.source[start..self.position]).unwrap_or("");
        text.parse().map(Some).map_err(|_| self.error("invalid integer"))
    }

    fn index_or_slice(&mut self) -> Result<Step, JsonPathError> {
        let start = self.integer()?;
        self.skip_spaces();
        if self.eat(b':') {
            let end = self.integer()?;
            return Ok(Step::Slice(start, end));
        }
        start.map(Step::Index).ok_or_else(|| self.error("expected index"))
    }

    fn filter(&mut self) -> Result<Step, JsonPathError> {
        if !self.eat(b'(') {
            return Err(self.error("expected ( after ?"));
        }
        self.skip_spaces();
        if !self.eat(b'@') {
            return Err(self.error("filter must start with @"));
        }
        let left = self.steps(true)?;
        self.skip_spaces();
        let comparison = if self.peek() == Some(b')') {
            None
        } else {
            let operator = self.operator()?;
            self.skip_spaces();
            Some((operator, self.literal()?))
        };
        self.skip_spaces();
        if !self.eat(b')') {
            return Err(self.error("expected ) closing the filter"));
        }
        Ok(Step::Filter(Filter { left, comparison }))
    }

    fn operator(&mut self) -> Result<Operator, JsonPathError> {
        let operators = [
            ("==", Operator::Equal),
            ("!=", Operator::NotEqual),
            ("<=", Operator::LessOrEqual),
            (">=", Operator::GreaterOrEqual),
            ("<", Operator::Less),
            (">", Operator::Greater),
        ];
        for (text, operator) in operators {
            if self.source[self.position..].starts_with(text.as_bytes()) {
                self.position += text.len();
                return Ok(operator);
            }
        }
        Err(self.error("expected a comparison operator"))
    }

    fn literal(&mut self) -> Result<Value, JsonPathError> {
        if let Some(quote @ (b'\'' | b'"')) = self.peek() {
            self.position += 1;
            return self.quoted(quote).map(Value::String);
        }
        let start = self.position;
        while self.peek().is_some_and(|byte| !matches!(byte, b' ' | b')')) {
            self.position += 1;
        }
        let text = std::str::from_utf8(&self.source[start..self.position]).unwrap_or("");
        match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            number => serde_json::from_str::<serde_json::Number>(number)
                .map(Value::Number)
                .map_err(|_| self.error("expected a string, number or boolean literal")),
        }
    }
}
