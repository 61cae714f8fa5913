//! Reads Kubernetes resource quantities (`100m`, `1Gi`, `2`, `1e3`) as integers, the way
//! `resource.Quantity.MilliValue()` and `Value()` do: rounded up, never rounded down.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Returns the quantity times 1000 (milli-units), rounded up; `None` when it does not parse.
pub fn parse_milli(text: &str) -> Option<i128> {
    let text = text.trim();
    let (negative, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let number_end = body.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(body.len());
    let (number, suffix) = body.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return None;
    }
    let mut mantissa: i128 = 0;
    for digit in whole.chars().chain(fraction.chars()) {
        mantissa = mantissa.checked_mul(10)?.checked_add(i128::from(digit.to_digit(10)?))?;
    }
    // value = mantissa * 10^decimal_exponent * 2^binary_exponent
    let mut decimal_exponent = -i32::try_from(fraction.len()).ok()?;
    let mut binary_exponent = 0u32;
    match suffix {
        "" => {}
        "n" => decimal_exponent -= 9,
        "u" => decimal_exponent -= 6,
        "m" => decimal_exponent -= 3,
        "k" => decimal_exponent += 3,
        "M" => decimal_exponent += 6,
        "G" => decimal_exponent += 9,
        "T" => decimal_exponent += 12,
        "P" => decimal_exponent += 15,
        "E" => decimal_exponent += 18,
        "Ki" => binary_exponent = 10,
        "Mi" => binary_exponent = 20,
        "Gi" => binary_exponent = 30,
        "Ti" => binary_exponent = 40,
        "Pi" => binary_exponent = 50,
        "Ei" => binary_exponent = 60,
        other => {
            let exponent: i32 = other.strip_prefix(['e', 'E'])?.parse().ok()?;
            decimal_exponent = decimal_exponent.checked_add(exponent)?;
        }
    }
    decimal_exponent += 3;
    let mut value = mantissa.checked_mul(1i128.checked_shl(binary_exponent)?)?;
    if decimal_exponent >= 0 {
        value = value.checked_mul(10i128.checked_pow(decimal_exponent.unsigned_abs())?)?;
    } else {
        let divisor = 10i128.checked_pow(decimal_exponent.unsigned_abs()).unwrap_or(i128::MAX);
        value = (value + divisor - 1) / divisor;
    }
    Some(if negative { -value } else { value })
}

/// Milli-value of an optional quantity (0 when absent or unparsable), clamped to `i64`.
pub fn milli(quantity: Option<&Quantity>) -> i64 {
    quantity.and_then(|q| parse_milli(&q.0)).map(clamp).unwrap_or(0)
}

/// Whole-unit value rounded up (`Quantity.Value()`), 0 when absent or unparsable.
pub fn value(quantity: Option<&Quantity>) -> i64 {
    quantity
        .and_then(|q| parse_milli(&q.0))
        .map(|m| if m >= 0 { (m + 999) / 1000 } else { m / 1000 })
        .map(clamp)
        .unwrap_or(0)
}

fn clamp(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
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
