//! Go's formatting as Prometheus' templates produce it: `%g`-style numbers, `fmt.Sprintf`,
//! the humanizers, `time.Time`/`time.Duration` strings, and the escapers (`urlquery`, `html`,
//! `js`) and host helpers (`stripPort`, `stripDomain`) of text/template and Prometheus.

use std::fmt::Write as _;

use super::ast::Val;
use crate::common::time::civil_from_days;

// ---------------------------------------------------------------- Prometheus' humanizers

pub(super) fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return fmt_g(v, Some(4));
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", fmt_g(v, Some(4)))
}

pub(super) fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return fmt_g(v, Some(4));
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", fmt_g(v, Some(4)))
}

pub(super) fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return fmt_g(v, Some(4));
    }
    if v == 0.0 {
        return format!("{}s", fmt_g(v, Some(4)));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (secs, mins, hours, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
        if days != 0 {
            return format!("{sign}{days}d {hours}h {mins}m {secs}s");
        }
        if hours != 0 {
            return format!("{sign}{hours}h {mins}m {secs}s");
        }
        if mins != 0 {
            return format!("{sign}{mins}m {secs}s");
        }
        return format!("{sign}{}s", fmt_g(v, Some(4)));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", fmt_g(v, Some(4)))
}

/// Go's `time.Time.String()` of a Unix timestamp in UTC, as Prometheus prints it.
pub(super) fn humanize_timestamp(v: f64) -> String {
    match float_to_time_ms(v) {
        Ok(ms) => go_time(ms),
        // NaN and ±Inf print as numbers; an overflow is an error in Prometheus, shown here
        // the same way (humanizers never fail in medic).
        Err(_) => fmt_g(v, Some(4)),
    }
}

/// Prometheus' `floatToTime` through `model.Time`: seconds to milliseconds (truncated).
pub(super) fn float_to_time_ms(v: f64) -> Result<i64, String> {
    if !v.is_finite() {
        return Err("value is NaN or Inf".into());
    }
    let ns = v * 1e9;
    if ns > i64::MAX as f64 || ns < i64::MIN as f64 {
        return Err(format!(
            "{} cannot be represented as a nanoseconds timestamp since it overflows int64",
            fmt_g(v, None)
        ));
    }
    Ok((ns as i64).div_euclid(1_000_000))
}

/// Prometheus' `floatToDuration`: seconds to nanoseconds.
pub(super) fn float_to_duration_ns(v: f64) -> Result<i64, String> {
    if !v.is_finite() {
        return Err("value is NaN or Inf".into());
    }
    let ns = v * 1e9;
    if ns > i64::MAX as f64 || ns < i64::MIN as f64 {
        return Err(format!(
            "{} cannot be represented as a nanoseconds duration since it overflows int64",
            fmt_g(v, None)
        ));
    }
    Ok(ns as i64)
}

/// Go's `time.Time.String()` in UTC of a millisecond Unix timestamp:
/// `2015-06-23 13:19:44.128 +0000 UTC`.
pub(super) fn go_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let nanos = ms.rem_euclid(1000) * 1_000_000;
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    s
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `2m0s`, `1.5ms`, `0s`.
pub(crate) fn go_duration(ns: i64) -> String {
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    // digits of `u / 10^prec` with the fraction's trailing zeros removed
    let frac = |u: u64, prec: u32| -> String {
        let p = 10u64.pow(prec);
        let (int, f) = (u / p, u % p);
        if f == 0 {
            int.to_string()
        } else {
            let digits = format!("{f:0width$}", width = prec as usize);
            format!("{int}.{}", digits.trim_end_matches('0'))
        }
    };
    if u < 1_000_000_000 {
        return match u {
            0 => "0s".into(),
            u if u < 1_000 => format!("{sign}{u}ns"),
            u if u < 1_000_000 => format!("{sign}{}µs", frac(u, 3)),
            u => format!("{sign}{}ms", frac(u, 6)),
        };
    }
    let secs = u / 1_000_000_000;
    let mut out = format!("{}s", frac(u % 60_000_000_000, 9));
    let mins = secs / 60;
    if mins > 0 {
        out = format!("{}m{out}", mins % 60);
        let hours = mins / 60;
        if hours > 0 {
            out = format!("{hours}h{out}");
        }
    }
    format!("{sign}{out}")
}

// ---------------------------------------------------------------- Go's number formatting

pub(super) fn go_special(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("NaN".into())
    } else if v == f64::INFINITY {
        Some("+Inf".into())
    } else if v == f64::NEG_INFINITY {
        Some("-Inf".into())
    } else {
        None
    }
}

