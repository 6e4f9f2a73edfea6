//! The expanding series notation shared by Prometheus' PromQL test language (`load`) and
//! promtool's `input_series`: space-separated items, each one of
//!
//! - a number (`1`, `-2.5`, `1e3`, `Inf`, `-Inf`, `NaN`) or `stale`;
//! - `axn`: `a` repeated `n + 1` times;
//! - `a+bxn` / `a-bxn`: `a`, `a+b`, ... `n + 1` values, accumulated by repeated addition
//!   as Prometheus does (so floating-point results match it bit for bit);
//! - `_` (one missing sample) and `_xn` (`n` missing samples).

use crate::store::stale_nan;

/// One expanded value of a series description.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SeriesValue {
    Value(f64),
    /// No sample at this step (`_`).
    Missing,
    /// A stale marker (`stale`).
    Stale,
}

impl SeriesValue {
    /// The value to store: `None` for a missing step, the stale NaN for `stale`.
    pub fn to_sample_value(self) -> Option<f64> {
        match self {
            SeriesValue::Value(v) => Some(v),
            SeriesValue::Missing => None,
            SeriesValue::Stale => Some(stale_nan()),
        }
    }
}

/// A malformed series description. `column` is 1-based, in characters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct NotationError {
    pub column: usize,
    pub message: String,
}

/// Items larger than this are almost certainly typos and would exhaust memory.
const MAX_REPEAT: u64 = 10_000_000;

/// Expands a series description such as `0+10x5 _x2 stale 3`.
pub fn parse_series_values(s: &str) -> Result<Vec<SeriesValue>, NotationError> {
    let mut out = Vec::new();
    let mut col = 0usize; // 0-based char column of the current position
    let mut rest = s;
    loop {
        let trimmed = rest.trim_start();
        col += rest[..rest.len() - trimmed.len()].chars().count();
        if trimmed.is_empty() {
            break;
        }
        let end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
        let item = &trimmed[..end];
        parse_item(item, col + 1, &mut out)?;
        col += item.chars().count();
        rest = &trimmed[end..];
    }
    Ok(out)
}

fn parse_item(item: &str, column: usize, out: &mut Vec<SeriesValue>) -> Result<(), NotationError> {
    let err = |message: String| NotationError { column, message };
    let (head, times) = match split_times(item) {
        Some((head, n)) => {
            let n: u64 = n.parse().map_err(|_| {
                err(format!(
                    "expected a repeat count after 'x' in {item:?}, got {n:?}"
                ))
            })?;
            if n > MAX_REPEAT {
                return Err(err(format!("repeat count {n} is larger than {MAX_REPEAT}")));
            }
            (head, Some(n))
        }
        None => (item, None),
    };
    if head == "_" {
        // `_xn` is n missing samples, unlike `axn` which is n + 1 values.
        out.extend(std::iter::repeat_n(
            SeriesValue::Missing,
            times.unwrap_or(1) as usize,
        ));
        return Ok(());
    }
    if head == "stale" {
        let n = times.map_or(1, |n| n + 1);
        out.extend(std::iter::repeat_n(SeriesValue::Stale, n as usize));
        return Ok(());
    }
    let (start, step) = match split_increment(head) {
        Some(i) if times.is_some() => {
            let a = parse_number(&head[..i]).ok_or_else(|| {
                err(format!(
                    "expected a number, 'stale' or '_', got {:?}",
                    &head[..i]
                ))
            })?;
            let b = parse_number(&head[i..]).ok_or_else(|| {
                err(format!(
                    "expected an increment like +1 or -0.5, got {:?}",
                    &head[i..]
                ))
            })?;
            (a, b)
        }
        _ => {
            let a = parse_number(head).ok_or_else(|| {
                err(format!(
                    "expected a number, 'stale', '_' or an expansion like 1+2x3, got {head:?}"
                ))
            })?;
            (a, 0.0)
        }
    };
    match times {
        None => out.push(SeriesValue::Value(start)),
        Some(n) => {
            let mut v = start;
            for _ in 0..=n {
                out.push(SeriesValue::Value(v));
                v += step;
            }
        }
    }
    Ok(())
}

/// Splits `headxN` at the last `x` when something precedes it. Hex numbers are not
/// allowed in series descriptions (as in Prometheus' lexer), so `0x10` is `0` repeated.
fn split_times(item: &str) -> Option<(&str, &str)> {
    let i = item.rfind('x')?;
    (i > 0).then(|| (&item[..i], &item[i + 1..]))
}

/// Byte index of the sign that starts the increment in `a+b` / `a-b`, skipping a leading
/// sign and exponent signs (`1e-3`).
fn split_increment(head: &str) -> Option<usize> {
    let bytes = head.as_bytes();
    (1..bytes.len())
        .find(|&i| (bytes[i] == b'+' || bytes[i] == b'-') && !matches!(bytes[i - 1], b'e' | b'E'))
}

/// A number: decimal, `Inf`, `NaN`, with an optional sign.
fn parse_number(s: &str) -> Option<f64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let v = if body.eq_ignore_ascii_case("inf") {
        f64::INFINITY
    } else if body.eq_ignore_ascii_case("nan") {
        f64::NAN
    } else if body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        body.parse::<f64>().ok()?
    } else {
        return None;
    };
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::SeriesValue::*;
    use super::*;

    fn vals(s: &str) -> Vec<SeriesValue> {
        parse_series_values(s).unwrap()
    }

    #[test]
    fn expansions() {
        assert_eq!(
            vals("0+10x3"),
            vec![Value(0.0), Value(10.0), Value(20.0), Value(30.0)]
        );
        assert_eq!(vals("5-1x2"), vec![Value(5.0), Value(4.0), Value(3.0)]);
        assert_eq!(vals("-1-1x1"), vec![Value(-1.0), Value(-2.0)]);
        assert_eq!(vals("7x2"), vec![Value(7.0); 3]);
        assert_eq!(vals("_x3"), vec![Missing; 3]);
        assert_eq!(vals("1 _ 2"), vec![Value(1.0), Missing, Value(2.0)]);
        assert_eq!(vals("stale"), vec![Stale]);
        assert_eq!(vals("1e-3 2E+2"), vec![Value(0.001), Value(200.0)]);
        assert_eq!(vals(""), vec![]);
    }

    #[test]
    fn special_values() {
        let v = vals("Inf -Inf +Inf NaN 0x10");
        assert_eq!(v[0], Value(f64::INFINITY));
        assert_eq!(v[1], Value(f64::NEG_INFINITY));
        assert_eq!(v[2], Value(f64::INFINITY));
        assert!(matches!(v[3], Value(x) if x.is_nan()));
        assert_eq!(v[4], Value(0.0));
        assert_eq!(v.len(), 15);
        assert_eq!(vals("Inf+0x1"), vec![Value(f64::INFINITY); 2]);
    }

    #[test]
    fn accumulates_like_prometheus() {
        // Repeated addition, not a + i*b: 0.1 added ten times is not 1.0.
        let v = vals("0+0.1x10");
        let mut acc = 0.0;
        for _ in 0..10 {
            acc += 0.1;
        }
        assert_eq!(v[10], Value(acc));
    }

    #[test]
    fn errors_name_the_column() {
        let e = parse_series_values("1 2 foo").unwrap_err();
        assert_eq!(e.column, 5);
        assert!(e.message.contains("foo"), "{e}");
        let e = parse_series_values("  1+x3").unwrap_err();
        assert_eq!(e.column, 3);
        assert!(parse_series_values("1+2xq").is_err());
        assert!(parse_series_values("1x99999999999").is_err());
    }
}
