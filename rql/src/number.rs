//! Exact decimal comparison the way Ditto does it with `java.math.BigDecimal`, and the Java text
//! of numbers for Ditto's "compare by string representation" fallback.

use std::cmp::Ordering;

/// An exact decimal: `(-1)^neg * 0.d1d2d3... * 10^exp`; `digits` has no leading or trailing
/// zeros, an empty `digits` is zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decimal {
    neg: bool,
    digits: Vec<u8>,
    exp: i64,
    /// Java's `BigDecimal.toString()` of the value as Ditto would have created it.
    java: String,
}

impl Decimal {
    pub(crate) fn from_i64(i: i64) -> Decimal {
        Self::from_integer_text(&i.to_string())
    }

    pub(crate) fn from_u64(u: u64) -> Decimal {
        Self::from_integer_text(&u.to_string())
    }

    fn from_integer_text(text: &str) -> Decimal {
        let mut d = parse_parts(text).expect("an integer is a decimal");
        d.java = text.to_string();
        d
    }

    /// A `java.lang.Double` turned into a `BigDecimal` by Ditto (`new BigDecimal(d.toString())`).
    pub(crate) fn from_f64(f: f64) -> Decimal {
        let java_double = java_double_to_string(f);
        let mut d = parse_parts(&format!("{f:e}")).expect("a finite f64 is a decimal");
        d.java = java_bigdecimal_to_string(&java_double);
        d
    }

    /// `new BigDecimal(String)`; `None` where Java throws `NumberFormatException`.
    pub(crate) fn parse_java(text: &str) -> Option<Decimal> {
        let mut d = parse_parts(text)?;
        d.java = java_bigdecimal_to_string(text);
        Some(d)
    }

    /// `BigDecimal.toString()`.
    pub(crate) fn java_string(&self) -> &str {
        &self.java
    }

    fn signum(&self) -> i8 {
        if self.digits.is_empty() {
            0
        } else if self.neg {
            -1
        } else {
            1
        }
    }

