//! The JSON diff `promtool test rules --diff` prints: a port of github.com/nsf/jsondiff's
//! `Compare` with its `DefaultConsoleOptions` (pretty-printed JSON, four-space indent,
//! added values green, removed red, changed yellow as `old => new`), so that medic's
//! report reads as promtool 3's.

use serde_json::Value;

/// jsondiff's verdict (its names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)]
pub enum Difference {
    FullMatch,
    /// The first document has everything of the second, and more.
    SupersetMatch,
    NoMatch,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tag {
    Normal,
    Added,
    Removed,
    Changed,
}

impl Tag {
    fn begin(self) -> &'static str {
        match self {
            Tag::Normal => "",
            Tag::Added => "\x1b[0;32m",
            Tag::Removed => "\x1b[0;31m",
            Tag::Changed => "\x1b[0;33m",
        }
    }

    fn end(self) -> &'static str {
        match self {
            Tag::Normal => "",
            _ => "\x1b[0m",
        }
    }
}

struct Ctx {
    level: usize,
    last: Option<Tag>,
    diff: Option<Difference>,
}

/// Compares `a` with `b`: the verdict and the annotated text.
pub fn compare(a: &Value, b: &Value) -> (Difference, String) {
    let mut ctx = Ctx {
        level: 0,
        last: None,
        diff: None,
    };
    let text = ctx.print_diff(a, b);
    (ctx.diff.unwrap_or(Difference::FullMatch), text)
}

