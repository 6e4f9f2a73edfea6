//! Reading YAML files with errors that name the file, line and column, and resolving
//! relative paths against the folder of the file they were written in.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_saphyr::Spanned;

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

/// The parser's settings for every file medic reads: YAML 1.2 core booleans only
/// (`true`/`True`/`TRUE`, `false`/...): YAML 1.1's `n`, `off`, `yes` are errors in a bool
/// field, not silently booleans, as in Prometheus' yaml.v3.
fn options() -> serde_saphyr::Options {
    serde_saphyr::options! { strict_booleans: true }
}

/// Parses `text` (the contents of `path`) as `T`: one YAML document (a second one is an
/// error). Relative paths read with [`deserialize_path`] resolve against `path`'s folder.
pub fn parse_yaml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, YamlError> {
    let (first, second) = split_first_document(text);
    if let Some(line) = second {
        let message = "a second YAML document starts here; this file holds one".to_string();
        return Err(YamlError::at(path, text, line, 1, message));
    }
    parse_document(path, text, first)
}

/// A file read the way Prometheus reads rule files and promtool reads test files: the first
/// YAML document only (with a warning when more follow), and a document that is empty or
/// `null` is the empty `T`.
#[derive(Debug)]
pub struct Lenient<T> {
    /// The first document.
    pub value: T,
    /// Warnings for the user (`file: ...`), e.g. documents that were not read.
    pub warnings: Vec<String>,
}

/// Parses `text` as [`Lenient`] describes.
pub fn parse_yaml_lenient<T: DeserializeOwned + Default>(
    path: &Path,
    text: &str,
) -> Result<Lenient<T>, YamlError> {
    parse_yaml_lenient_with(path, text, false)
}

/// [`parse_yaml_lenient`]; with `ignore_unknown_fields`, keys the schema does not know are
/// skipped (promtool's `--ignore-unknown-fields`, for rule files with custom metadata).
/// The schemas deny unknown fields at compile time, so an unknown key written in block
/// style is blanked out, its value with it, and the document read again (line numbers
/// stay those of the file); one in a flow mapping (`{a: 1}`) stays an error.
pub fn parse_yaml_lenient_with<T: DeserializeOwned + Default>(
    path: &Path,
    text: &str,
    ignore_unknown_fields: bool,
) -> Result<Lenient<T>, YamlError> {
    parse_yaml_lenient_all(path, text, ignore_unknown_fields).map_err(|mut es| es.remove(0))
}

/// The most unknown fields [`parse_yaml_lenient_all`] reports of one file.
pub const MAX_UNKNOWN_FIELDS_REPORTED: usize = 20;

/// [`parse_yaml_lenient_with`], reporting every unknown field at once (as Go's decoders
/// do; the first [`MAX_UNKNOWN_FIELDS_REPORTED`]) rather than the first: each is blanked
/// out in turn and the document read again.
/// The errors come in the file's order; the last may be another kind of error.
pub fn parse_yaml_lenient_all<T: DeserializeOwned + Default>(
    path: &Path,
    text: &str,
    ignore_unknown_fields: bool,
) -> Result<Lenient<T>, Vec<YamlError>> {
    let original = text;
    let mut text = text.to_string();
    let mut unknown = Vec::new();
    // each round removes one key, so this ends; the bound is for the impossible case
    for _ in 0..=original.lines().count() {
        match parse_lenient::<T>(path, &text) {
            Err(e) if unknown_field(&e.message).is_some() => match (e.line, e.column) {
                (Some(l), Some(c)) if blank_key(&mut text, l, c) => {
                    if !ignore_unknown_fields {
                        // the snippet from the file as written
                        unknown.push(YamlError::at(path, original, l, c, e.message));
                        // each is a re-read of the whole file: enough to fix a typo, and
                        // bounded work on a file of nothing but unknown keys
                        if unknown.len() >= MAX_UNKNOWN_FIELDS_REPORTED {
                            return Err(unknown);
                        }
                    }
                }
                _ => {
                    unknown.push(e);
                    return Err(unknown);
                }
            },
            Ok(v) if unknown.is_empty() => return Ok(v),
            Ok(_) => return Err(unknown),
            Err(e) => {
                unknown.push(e);
                return Err(unknown);
            }
        }
    }
    Err(unknown)
}