    /// `BigDecimal.compareTo`: by value, ignoring the scale (`2.0` equals `2`).
    pub(crate) fn compare(&self, other: &Decimal) -> Ordering {
        let (a, b) = (self.signum(), other.signum());
        if a != b {
            return a.cmp(&b);
        }
        if a == 0 {
            return Ordering::Equal;
        }
        let magnitude = self
            .exp
            .cmp(&other.exp)
            .then_with(|| self.digits.cmp(&other.digits));
        if a < 0 {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

/// Parses Java's `BigDecimal` string syntax: `[+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?`.
fn parse_parts(text: &str) -> Option<Decimal> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut neg = false;
    if let Some(&sign @ (b'+' | b'-')) = bytes.first() {
        neg = sign == b'-';
        i = 1;
    }
    let mut mantissa = Vec::new();
    let mut point_at: Option<usize> = None;
    let mut any_digit = false;
    while i < bytes.len() {
        match bytes[i] {
            b @ b'0'..=b'9' => {
                mantissa.push(b - b'0');
                any_digit = true;
            }
            b'.' if point_at.is_none() => point_at = Some(mantissa.len()),
            b'e' | b'E' => break,
            _ => return None,
        }
        i += 1;
    }
    if !any_digit {
        return None;
    }
    let mut exponent: i64 = 0;
    if i < bytes.len() {
        // at 'e' / 'E'
        let rest = &text[i + 1..];
        let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
        if digits.is_empty() || digits.len() > 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        exponent = rest.parse::<i64>().ok()?;
        if exponent > i64::from(i32::MAX) || exponent < i64::from(i32::MIN) {
            return None;
        }
    }
    let int_len = point_at.unwrap_or(mantissa.len()) as i64;
    // value = 0.mantissa * 10^(int_len + exponent); normalize leading and trailing zeros.
    let leading = mantissa.iter().take_while(|d| **d == 0).count();
    let trailing = mantissa[leading..]
        .iter()
        .rev()
        .take_while(|d| **d == 0)
        .count();
    let digits = mantissa[leading..mantissa.len() - trailing].to_vec();
    let exp = int_len + exponent - leading as i64;
    Some(Decimal {
        neg,
        digits,
        exp,
        java: String::new(),
    })
}

/// Java's `Double.toString(double)` (shortest digits, plain between 10^-3 and 10^7, otherwise
/// computerized scientific notation such as `1.0E10`).
fn java_double_to_string(f: f64) -> String {
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.to_string();
    }
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i64 = exp.parse().expect("{:e} has an integer exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f < 0.0 { "-" } else { "" };
    let abs = f.abs();
    if (1e-3..1e7).contains(&abs) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            let padded = format!("{digits:0<int_len$}");
            let (int_part, frac) = padded.split_at(int_len);
            let frac = if frac.is_empty() { "0" } else { frac };
            format!("{sign}{int_part}.{frac}")
        } else {
            let zeros = "0".repeat((-exp - 1) as usize);
            format!("{sign}0.{zeros}{digits}")
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let rest = if rest.is_empty() { "0" } else { rest };
        format!("{sign}{first}.{rest}E{exp}")
    }
}

/// Java's `new BigDecimal(text).toString()` for text in BigDecimal syntax.
fn java_bigdecimal_to_string(text: &str) -> String {
    let (neg, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (significand, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i64>().unwrap_or(0)),
        None => (body, 0),
    };
    let (int_part, frac) = significand.split_once('.').unwrap_or((significand, ""));
    let all: String = format!("{int_part}{frac}");
    let trimmed = all.trim_start_matches('0');
    let coefficient = if trimmed.is_empty() { "0" } else { trimmed };
    let scale = frac.len() as i64 - exponent;
    let sign = if neg && coefficient != "0" { "-" } else { "" };
    let adjusted = -scale + (coefficient.len() as i64 - 1);
    if scale == 0 {
        format!("{sign}{coefficient}")
    } else if scale > 0 && adjusted >= -6 {
        let scale = scale as usize;
        if coefficient.len() > scale {
            let (a, b) = coefficient.split_at(coefficient.len() - scale);
            format!("{sign}{a}.{b}")
        } else {
            let zeros = "0".repeat(scale - coefficient.len());
            format!("{sign}0.{zeros}{coefficient}")
        }
    } else {
        let (first, rest) = coefficient.split_at(1);
        let mut s = format!("{sign}{first}");
        if !rest.is_empty() {
            s.push('.');
            s.push_str(rest);
        }
        s.push('E');
        if adjusted > 0 {
            s.push('+');
        }
        s.push_str(&adjusted.to_string());
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_double_text() {
        assert_eq!(java_double_to_string(1.5), "1.5");
        assert_eq!(java_double_to_string(100.0), "100.0");
        assert_eq!(java_double_to_string(0.001), "0.001");
        assert_eq!(java_double_to_string(1e10), "1.0E10");
        assert_eq!(java_double_to_string(-1.234e-5), "-1.234E-5");
        assert_eq!(java_double_to_string(1234567.0), "1234567.0");
        assert_eq!(java_double_to_string(12345678.0), "1.2345678E7");
    }

    #[test]
    fn java_bigdecimal_text() {
        assert_eq!(java_bigdecimal_to_string("100.0"), "100.0");
        assert_eq!(java_bigdecimal_to_string("1.0E10"), "1.0E+10");
        assert_eq!(java_bigdecimal_to_string("1.234E-5"), "0.00001234");
        assert_eq!(java_bigdecimal_to_string("1E-7"), "1E-7");
        assert_eq!(java_bigdecimal_to_string("-42"), "-42");
        assert_eq!(java_bigdecimal_to_string("007"), "7");
    }

    #[test]
    fn decimal_comparison_is_by_value() {
        let d = |s: &str| Decimal::parse_java(s).unwrap();
        assert_eq!(d("2.0").compare(&d("2")), Ordering::Equal);
        assert_eq!(d("-0.0").compare(&d("0")), Ordering::Equal);
        assert_eq!(d("10").compare(&d("9.99")), Ordering::Greater);
        assert_eq!(d("-10").compare(&d("-9.99")), Ordering::Less);
        assert_eq!(d("1e3").compare(&d("999")), Ordering::Greater);
        assert_eq!(d(".5").compare(&d("0.50")), Ordering::Equal);
        assert_eq!(
            Decimal::from_f64(0.1).compare(&d("0.1")),
            Ordering::Equal,
            "Ditto goes through Double.toString, so 0.1 is exactly 0.1"
        );
        assert_eq!(
            Decimal::from_i64(i64::MAX).compare(&Decimal::from_u64(u64::MAX)),
            Ordering::Less
        );
        for bad in [
            "",
            "-",
            "+",
            ".",
            "1e",
            "e5",
            "1.2.3",
            " 1",
            "1 ",
            "abc",
            "1e99999999999",
        ] {
            assert!(Decimal::parse_java(bad).is_none(), "{bad:?} must not parse");
        }
    }
}
