//! The lexer and parser of the label-selector string syntax, following apimachinery's
//! `labels.Lexer` and `labels.Parser` token for token so that every error message matches.

use std::collections::BTreeSet;

use super::label::{Operator, Requirement, SelectorError};
use crate::validation::{is_qualified_name, FieldError};

/// The binary operators, as Kubernetes lists them in "expected: ..." messages.
const BINARY_OPERATORS: &str = "in, notin, =, ==, !=, gt, lt";

/// Parses a selector string into its requirements, in input order.
pub(super) fn parse_requirements(input: &str) -> Result<Vec<Requirement>, SelectorError> {
    Parser { items: lex(input), position: 0 }.parse()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Error,
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn keyword(literal: &str) -> Option<Token> {
    Some(match literal {
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::DoesNotExist,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::GreaterThan,
        "in" => Token::In,
        "<" => Token::LessThan,
        "!=" => Token::NotEquals,
        "notin" => Token::NotIn,
        "(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special_symbol(byte: u8) -> bool {
    matches!(byte, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits the input into tokens, always ending with `EndOfString`. Token boundaries are ASCII
/// bytes, so every literal is a valid `&str` slice.
fn lex(input: &str) -> Vec<(Token, String)> {
    let bytes = input.as_bytes();
    let mut position = 0;
    let mut items = Vec::new();
    loop {
        while position < bytes.len() && is_whitespace(bytes[position]) {
            position += 1;
        }
        if position == bytes.len() {
            items.push((Token::EndOfString, String::new()));
            return items;
        }
        let start = position;
        if is_special_symbol(bytes[position]) {
            // Longest run of special symbols that still forms a token, as `scanSpecialSymbol`.
            let mut last: Option<(Token, usize)> = None;
            while position < bytes.len() && is_special_symbol(bytes[position]) {
                position += 1;
                match keyword(&input[start..position]) {
                    Some(token) => last = Some((token, position)),
                    None if last.is_some() => {
                        position -= 1;
                        break;
                    }
                    None => {}
                }
            }
            match last {
                Some((token, end)) => {
                    position = end;
                    items.push((token, input[start..end].to_string()));
                }
                None => items.push((
                    Token::Error,
                    format!("error expected: keyword found '{}'", &input[start..position]),
                )),
            }
        } else {
            while position < bytes.len()
                && !is_special_symbol(bytes[position])
                && !is_whitespace(bytes[position])
            {
                position += 1;
            }
            let literal = &input[start..position];
            items.push((keyword(literal).unwrap_or(Token::Identifier), literal.to_string()));
        }
    }
}

/// Whether `in`/`notin` are operators (after a key) or plain values.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser {
    items: Vec<(Token, String)>,
    position: usize,
}

/// Outcome of parsing one requirement before it is wrapped in a `SelectorError`.
enum RequirementFailure {
    Syntax(String),
    Invalid(Vec<FieldError>),
}

impl From<RequirementFailure> for SelectorError {
    fn from(failure: RequirementFailure) -> Self {
        match failure {
            RequirementFailure::Syntax(message) => SelectorError::RequirementSyntax { message },
            RequirementFailure::Invalid(errors) => SelectorError::InvalidRequirement { errors },
        }
    }
}

type Step<T> = Result<T, RequirementFailure>;

fn syntax<T>(message: String) -> Step<T> {
    Err(RequirementFailure::Syntax(message))
}

impl Parser {
    fn item(&self, context: Context) -> (Token, String) {
        // The last item is always EndOfString; reading past it keeps returning it.
        let index = self.position.min(self.items.len() - 1);
        let (token, literal) = self.items[index].clone();
        let token = match (context, token) {
            (Context::Values, Token::In | Token::NotIn) => Token::Identifier,
            _ => token,
        };
        (token, literal)
    }

    fn lookahead(&self, context: Context) -> (Token, String) {
        self.item(context)
    }

    fn consume(&mut self, context: Context) -> (Token, String) {
        let item = self.item(context);
        self.position += 1;
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let (token, literal) = self.lookahead(Context::Values);
            match token {
                Token::Identifier | Token::DoesNotExist => {
                    requirements.push(self.parse_requirement()?);
                    let (token, literal) = self.consume(Context::Values);
                    match token {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let (next, next_literal) = self.lookahead(Context::Values);
                            if next != Token::Identifier && next != Token::DoesNotExist {
                                return Err(SelectorError::Syntax {
                                    message: format!(
                                        "found '{next_literal}', expected: identifier after ','"
                                    ),
                                });
                            }
                        }
                        _ => {
                            return Err(SelectorError::Syntax {
                                message: format!(
                                    "found '{literal}', expected: ',' or 'end of string'"
                                ),
                            })
                        }
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => {
                    return Err(SelectorError::Syntax {
                        message: format!(
                            "found '{literal}', expected: !, identifier, or 'end of string'"
                        ),
                    })
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Step<Requirement> {
        let (key, operator) = self.parse_key_and_infer_operator()?;
        if let Some(operator @ (Operator::Exists | Operator::DoesNotExist)) = operator {
            return Requirement::new(key, operator, Vec::new())
                .map_err(RequirementFailure::Invalid);
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        // Kubernetes collects values in a set and passes them sorted.
        let values: Vec<String> = values.into_iter().collect();
        Requirement::new(key, operator, values).map_err(RequirementFailure::Invalid)
    }

    fn parse_key_and_infer_operator(&mut self) -> Step<(String, Option<Operator>)> {
        let mut operator = None;
        let (mut token, mut literal) = self.consume(Context::Values);
        if token == Token::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            (token, literal) = self.consume(Context::Values);
        }
        if token != Token::Identifier {
            return syntax(format!("found '{literal}', expected: identifier"));
        }
        let messages = is_qualified_name(&literal);
        if !messages.is_empty() {
            // Kubernetes passes a nil field path here, which prints as "<nil>".
            return Err(RequirementFailure::Invalid(vec![FieldError::invalid(
                "<nil>",
                literal.as_str(),
                messages.join("; "),
            )]));
        }
        let (next, _) = self.lookahead(Context::Values);
        if (next == Token::EndOfString || next == Token::Comma) && operator.is_none() {
            operator = Some(Operator::Exists);
        }
        Ok((literal, operator))
    }

    fn parse_operator(&mut self) -> Step<Operator> {
        let (token, literal) = self.consume(Context::KeyAndOperator);
        Ok(match token {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => return syntax(format!("found '{literal}', expected: {BINARY_OPERATORS}")),
        })
    }

    fn parse_values(&mut self) -> Step<BTreeSet<String>> {
        let (token, literal) = self.consume(Context::Values);
        if token != Token::OpenPar {
            return syntax(format!("found '{literal}' expected: '('"));
        }
        let (token, literal) = self.lookahead(Context::Values);
        match token {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                let (token, _) = self.consume(Context::Values);
                if token != Token::ClosedPar {
                    return syntax(format!("found '{literal}', expected: ')'"));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok([String::new()].into())
            }
            _ => syntax(format!("found '{literal}', expected: ',', ')' or identifier")),
        }
    }

    /// Parses `a,b,,c` up to (not including) the closing parenthesis; empty entries are "".
    /// Consecutive commas follow the fixed parser of Kubernetes 1.35 (1.33 rejects `(a,,)`).
    fn parse_identifiers_list(&mut self) -> Step<BTreeSet<String>> {
        let mut values = BTreeSet::new();
        loop {
            let (token, literal) = self.consume(Context::Values);
            match token {
                Token::Identifier => {
                    values.insert(literal);
                    let (next, next_literal) = self.lookahead(Context::Values);
                    match next {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(values),
                        _ => {
                            return syntax(format!("found '{next_literal}', expected: ',' or ')'"))
                        }
                    }
                }
                Token::Comma => {
                    if values.is_empty() {
                        values.insert(String::new());
                    }
                    let (next, _) = self.lookahead(Context::Values);
                    if next == Token::ClosedPar {
                        values.insert(String::new());
                        return Ok(values);
                    }
                    if next == Token::Comma {
                        values.insert(String::new());
                    }
                }
                _ => return syntax(format!("found '{literal}', expected: ',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Step<BTreeSet<String>> {
        let (token, _) = self.lookahead(Context::Values);
        if token == Token::EndOfString || token == Token::Comma {
            return Ok([String::new()].into());
        }
        let (token, literal) = self.consume(Context::Values);
        if token == Token::Identifier {
            return Ok([literal].into());
        }
        syntax(format!("found '{literal}', expected: identifier"))
    }
}
