//! Go's string semantics where PromQL depends on them.
//!
//! A PromQL string literal is a Go string: `"\xc5"` and `"\305"` are single *bytes*, so a
//! literal may hold bytes that are not UTF-8 (and Prometheus then rejects it as a label
//! name). promql-parser decodes such escapes as the code points U+0080..U+00FF instead, and
//! a Rust string cannot hold the raw bytes anyway. So before parsing, [`decode_literals`]
//! decodes every literal that has byte escapes the way Go does and, where the bytes are not
//! UTF-8, stands each stray byte in for by a private-use character (U+10FE80..U+10FEFF),
//! which [`is_utf8_name`] rejects and [`go_quote`] prints back as `\xNN`.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Stray byte `b` (0x80..=0xFF) is held as `char::from_u32(RAW_BYTE_BASE + b)`.
const RAW_BYTE_BASE: u32 = 0x10_FE00;

fn raw_byte_char(b: u8) -> char {
    char::from_u32(RAW_BYTE_BASE + u32::from(b)).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// The stray byte a character stands for, if it stands for one.
pub(crate) fn raw_byte(c: char) -> Option<u8> {
    let u = c as u32;
    (RAW_BYTE_BASE + 0x80..=RAW_BYTE_BASE + 0xFF)
        .contains(&u)
        .then(|| (u - RAW_BYTE_BASE) as u8)
}

/// Prometheus 3's `LabelName.IsValid()`: any non-empty UTF-8 string.
pub(crate) fn is_utf8_name(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| raw_byte(c).is_some())
}

/// Go's `%s` of the string: stray bytes shown as `\xNN` (Go writes the raw bytes).
pub(crate) fn go_display(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| raw_byte(c).is_some()) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match raw_byte(c) {
            Some(b) => {
                let _ = write!(out, "\\x{b:02x}");
            }
            None => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Go's `strconv.Quote` (`%q`).
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if let Some(b) = raw_byte(c) {
            let _ = write!(out, "\\x{b:02x}");
            continue;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_ascii() || is_printable(c) => out.push(c),
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `unicode.IsPrint` for non-ASCII characters.
fn is_printable(c: char) -> bool {
    let u = c as u32;
    !(c.is_control()
        || c.is_whitespace()
        || (0xE000..=0xF8FF).contains(&u)
        || (0xF_0000..).contains(&u)
        || matches!(u, 0xAD | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x206F | 0xFEFF))
}

/// Rewrites the query's quoted string literals that contain byte escapes (`\xNN`, `\NNN`)
/// into literals promql-parser decodes to what Go decodes (see the module docs). Anything
/// else, and any literal Go would reject, is left for the parser.
pub(crate) fn decode_literals(input: &str) -> Cow<'_, str> {
    if !input.contains('\\') {
        return Cow::Borrowed(input);
    }
    let b = input.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
                i += 1;
            }
            q @ (b'"' | b'\'') => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != q && b[i] != b'\n' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if i >= b.len() || b[i] != q {
                    break; // unterminated: the parser says so
                }
                let inner = &input[start + 1..i];
                i += 1;
                if let Some(decoded) = unquote_bytes(inner, q) {
                    out.push_str(&input[copied..start]);
                    out.push_str(&requote(&decoded));
                    copied = i;
                }
            }
            _ => i += 1,
        }
    }
    if copied == 0 {
        return Cow::Borrowed(input);
    }
    out.push_str(&input[copied..]);
    Cow::Owned(out)
}

/// Go's unquoting of a literal's body to bytes, when it has a byte escape (else None, as
/// for anything Go rejects: the parser then has its say).
fn unquote_bytes(inner: &str, quote: u8) -> Option<String> {
    let s = inner.as_bytes();
    let mut bytes = Vec::with_capacity(s.len());
    let mut had_byte_escape = false;
    let mut i = 0;
    let hex = |d: &[u8]| -> Option<u32> {
        std::str::from_utf8(d)
            .ok()
            .and_then(|t| u32::from_str_radix(t, 16).ok())
    };
    while i < s.len() {
        if s[i] != b'\\' {
            bytes.push(s[i]);
            i += 1;
            continue;
        }
        let c = *s.get(i + 1)?;
        i += 2;
        match c {
            b'a' => bytes.push(0x07),
            b'b' => bytes.push(0x08),
            b'f' => bytes.push(0x0c),
            b'n' => bytes.push(b'\n'),
            b'r' => bytes.push(b'\r'),
            b't' => bytes.push(b'\t'),
            b'v' => bytes.push(0x0b),
            b'\\' => bytes.push(b'\\'),
            b'\'' | b'"' if c == quote => bytes.push(c),
            b'x' => {
                let v = hex(s.get(i..i + 2)?)?;
                bytes.push(v as u8);
                had_byte_escape = true;
                i += 2;
            }
            b'0'..=b'7' => {
                let d = s.get(i..i + 2)?;
                let mut v = u32::from(c - b'0');
                for x in d {
                    if !(b'0'..=b'7').contains(x) {
                        return None;
                    }
                    v = v * 8 + u32::from(x - b'0');
                }
                bytes.push(u8::try_from(v).ok()?);
                had_byte_escape = true;
                i += 2;
            }
            b'u' | b'U' => {
                let n = if c == b'u' { 4 } else { 8 };
                let ch = char::from_u32(hex(s.get(i..i + n)?)?)?;
                let mut buf = [0; 4];
                bytes.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                i += n;
            }
            _ => return None,
        }
    }
    if !had_byte_escape {
        return None;
    }
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        out.extend(chunk.invalid().iter().map(|b| raw_byte_char(*b)));
    }
    Some(out)
}

/// A double-quoted literal promql-parser decodes to exactly `s`.
fn requote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::{Expr, parse};

    fn string_arg(q: &str, i: usize) -> String {
        let Expr::Call(c) = parse(q).unwrap() else {
            panic!("not a call: {q}")
        };
        match &*c.args.args[i] {
            Expr::StringLiteral(s) => s.val.clone(),
            other => panic!("not a string: {other:?}"),
        }
    }

    #[test]
    fn byte_escapes_decode_as_go_does() {
        // stray bytes: not UTF-8, so not a valid label name, and quoted back as Go does
        let s = string_arg(r#"label_replace(x, "a\xc5z", "", "", "")"#, 1);
        assert!(!is_utf8_name(&s));
        assert_eq!(go_quote(&s), r#""a\xc5z""#);
        assert_eq!(go_display(&s), r"a\xc5z");
        let s = string_arg(r#"label_replace(x, '\377', "", "", "")"#, 1);
        assert_eq!(go_quote(&s), r#""\xff""#);
        // bytes that form UTF-8 are that text (promql-parser alone would give "Ã\u{85}")
        let s = string_arg(r#"label_replace(x, "\xc3\x85", "", "", "")"#, 1);
        assert_eq!(s, "Å");
        assert!(is_utf8_name(&s));
        // other escapes survive the rewrite
        let s = string_arg(r#"label_replace(x, "q\"\\\n\u00e9\x41", "", "", "")"#, 1);
        assert_eq!(s, "q\"\\\né\x41");
        // untouched: no byte escape, raw strings, comments
        assert!(matches!(
            decode_literals(r#"f("a\n", `\x00`) # "\xff""#),
            Cow::Borrowed(_)
        ));
        assert_eq!(go_quote("é\u{1}\t"), r#""é\x01\t""#);
    }
}
