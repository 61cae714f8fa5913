//! Canonical `resource.Quantity` strings, as `Quantity.String()` prints them.
//!
//! Stored objects may hold quantities as the client wrote them (`1024Mi`, `0.5`); the Go
//! printers print the canonical form (`1Gi`, `500m`). Values are kept exact as an integer
//! mantissa and a power of ten, rounded up to nano precision like the Go parser does.
//! Anything unparseable is printed unchanged.

use serde_json::Value;

use crate::table::format::at;

/// Returns the canonical form of the quantity at `path`, or `0` when unset.
pub(crate) fn canonical_at(value: &Value, path: &[&str]) -> String {
    match at(value, path) {
        Some(Value::String(text)) => canonical(text),
        Some(Value::Number(number)) => canonical(&number.to_string()),
        _ => "0".to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    DecimalSi,
    BinarySi,
    DecimalExponent,
}

/// Returns the canonical form of `text`, or `text` itself when it does not parse.
pub(crate) fn canonical(text: &str) -> String {
    parse(text).map_or_else(
        || text.to_string(),
        |(mantissa, scale, format)| render(mantissa, scale, format),
    )
}

/// Parses into `mantissa * 10^scale` with its format.
fn parse(text: &str) -> Option<(i128, i32, Format)> {
    let (negative, rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let number_end = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return None;
    }
    let digits = format!("{whole}{fraction}");
    if digits.len() > 30 {
        return None;
    }
    let mut mantissa: i128 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
    let mut scale = -(fraction.len() as i32);
    let format = match suffix {
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => {
            let power = match suffix {
                "Ki" => 10,
                "Mi" => 20,
                "Gi" => 30,
                "Ti" => 40,
                "Pi" => 50,
                _ => 60,
            };
            mantissa = mantissa.checked_mul(1i128 << power)?;
            Format::BinarySi
        }
        "n" | "u" | "m" | "" | "k" | "M" | "G" | "T" | "P" | "E" => {
            scale += match suffix {
                "n" => -9,
                "u" => -6,
                "m" => -3,
                "" => 0,
                "k" => 3,
                "M" => 6,
                "G" => 9,
                "T" => 12,
                "P" => 15,
                _ => 18,
            };
            Format::DecimalSi
        }
        exponent if exponent.starts_with(['e', 'E']) => {
            scale += exponent[1..].parse::<i32>().ok()?;
            Format::DecimalExponent
        }
        _ => return None,
    };
    // Precision finer than nano rounds up (away from zero), as the Go parser does.
    while scale < -9 {
        let carry = mantissa % 10 != 0;
        mantissa = mantissa / 10 + i128::from(carry);
        scale += 1;
    }
    if negative {
        mantissa = -mantissa;
    }
    Some((mantissa, scale, format))
}

fn render(mut mantissa: i128, mut scale: i32, format: Format) -> String {
    if mantissa == 0 {
        return "0".to_string();
    }
    while mantissa % 10 == 0 {
        mantissa /= 10;
        scale += 1;
    }
    let integral = scale >= 0;
    if format == Format::BinarySi && integral && mantissa.abs() * 10i128.pow(scale as u32) >= 1024 {
        let mut value = mantissa * 10i128.pow(scale as u32);
        let mut power = 0;
        while value % 1024 == 0 && power < 6 {
            value /= 1024;
            power += 1;
        }
        let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][power];
        return format!("{value}{suffix}");
    }
    // Lower the exponent to a multiple of three.
    let shift = scale.rem_euclid(3);
    mantissa *= 10i128.pow(shift as u32);
    scale -= shift;
    let suffix = match (format, scale) {
        (Format::DecimalExponent, 0) => String::new(),
        (Format::DecimalExponent, exponent) => format!("e{exponent}"),
        (_, -9) => "n".to_string(),
        (_, -6) => "u".to_string(),
        (_, -3) => "m".to_string(),
        (_, 0) => String::new(),
        (_, 3) => "k".to_string(),
        (_, 6) => "M".to_string(),
        (_, 9) => "G".to_string(),
        (_, 12) => "T".to_string(),
        (_, 15) => "P".to_string(),
        (_, 18) => "E".to_string(),
        (_, exponent) => format!("e{exponent}"),
    };
    format!("{mantissa}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::canonical;

    #[test]
    fn quantities_print_in_canonical_form() {
        let cases = [
            ("10Gi", "10Gi"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("0.5Gi", "512Mi"),
            ("0.5Ki", "512"),
            ("500m", "500m"),
            ("0.5", "500m"),
            ("1.5", "1500m"),
            ("1000m", "1"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("2", "2"),
            ("1e3", "1e3"),
            ("0", "0"),
            ("0Gi", "0"),
            ("-1Gi", "-1Gi"),
            ("1n", "1n"),
            ("0.0000000001", "1n"),
            ("bogus", "bogus"),
        ];
        for (input, want) in cases {
            assert_eq!(canonical(input), want, "canonical({input})");
        }
    }
}