/// Decimal digits (no trailing zeros) and the exponent of the first digit.
pub(super) fn digits(v: f64, sig: Option<usize>) -> (bool, String, i32) {
    let s = match sig {
        Some(p) => format!("{:.*e}", p.max(1) - 1, v.abs()),
        None => format!("{:e}", v.abs()),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let mut d: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    while d.len() > 1 && d.ends_with('0') {
        d.pop();
    }
    (
        v.is_sign_negative() && v != 0.0,
        d,
        exp.parse().unwrap_or(0),
    )
}

/// Go's `%g` (`sig` None: shortest representation, as `%v` prints a float64).
pub(crate) fn fmt_g(v: f64, sig: Option<usize>) -> String {
    if let Some(s) = go_special(v) {
        return s;
    }
    let (neg, d, exp) = digits(v, sig);
    let nd = d.len() as i32;
    let dp = exp + 1;
    let mut eprec = match sig {
        Some(p) => p.max(1) as i32,
        None => 6,
    };
    if sig.is_some() && eprec > nd && nd >= dp {
        eprec = nd;
    }
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if exp < -4 || exp >= eprec {
        out.push_str(&d[..1]);
        if nd > 1 {
            out.push('.');
            out.push_str(&d[1..]);
        }
        push_exp(&mut out, exp);
    } else if dp <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-dp) as usize));
        out.push_str(&d);
    } else if dp >= nd {
        out.push_str(&d);
        out.extend(std::iter::repeat_n('0', (dp - nd) as usize));
    } else {
        out.push_str(&d[..dp as usize]);
        out.push('.');
        out.push_str(&d[dp as usize..]);
    }
    out
}

pub(super) fn push_exp(out: &mut String, exp: i32) {
    out.push('e');
    out.push(if exp < 0 { '-' } else { '+' });
    let _ = write!(out, "{:02}", exp.abs());
}

pub(super) fn fmt_e(v: f64, prec: usize) -> String {
    if let Some(s) = go_special(v) {
        return s;
    }
    let s = format!("{v:.prec$e}");
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let mut out = mant.to_string();
    push_exp(&mut out, exp.parse().unwrap_or(0));
    out
}

/// Go's `fmt.Sprintf` for the verbs templates use: %v %s %d %f %e %g %x %q %t %%.
pub(super) fn sprintf(f: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = f.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut plus, mut zero, mut space) = (false, false, false, false);
        while let Some(&fl) = chars.peek() {
            match fl {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' => space = true,
                '#' => {}
                _ => break,
            }
            chars.next();
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut prec: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            prec = Some(p.parse().unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        let num = match arg {
            Val::Num(n) => Some(*n),
            Val::Int(i) => Some(*i as f64),
            _ => None,
        };
        let mut s = match (verb, arg) {
            ('v' | 's', Val::Str(s)) => match prec {
                Some(p) => s.chars().take(p).collect(),
                None => s.clone(),
            },
            ('q', Val::Str(s)) => format!("{s:?}"),
            ('d', Val::Int(i)) => i.to_string(),
            ('x', Val::Int(i)) => format!("{i:x}"),
            ('X', Val::Int(i)) => format!("{i:X}"),
            ('x', Val::Str(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
            ('t' | 'v', Val::Bool(b)) => b.to_string(),
            ('v', Val::Int(i)) => i.to_string(),
            ('v', Val::Num(n)) => fmt_g(*n, None),
            ('f' | 'F', _) if num.is_some() => {
                let n = num.unwrap_or_default();
                go_special(n).unwrap_or_else(|| format!("{:.*}", prec.unwrap_or(6), n))
            }
            ('e', _) if num.is_some() => fmt_e(num.unwrap_or_default(), prec.unwrap_or(6)),
            ('g', _) if num.is_some() => fmt_g(num.unwrap_or_default(), prec),
            ('v', other) | ('s', other @ (Val::Time(_) | Val::Dur(_))) => to_string(other),
            (verb, other) => {
                let ty = match other {
                    Val::Num(_) => "float64",
                    Val::Int(_) => "int",
                    Val::Str(_) => "string",
                    Val::Bool(_) => "bool",
                    _ => "map[string]string",
                };
                format!("%!{verb}({ty}={})", to_string(other))
            }
        };
        if num.is_some_and(|n| n >= 0.0) && !s.starts_with('+') && "dfFeEgv".contains(verb) {
            if plus {
                s.insert(0, '+');
            } else if space {
                s.insert(0, ' ');
            }
        }
        let w: usize = width.parse().unwrap_or(0);
        let len = s.chars().count();
        if len < w {
            let pad = w - len;
            if minus {
                s.extend(std::iter::repeat_n(' ', pad));
            } else if zero && num.is_some() {
                let at = usize::from(s.starts_with(['-', '+', ' ']));
                s.insert_str(at, &"0".repeat(pad));
            } else {
                s.insert_str(0, &" ".repeat(pad));
            }
        }
        out.push_str(&s);
    }
    let extra: Vec<&Val> = args.collect();
    if !extra.is_empty() {
        out.push_str("%!(EXTRA ");
        for (i, a) in extra.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{}", to_string(a));
        }
        out.push(')');
    }
    out
}

// ---------------------------------------------------------------- escapers and hosts

/// Go's `url.QueryEscape`: unreserved bytes as they are, space as `+`, the rest `%XX`.
pub(super) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Go's `template.HTMLEscapeString`.
pub(super) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Go's `template.JSEscapeString`.
pub(super) fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c if c.is_ascii() || is_go_printable(c) => out.push(c),
            c => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
        }
    }
    out
}

