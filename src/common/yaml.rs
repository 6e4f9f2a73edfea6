//! Reading YAML files with errors that name the file, line and column, and resolving
//! relative paths against the folder of the file they were written in.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// A YAML file that does not match its schema, or is not YAML.
#[derive(Debug, thiserror::Error)]
#[error("{rendered}")]
pub struct YamlError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line, when the parser knows it.
    pub line: Option<u64>,
    /// 1-based column, when the parser knows it.
    pub column: Option<u64>,
    /// What was wrong, without the location or snippet.
    pub message: String,
    /// `path:line:column: message` followed by the offending lines.
    rendered: String,
}

/// A YAML file that could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Yaml(#[from] YamlError),
}

thread_local! {
    // The folder of the file being deserialized; paths in it are relative to this folder.
    // Deserialization is synchronous, so a thread-local scoped to one parse is enough.
    static BASE_DIR: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// Parses `text` (the contents of `path`) as `T`. Relative paths read with
/// [`deserialize_path`] resolve against `path`'s folder.
pub fn parse_yaml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, YamlError> {
    let base = path.parent().map(Path::to_path_buf);
    let prev = BASE_DIR.with(|b| b.replace(base));
    let result = serde_saphyr::from_str::<T>(text);
    BASE_DIR.with(|b| *b.borrow_mut() = prev);
    result.map_err(|e| {
        let loc = e.location();
        let name = path.display().to_string();
        let mut rendered = String::new();
        let options = serde_saphyr::render_options! { source_name: Some(&name) };
        if e.render_to(&mut rendered, options).is_err() || rendered.is_empty() {
            rendered = format!("{name}: {e}");
        }
        if !rendered.contains(&name) {
            rendered = format!("{name}: {rendered}");
        }
        let mut message = bare_message(&e.without_snippet().to_string());
        let mut line = loc.as_ref().map(|l| l.line());
        let mut column = loc.as_ref().map(|l| l.column());
        // Serde buffers internally tagged enums (`type: ...`) before it reads the variant, so
        // an unknown field inside one is reported at the enclosing key. Point at the field.
        if let (Some(l), Some(field)) = (line, unknown_field(&message))
            && let Some((fl, fc)) = find_key(text, l, field)
            && fl != l
        {
            line = Some(fl);
            column = Some(fc);
            if let Some((_, rest)) = message.split_once(": unknown field") {
                message = format!("unknown field{rest}");
            }
        }
        // One shape for every error: `error: file:line:column: message` and the line.
        if let (Some(l), Some(c)) = (line, column) {
            rendered = render_at(&name, text, l, c, &message);
        }
        YamlError {
            path: path.to_path_buf(),
            line,
            column,
            message,
            rendered,
        }
    })
}

/// The parser's message without the location it writes into it (`line 2 column 21: ...`,
/// `... at line 4, column 3`), which the rendered error gives once, up front.
fn bare_message(message: &str) -> String {
    let mut m = message.trim();
    if let Some(rest) = m.strip_prefix("line ")
        && let Some((loc, msg)) = rest.split_once(": ")
        && loc
            .split(" column ")
            .all(|n| n.trim().parse::<u64>().is_ok())
    {
        m = msg;
    }
    if let Some((msg, loc)) = m.rsplit_once(" at line ")
        && loc
            .split(", column ")
            .all(|n| n.trim().parse::<u64>().is_ok())
    {
        m = msg;
    }
    m.to_string()
}

/// The field name of serde's "unknown field `x`" message.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.split("unknown field `").nth(1)?;
    rest.split('`').next().filter(|f| !f.is_empty())
}

/// The first place at or after `from_line` (1-based) where `key:` is written as a mapping
/// key; (line, column), both 1-based.
fn find_key(text: &str, from_line: u64, key: &str) -> Option<(u64, u64)> {
    for (i, line) in text
        .lines()
        .enumerate()
        .skip(from_line.saturating_sub(1) as usize)
    {
        let mut start = 0;
        while let Some(pos) = line[start..].find(key) {
            let at = start + pos;
            let before_ok = line[..at]
                .chars()
                .next_back()
                .is_none_or(|c| c.is_whitespace() || c == '{' || c == ',' || c == '-');
            let after = line[at + key.len()..].trim_start();
            if before_ok && after.starts_with(':') {
                return Some((i as u64 + 1, line[..at].chars().count() as u64 + 1));
            }
            start = at + key.len();
        }
    }
    None
}

/// `error: path:line:col: message` and the line with a caret under the column.
fn render_at(name: &str, text: &str, line: u64, column: u64, message: &str) -> String {
    let src = text
        .lines()
        .nth(line.saturating_sub(1) as usize)
        .unwrap_or("");
    let num = line.to_string();
    let pad = " ".repeat(num.len());
    let caret = " ".repeat(column.saturating_sub(1) as usize);
    format!("error: {name}:{line}:{column}: {message}\n{pad} |\n{num} | {src}\n{pad} | {caret}^")
}

/// Reads and parses a YAML file.
pub fn read_yaml<T: DeserializeOwned>(path: &Path) -> Result<T, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse_yaml(path, &text)?)
}

/// Resolves `p` against the folder of the file being parsed (unchanged when absolute or when
/// not called during a parse).
pub fn resolve(p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        return p;
    }
    BASE_DIR.with(|b| match b.borrow().as_ref() {
        Some(base) => base.join(&p),
        None => p,
    })
}

/// `deserialize_with` for a path relative to the config file's folder.
pub fn deserialize_path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    Ok(resolve(PathBuf::deserialize(d)?))
}

/// `deserialize_with` for an optional path relative to the config file's folder.
pub fn deserialize_opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    Ok(Option::<PathBuf>::deserialize(d)?.map(resolve))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // only deserialized
    struct Inner {
        interval: crate::common::Duration,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(tag = "type", deny_unknown_fields)]
    #[allow(dead_code)]
    enum Tagged {
        #[serde(rename = "a")]
        A { timeout: Option<String> },
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Top {
        inner: Option<Inner>,
        things: Option<std::collections::BTreeMap<String, Tagged>>,
    }

    fn err(text: &str) -> YamlError {
        parse_yaml::<Top>(Path::new("m.yaml"), text).unwrap_err()
    }

    #[test]
    fn every_error_starts_with_file_line_column_once() {
        let e = err("inner:\n  interval: 15x\n");
        let first = e.to_string().lines().next().unwrap().to_string();
        assert!(
            first.starts_with("error: m.yaml:2:13: invalid duration \"15x\""),
            "{e}"
        );
        assert_eq!((e.line, e.column), (Some(2), Some(13)));

        let e = err("things:\n  x:\n    type: a\n    tiemout: 1s\n");
        let first = e.to_string().lines().next().unwrap().to_string();
        assert!(
            first.starts_with("error: m.yaml:4:5: unknown field `tiemout`"),
            "{e}"
        );
        assert!(!first.contains(" at line "), "{first}");
        assert!(e.to_string().contains("4 |     tiemout: 1s"), "{e}");

        let e = err("inner: [\n");
        let first = e.to_string().lines().next().unwrap().to_string();
        assert!(first.starts_with("error: m.yaml:"), "{e}");
        assert!(!first.contains("line "), "{first}");
    }
}