/// Blanks the block-style key at `line`:`column` (1-based) and its value (the lines after
/// it indented deeper). False when the key is not a block key there.
fn blank_key(text: &mut String, line: u64, column: u64) -> bool {
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let (Some(li), Some(col)) = (line.checked_sub(1), column.checked_sub(1)) else {
        return false;
    };
    let Some(l) = lines.get(li as usize) else {
        return false;
    };
    let col = col as usize;
    let width = l.chars().count();
    let before: String = l.chars().take(col).collect();
    // only `key:` at the start of a line or after a sequence dash
    if col >= width || !before.chars().all(|c| c == ' ' || c == '-') {
        return false;
    }
    lines[(line - 1) as usize] = format!("{before}{}", " ".repeat(width - col));
    let mut i = line as usize;
    while i < lines.len() {
        let next = &lines[i];
        let indent = next.chars().take_while(|c| *c == ' ').count();
        if !next.trim().is_empty() && indent <= col {
            break;
        }
        lines[i] = String::new();
        i += 1;
    }
    *text = lines.join("\n");
    true
}

fn parse_lenient<T: DeserializeOwned + Default>(
    path: &Path,
    text: &str,
) -> Result<Lenient<T>, YamlError> {
    let (first, second) = split_first_document(text);
    let mut warnings = Vec::new();
    if let Some(line) = second {
        // Prometheus 3's wording (model/rulefmt), with where the ignored part starts.
        warnings.push(format!(
            "{}:{line}: multiple document yaml files are not supported, only the first document is processed",
            path.display()
        ));
    }
    let value: Option<T> = parse_document(path, text, first)?;
    Ok(Lenient {
        value: value.unwrap_or_default(),
        warnings,
    })
}

/// The first YAML document of `text` (a prefix, so that lines and columns stay those of
/// the file) and the 1-based line where a second document with content starts. By the
/// YAML spec a `---` or `...` at the start of a line is a document marker wherever it is
/// (no scalar may contain one there), so lines are enough to find them.
fn split_first_document(text: &str) -> (&str, Option<u64>) {
    let mut offset = 0;
    let mut content = false; // the current document has content
    let mut end = None; // where the first document ends
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let start = offset;
        offset += line.len();
        let l = line.trim_end();
        let marker = |m: &str| {
            l == m
                || l.strip_prefix(m)
                    .is_some_and(|r| r.starts_with([' ', '\t']))
        };
        if let Some(cut) = end {
            // after the first document: does any other one hold something?
            let t = if marker("---") || marker("...") {
                l[3..].trim_start()
            } else {
                l.trim_start()
            };
            if !(t.is_empty() || t.starts_with('#') || t.starts_with('%')) {
                return (&text[..cut], Some(i as u64 + 1));
            }
            continue;
        }
        if marker("---") {
            if content {
                end = Some(start);
            } else if l.len() > 3 {
                content = !l[3..].trim_start().starts_with('#');
            }
            continue;
        }
        if marker("...") {
            end = Some(start);
            continue;
        }
        let t = l.trim_start();
        if !(t.is_empty() || t.starts_with('#') || (!content && t.starts_with('%'))) {
            content = true;
        }
    }
    (end.map_or(text, |e| &text[..e]), None)
}

/// Deserializes one document (`doc`, a prefix of `text`).
fn parse_document<T: DeserializeOwned>(path: &Path, text: &str, doc: &str) -> Result<T, YamlError> {
    let base = path.parent().map(Path::to_path_buf);
    let prev = BASE_DIR.with(|b| b.replace(base));
    let result = serde_saphyr::from_str_with_options::<T>(doc, options());
    BASE_DIR.with(|b| *b.borrow_mut() = prev);
    result.map_err(|e| {
        let loc = e.location();
        let name = path.display().to_string();
        let mut message = bare_message(&user_message(&e, text));
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
        match (line, column) {
            (Some(l), Some(c)) if l > 0 => YamlError::at(path, text, l, c, message),
            _ => YamlError {
                path: path.to_path_buf(),
                line: None,
                column: None,
                rendered: format!("error: {name}: {message}"),
                message,
            },
        }
    })
}