/// An approximation of Go's `unicode.IsPrint` for non-ASCII runes: not a control, format,
/// separator (other than U+0020), surrogate or private-use character.
fn is_go_printable(c: char) -> bool {
    let u = c as u32;
    !(c.is_control()
        || c.is_whitespace()
        || (0xE000..=0xF8FF).contains(&u)
        || (0xF0000..).contains(&u)
        || matches!(u, 0xAD | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x206F | 0xFEFF))
}

/// Go's `net.SplitHostPort`.
pub(super) fn split_host_port(hp: &str) -> Result<(&str, &str), String> {
    let err = |why: &str| format!("address {hp}: {why}");
    let i = hp
        .rfind(':')
        .ok_or_else(|| err("missing port in address"))?;
    let (host, j, k) = if hp.starts_with('[') {
        let end = hp.find(']').ok_or_else(|| err("missing ']' in address"))?;
        if end + 1 == hp.len() {
            return Err(err("missing port in address"));
        }
        if end + 1 != i {
            return Err(if hp.as_bytes()[end + 1] == b':' {
                err("too many colons in address")
            } else {
                err("missing port in address")
            });
        }
        (&hp[1..end], 1, end + 1)
    } else {
        let host = &hp[..i];
        if host.contains(':') {
            return Err(err("too many colons in address"));
        }
        (host, 0, 0)
    };
    if hp[j..].contains('[') {
        return Err(err("unexpected '[' in address"));
    }
    if hp[k..].contains(']') {
        return Err(err("unexpected ']' in address"));
    }
    Ok((host, &hp[i + 1..]))
}

/// Prometheus' `stripPort`: the host of `host:port`, else the text unchanged.
pub(super) fn strip_port(hp: &str) -> String {
    match split_host_port(hp) {
        Ok((host, _)) => host.to_string(),
        Err(_) => hp.to_string(),
    }
}

/// Prometheus' `stripDomain`: the first label of a host name, the port kept; IP addresses
/// unchanged.
pub(super) fn strip_domain(hp: &str) -> String {
    let (host, port) = split_host_port(hp).unwrap_or((hp, ""));
    if host.parse::<std::net::IpAddr>().is_ok() {
        return hp.to_string();
    }
    let host = host.split('.').next().unwrap_or("");
    if port.is_empty() {
        host.to_string()
    } else if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The path of a URL (`pathPrefix`): what follows the authority, up to `?` or `#`.
pub(super) fn url_path(url: &str) -> &str {
    let rest = match url.find("://") {
        Some(i) => {
            let after = &url[i + 3..];
            match after.find(['/', '?', '#']) {
                Some(j) => &after[j..],
                None => "",
            }
        }
        None => url,
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

pub(super) fn print_val(v: &Val, out: &mut String) {
    match v {
        Val::Nil => out.push_str("<no value>"),
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Val::Num(n) => out.push_str(&fmt_g(*n, None)),
        Val::Str(s) => out.push_str(s),
        Val::Map(m) => {
            out.push_str("map[");
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                let _ = write!(out, "{k}:{v}");
            }
            out.push(']');
        }
        Val::Dict(m) => {
            out.push_str("map[");
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                let _ = write!(out, "{k}:");
                print_val(v, out);
            }
            out.push(']');
        }
        // Go prints the pointed-to struct: `{map[__name__:up job:x] 1}`.
        Val::Sample(s) => {
            out.push('{');
            print_val(&Val::Map(s.labels.clone()), out);
            out.push(' ');
            out.push_str(&fmt_g(s.value, None));
            out.push('}');
        }
        // Go would print the samples' addresses; their contents say more.
        Val::Samples(v) => {
            out.push('[');
            for (i, s) in v.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                print_val(&Val::Sample(s.clone()), out);
            }
            out.push(']');
        }
        Val::Time(ms) => out.push_str(&go_time(*ms)),
        Val::Dur(ns) => out.push_str(&go_duration(*ns)),
        Val::Root => out.push_str("{}"),
    }
}

pub(super) fn to_string(v: &Val) -> String {
    let mut s = String::new();
    print_val(v, &mut s);
    s
}