/// Go's `strconv.Quote` for the strings labels hold.
fn quote(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => o.push_str(&format!("\\x{:02x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

impl Ctx {
    fn terminate(&mut self, buf: &mut String) {
        if let Some(t) = self.last.take() {
            buf.push_str(t.end());
        }
    }

    fn newline(&self, buf: &mut String, s: &str) {
        buf.push_str(s);
        if let Some(t) = self.last {
            buf.push_str(t.end());
        }
        buf.push('\n');
        for _ in 0..self.level {
            buf.push_str("    ");
        }
        if let Some(t) = self.last {
            buf.push_str(t.begin());
        }
    }

    fn tag(&mut self, buf: &mut String, tag: Tag) {
        if self.last == Some(tag) {
            return;
        }
        if let Some(t) = self.last {
            buf.push_str(t.end());
        }
        buf.push_str(tag.begin());
        self.last = Some(tag);
    }

    fn result(&mut self, d: Difference) {
        self.diff = match (d, self.diff) {
            (Difference::NoMatch, _) => Some(Difference::NoMatch),
            (Difference::SupersetMatch, Some(Difference::NoMatch)) => Some(Difference::NoMatch),
            (Difference::SupersetMatch, _) => Some(Difference::SupersetMatch),
            (_, Some(d)) => Some(d),
            (_, None) => Some(Difference::FullMatch),
        };
    }

    fn write_value(&mut self, buf: &mut String, v: &Value, full: bool) {
        match v {
            Value::Bool(b) => buf.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => buf.push_str(&n.to_string()),
            Value::String(s) => buf.push_str(&quote(s)),
            Value::Array(items) if full => {
                if items.is_empty() {
                    buf.push('[');
                } else {
                    self.level += 1;
                    self.newline(buf, "[");
                }
                for (i, item) in items.iter().enumerate() {
                    self.write_value(buf, item, true);
                    if i != items.len() - 1 {
                        self.newline(buf, ",");
                    } else {
                        self.level -= 1;
                        self.newline(buf, "");
                    }
                }
                buf.push(']');
            }
            Value::Array(_) => buf.push_str("[]"),
            Value::Object(m) if full => {
                if m.is_empty() {
                    buf.push('{');
                } else {
                    self.level += 1;
                    self.newline(buf, "{");
                }
                // serde_json's map is sorted by key, as jsondiff sorts them
                for (i, (k, item)) in m.iter().enumerate() {
                    buf.push_str(&quote(k));
                    buf.push_str(": ");
                    self.write_value(buf, item, true);
                    if i != m.len() - 1 {
                        self.newline(buf, ",");
                    } else {
                        self.level -= 1;
                        self.newline(buf, "");
                    }
                }
                buf.push('}');
            }
            Value::Object(_) => buf.push_str("{}"),
            Value::Null => buf.push_str("null"),
        }
    }

    fn mismatch(&mut self, buf: &mut String, a: &Value, b: &Value) {
        self.tag(buf, Tag::Changed);
        self.write_value(buf, a, false);
        buf.push_str(" => ");
        self.write_value(buf, b, false);
        self.result(Difference::NoMatch);
    }

    fn finalize(&mut self, mut buf: String) -> String {
        self.terminate(&mut buf);
        buf
    }

    fn print_diff(&mut self, a: &Value, b: &Value) -> String {
        let mut buf = String::new();
        match (a, b) {
            (Value::Null, Value::Null) => {
                self.tag(&mut buf, Tag::Normal);
                self.write_value(&mut buf, a, false);
                self.result(Difference::FullMatch);
            }
            (Value::Array(x), Value::Array(y)) => {
                let n = x.len().max(y.len());
                let items: Vec<(Option<&Value>, Option<&Value>, Option<String>)> =
                    (0..n).map(|i| (x.get(i), y.get(i), None)).collect();
                return self.collection(items, "[", "]");
            }
            (Value::Object(x), Value::Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                let items = keys
                    .into_iter()
                    .map(|k| (x.get(k), y.get(k), Some(k.clone())))
                    .collect();
                return self.collection(items, "{", "}");
            }
            (Value::Bool(_), Value::Bool(_))
            | (Value::Number(_), Value::Number(_))
            | (Value::String(_), Value::String(_))
                if a == b =>
            {
                self.tag(&mut buf, Tag::Normal);
                self.write_value(&mut buf, a, true);
                self.result(Difference::FullMatch);
            }
            _ => self.mismatch(&mut buf, a, b),
        }
        self.finalize(buf)
    }

    /// `printCollectionDiff` over (a's item, b's item, key) triples.
    fn collection(
        &mut self,
        items: Vec<(Option<&Value>, Option<&Value>, Option<String>)>,
        open: &str,
        close: &str,
    ) -> String {
        // the differences of matching items, first (at one level deeper)
        self.level += 1;
        let diffs: Vec<String> = items
            .iter()
            .map(|(a, b, _)| match (a, b) {
                (Some(a), Some(b)) => self.print_diff(a, b),
                _ => String::new(),
            })
            .collect();
        self.level -= 1;
        let mut buf = String::new();
        self.tag(&mut buf, Tag::Normal);
        if items.is_empty() {
            buf.push_str(open);
            buf.push_str(close);
            return self.finalize(buf);
        }
        self.level += 1;
        self.newline(&mut buf, open);
        let count = items.len();
        for (i, (a, b, key)) in items.iter().enumerate() {
            let key_text = key.as_ref().map(|k| format!("{}: ", quote(k)));
            match (a, b) {
                (Some(_), Some(_)) => {
                    if !diffs[i].is_empty() {
                        buf.push_str(key_text.as_deref().unwrap_or(""));
                        buf.push_str(&diffs[i]);
                    }
                }
                (Some(a), None) => {
                    self.tag(&mut buf, Tag::Removed);
                    buf.push_str(key_text.as_deref().unwrap_or(""));
                    self.write_value(&mut buf, a, true);
                    self.result(Difference::SupersetMatch);
                }
                (None, Some(b)) => {
                    self.tag(&mut buf, Tag::Added);
                    buf.push_str(key_text.as_deref().unwrap_or(""));
                    self.write_value(&mut buf, b, true);
                    self.result(Difference::NoMatch);
                }
                (None, None) => {}
            }
            if i < count - 1 {
                self.tag(&mut buf, Tag::Normal);
                self.newline(&mut buf, ",");
            } else {
                self.level -= 1;
                self.tag(&mut buf, Tag::Normal);
                self.newline(&mut buf, "");
            }
        }
        buf.push_str(close);
        self.finalize(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diffs_as_jsondiff_prints_them() {
        let (d, text) = compare(&json!({"a": 1, "b": "x"}), &json!({"a": 1, "b": "x"}));
        assert_eq!(d, Difference::FullMatch);
        assert_eq!(text, "{\n    \"a\": 1,\n    \"b\": \"x\"\n}");
        // changed, removed and added values, colored as jsondiff's console options
        let (d, text) = compare(
            &json!([{"L": {"job": "b", "x": "1"}}]),
            &json!([{"L": {"job": "a", "y": "2"}}]),
        );
        assert_eq!(d, Difference::NoMatch);
        assert_eq!(
            text,
            "[\n    {\n        \"L\": {\n            \"job\": \x1b[0;33m\"b\" => \"a\"\x1b[0m,\n            \x1b[0;31m\"x\": \"1\"\x1b[0m,\n            \x1b[0;32m\"y\": \"2\"\x1b[0m\n        }\n    }\n]"
        );
        // only a superset: the first has more
        let (d, _) = compare(&json!({"a": 1, "b": 2}), &json!({"a": 1}));
        assert_eq!(d, Difference::SupersetMatch);
    }
}