impl YamlError {
    fn at(path: &Path, text: &str, line: u64, column: u64, message: String) -> YamlError {
        let name = path.display().to_string();
        YamlError {
            path: path.to_path_buf(),
            line: Some(line),
            column: Some(column),
            rendered: render_at(&name, text, line, column, &message),
            message,
        }
    }

    /// The offending line with a caret under the column (empty when the place is unknown).
    pub fn snippet(&self) -> String {
        match self.rendered.split_once('\n') {
            Some((_, rest)) => rest.to_string(),
            None => String::new(),
        }
    }
}

/// The parser's message in the user's terms: what was expected, never how to configure the
/// YAML library (its own wording suggests Rust types and options: `use Option<String>`,
/// `set DuplicateKeyPolicy in Options`).
fn user_message(e: &serde_saphyr::Error, text: &str) -> String {
    use serde_saphyr::{Error as E, MessageFormatter, UserMessageFormatter};
    let e = e.without_snippet();
    let scalar_at = |loc: Option<serde_saphyr::Location>| {
        let loc = loc?;
        let line = text.lines().nth(loc.line().checked_sub(1)? as usize)?;
        let rest: String = line
            .chars()
            .skip(loc.column().saturating_sub(1) as usize)
            .collect();
        let word = rest.split(['#', ',', '}', ']']).next()?.trim();
        (!word.is_empty()).then(|| word.to_string())
    };
    let m = match e {
        E::DuplicateMappingKey { key: Some(k), .. } => format!("mapping key {k:?} already defined"),
        E::DuplicateMappingKey { key: None, .. } => "mapping key already defined".into(),
        E::InvalidBooleanStrict { .. } => match scalar_at(e.location()) {
            Some(w) => format!("invalid boolean {w:?}: expected true or false"),
            None => "invalid boolean: expected true or false".into(),
        },
        E::MultipleDocuments { .. } => "several YAML documents; one expected".into(),
        // the parser's event names, in YAML's terms
        E::Unexpected { expected, .. } => format!("expected {}", yaml_words(expected)),
        E::InvalidScalar { ty, .. } => format!("expected {}", yaml_words(ty)),
        E::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => format!(
            "invalid type: {unexpected}, expected {}",
            yaml_words(expected)
        ),
        E::NullIntoString { .. } | E::InvalidCharNull { .. } => {
            "a value is missing here (null)".into()
        }
        _ => UserMessageFormatter.format_message(e).into_owned(),
    };
    scrub_library_hints(&m)
}

/// A Rust type or parser event named in a message, said in YAML's words (`sequence start`
/// → `a list`, `i64` → `an integer`, `struct RuleConfig` → `a mapping`).
fn yaml_words(what: &str) -> String {
    let w = what.trim_start_matches("a ").trim_start_matches("an ");
    match w {
        "sequence start" | "sequence" | "empty sequence start" => "a list".into(),
        "mapping start" | "map" | "mapping" | "empty mapping start" => "a mapping".into(),
        "string scalar" | "string" | "scalar" => "a string".into(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32" | "u64" | "u128"
        | "usize" | "integer" => "an integer".into(),
        "f32" | "f64" | "float" => "a number".into(),
        "bool" | "boolean" => "true or false".into(),
        w if w.starts_with("struct ") || w.starts_with("enum ") => "a mapping".into(),
        _ => what.to_string(),
    }
}

/// Drops what is left of advice addressed to the program's author rather than its user
/// (`...; use Option<char>`, `..., set X in Options`, `use from_str_multidoc`).
fn scrub_library_hints(m: &str) -> String {
    let mut out = m.to_string();
    for sep in ["; use ", ", set ", ". If you ", "; use from_"] {
        if let Some(i) = out.find(sep) {
            out.truncate(i);
        }
    }
    out
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

/// `deserialize_with` for the list, map and string fields of rule and test files: a key
/// with no value (`rules:`, `labels:`, `name:`) or `null` is the empty list, map or string,
/// as in Prometheus (Go's YAML decoders leave a null as the zero value). With
/// `#[serde(default)]` the key may also be left out.
pub fn null_as_empty<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// [`null_as_empty`] for a located string (`name:` with no value is `""`, still located).
pub fn null_as_empty_spanned<'de, D>(d: D) -> Result<Spanned<String>, D::Error>
where
    D: Deserializer<'de>,
{
    let s = Spanned::<Option<String>>::deserialize(d)?;
    Ok(Spanned::new(
        s.value.unwrap_or_default(),
        s.referenced,
        s.defined,
    ))
}

/// [`null_as_empty`] for a map of strings whose values may be null too
/// (`annotations: {summary: }` is `summary: ""`, as in Prometheus).
pub fn null_as_empty_values<'de, D, V>(d: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: NullValue<'de>,
{
    let m = Option::<BTreeMap<String, V::Raw>>::deserialize(d)?.unwrap_or_default();
    Ok(m.into_iter().map(|(k, v)| (k, V::from_raw(v))).collect())
}

/// A map value read through its nullable form ([`null_as_empty_values`]).
pub trait NullValue<'de>: Sized {
    type Raw: Deserialize<'de>;
    fn from_raw(raw: Self::Raw) -> Self;
}

impl<'de> NullValue<'de> for String {
    type Raw = Option<String>;
    fn from_raw(raw: Option<String>) -> String {
        raw.unwrap_or_default()
    }
}

impl<'de> NullValue<'de> for Spanned<String> {
    type Raw = Spanned<Option<String>>;
    fn from_raw(raw: Spanned<Option<String>>) -> Spanned<String> {
        Spanned::new(raw.value.unwrap_or_default(), raw.referenced, raw.defined)
    }
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

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Lists {
        #[serde(default, deserialize_with = "null_as_empty")]
        items: Vec<std::collections::BTreeMap<String, String>>,
        #[serde(default, deserialize_with = "null_as_empty")]
        labels: std::collections::BTreeMap<String, String>,
        #[serde(default)]
        #[allow(dead_code)] // only deserialized
        flag: bool,
    }

    fn lenient(text: &str) -> Result<Lenient<Lists>, YamlError> {
        parse_yaml_lenient::<Lists>(Path::new("f.yaml"), text)
    }

    #[test]
    fn nulls_and_empty_documents_are_empty() {
        for text in [
            "",
            "null\n",
            "~",
            "# only a comment\n",
            "---\n",
            "---\nnull\n...\n",
        ] {
            let l = lenient(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert!(
                l.value.items.is_empty() && l.warnings.is_empty(),
                "{text:?}"
            );
        }
        let l = lenient("items:\nlabels:\n").unwrap();
        assert!(l.value.items.is_empty() && l.value.labels.is_empty());
        let l = lenient("items:\n- a: x\nlabels: null\n").unwrap();
        assert_eq!(l.value.items.len(), 1);
        // a wrong type is still an error
        assert!(lenient("labels: \"\"\n").is_err());
    }

    #[test]
    fn first_document_read_others_warned_about() {
        let l = lenient("items: [{a: b}]\n---\nitems: [{c: d}, {e: f}]\n").unwrap();
        assert_eq!(l.value.items.len(), 1);
        assert_eq!(
            l.warnings,
            [
                "f.yaml:3: multiple document yaml files are not supported, only the first document is processed"
            ]
        );
        // a leading marker opens the first document; an empty trailing one is no document
        let l = lenient("%YAML 1.2\n---\nitems: [{a: b}]\n---\n# nothing\n").unwrap();
        assert_eq!((l.value.items.len(), l.warnings.len()), (1, 0));
        // the second document is not even parsed
        let l = lenient("items: []\n...\n--- [unclosed\n").unwrap();
        assert_eq!(l.warnings.len(), 1);
        // one-document readers say so, without library advice
        let e =
            parse_yaml::<Lists>(Path::new("f.yaml"), "items: []\n---\nitems: []\n").unwrap_err();
        assert_eq!((e.line, e.column), (Some(3), Some(1)));
        assert!(e.message.contains("second YAML document"), "{e}");
    }

    #[test]
    fn unknown_fields_reported_are_bounded() {
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Doc {
            #[allow(dead_code)]
            #[serde(default)]
            groups: Vec<String>,
        }
        let text: String = std::iter::once("groups: []\n".to_string())
            .chain((0..2000).map(|i| format!("x{i}: 1\n")))
            .collect();
        let errs = parse_yaml_lenient_all::<Doc>(Path::new("r.yaml"), &text, false).unwrap_err();
        assert_eq!(errs.len(), MAX_UNKNOWN_FIELDS_REPORTED);
        assert!(
            errs[0].message.contains("unknown field `x0`"),
            "{:?}",
            errs[0]
        );
    }

    #[test]
    fn unknown_fields_ignored_when_asked() {
        let text = "items:\n- a: b\n  c: d\nnote:\n  deep: 1\n  deeper:\n  - 2\nlabels: {x: y}\nextra: 1\n";
        assert!(lenient(text).is_err());
        let l = parse_yaml_lenient_with::<Lists>(Path::new("f.yaml"), text, true).unwrap();
        assert_eq!(l.value.items.len(), 1);
        assert_eq!(l.value.items[0].len(), 2, "{:?}", l.value.items);
        assert_eq!(l.value.labels.len(), 1);
        // without the flag, every unknown field is reported, in the file's order
        let es = parse_yaml_lenient_all::<Lists>(Path::new("f.yaml"), text, false).unwrap_err();
        let got: Vec<(Option<u64>, &str)> =
            es.iter().map(|e| (e.line, e.message.as_str())).collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].0, Some(4));
        assert!(got[0].1.starts_with("unknown field `note`"), "{got:?}");
        assert_eq!(got[1].0, Some(9));
        assert!(es[1].to_string().contains("9 | extra: 1"), "{}", es[1]);
        // other errors stay, at their own line
        let e =
            parse_yaml_lenient_with::<Lists>(Path::new("f.yaml"), "extra: 1\nflag: off\n", true)
                .unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn messages_never_give_library_advice() {
        // Every message the parser may produce for a user's mistake, in the user's terms.
        let cases: &[(&str, &str)] = &[
            (
                "labels: {a: b, a: c}\n",
                "mapping key \"a\" already defined",
            ),
            (
                "flag: off\n",
                "invalid boolean \"off\": expected true or false",
            ),
            ("flag: n\n", "invalid boolean \"n\": expected true or false"),
            (
                "flag: faLse\n",
                "invalid boolean \"faLse\": expected true or false",
            ),
            ("items: [\n", ""),
            ("items: {a: b}\n", ""),
            ("labels: [a]\n", ""),
            ("bogus: 1\n", "unknown field `bogus`"),
            ("items: [{a: [1]}]\n", ""),
            ("items: &x [*y]\n", ""),
            ("items: !!binary aGk=\n", ""),
            ("\t- a\n", ""),
            ("items: 5\n", "expected a list"),
            ("items: [5]\n", "expected a mapping"),
            ("labels: {a: [1]}\n", "expected a string"),
        ];
        for (text, want) in cases {
            let e = lenient(text).unwrap_err();
            let shown = e.to_string();
            for hint in [
                "Option", "Policy", "from_str", "use ", "set ", "serde", "saphyr", "<input>",
                "struct ", "i64", "u64", "scalar", " start",
            ] {
                assert!(!shown.contains(hint), "{text:?}: {shown}");
            }
            assert!(shown.starts_with("error: f.yaml:1:"), "{text:?}: {shown}");
            assert!(e.message.contains(want), "{text:?}: {shown}");
        }
        // YAML 1.2 core booleans are accepted in every spelling it has
        for b in ["true", "True", "TRUE", "false", "False", "FALSE"] {
            assert!(lenient(&format!("flag: {b}\n")).is_ok(), "{b}");
        }
        // and a null into a plain string says so in words
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct S {
            name: String,
        }
        let e = parse_yaml::<S>(Path::new("f.yaml"), "name:\n").unwrap_err();
        assert!(!e.to_string().contains("Option"), "{e}");
    }
}
