//! A strict parser for the Prometheus text exposition format (0.0.4) and the OpenMetrics 1.0
//! text format.
//!
//! The parser hands each sample to a callback as borrowed slices of the body, so parsing
//! allocates nothing per sample (label values are only copied when they contain escapes).
//! Every sample also carries `series`, the raw text of its name and label set, which callers
//! use as a cheap cache key for the label set they built the first time they saw it.
//!
//! Errors name the line and column and say what was expected.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A fast word-at-a-time hasher (FxHash's mixing) for the parser's and the scrape cache's
/// maps, which hash every sample's name or series text. Not DoS-resistant; the inputs come
/// from configured targets and are bounded by the sample and body limits.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.0 =
                (self.0.rotate_left(5) ^ u64::from_le_bytes(w) ^ rest.len() as u64).wrapping_mul(K);
        }
    }

    fn write_u8(&mut self, b: u8) {
        self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` with [`FxHasher`].
pub type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Which text format a body is in (from the response's `Content-Type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`: timestamps are integer milliseconds.
    Prometheus,
    /// `application/openmetrics-text`: timestamps are seconds, `# EOF` ends the body,
    /// exemplars may follow a value.
    OpenMetrics,
}

impl Format {
    /// The format a `Content-Type` header names; anything but OpenMetrics is read as 0.0.4.
    pub fn from_content_type(content_type: &str) -> Format {
        if content_type
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("application/openmetrics-text")
        {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }
}

/// A metric family's type, from its `# TYPE` line (`Unknown` when there is none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    /// `untyped` (0.0.4) or `unknown` (OpenMetrics), or no `# TYPE` line at all.
    Unknown,
}

impl MetricType {
    fn parse(s: &str, format: Format) -> Option<MetricType> {
        Some(match (s, format) {
            ("counter", _) => MetricType::Counter,
            ("gauge", _) => MetricType::Gauge,
            ("histogram", _) => MetricType::Histogram,
            ("summary", _) => MetricType::Summary,
            ("untyped", Format::Prometheus) => MetricType::Unknown,
            ("unknown", Format::OpenMetrics) => MetricType::Unknown,
            ("gaugehistogram", Format::OpenMetrics) => MetricType::GaugeHistogram,
            ("info", Format::OpenMetrics) => MetricType::Info,
            ("stateset", Format::OpenMetrics) => MetricType::StateSet,
            _ => return None,
        })
    }

    /// Suffixes a sample name may add to its family's name for this type.
    fn suffixes(self, format: Format) -> &'static [&'static str] {
        match (self, format) {
            (MetricType::Histogram, Format::Prometheus) => &["_bucket", "_sum", "_count"],
            (MetricType::Histogram, Format::OpenMetrics) => {
                &["_bucket", "_sum", "_count", "_created"]
            }
            (MetricType::GaugeHistogram, _) => &["_bucket", "_gsum", "_gcount"],
            (MetricType::Summary, Format::Prometheus) => &["_sum", "_count"],
            (MetricType::Summary, Format::OpenMetrics) => &["_sum", "_count", "_created"],
            (MetricType::Counter, Format::OpenMetrics) => &["_total", "_created"],
            (MetricType::Info, Format::OpenMetrics) => &["_info"],
            _ => &[],
        }
    }
}

/// A syntax or consistency error in an exposition body.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    pub message: String,
}

/// One parsed sample, borrowing from the body.
#[derive(Debug)]
pub struct SampleRef<'a, 'b> {
    /// The raw text of the metric name and label set, as written in the body.
    pub series: &'a str,
    /// The metric name of this sample (e.g. `http_request_duration_seconds_bucket`).
    pub name: &'a str,
    /// Label pairs in the order written, values unescaped.
    pub labels: &'b [(&'a str, Cow<'a, str>)],
    pub value: f64,
    /// The sample's own timestamp in milliseconds, if it has one.
    pub timestamp_ms: Option<i64>,
    /// The name of the family the sample belongs to (e.g. `http_request_duration_seconds`).
    pub family: &'a str,
    pub metric_type: MetricType,
}

/// What a successful parse saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseStats {
    pub samples: usize,
    pub families: usize,
}

#[derive(Clone, Copy)]
struct FamilyState {
    metric_type: MetricType,
    typed: bool,
    helped: bool,
    unit: bool,
    sampled: bool,
}

/// Parses `body`, calling `on_sample` for every sample in order. The callback may stop the
/// parse by returning an error (e.g. a sample limit); a syntax error converts into `E`.
pub fn parse<'a, E, F>(body: &'a str, format: Format, on_sample: F) -> Result<ParseStats, E>
where
    E: From<ParseError>,
    F: FnMut(&SampleRef<'a, '_>) -> Result<(), E>,
{
    Parser {
        body,
        format,
        families: FxHashMap::default(),
        current: None,
        current_sampled: false,
        labels: Vec::with_capacity(16),
        line_no: 0,
        line_start: 0,
        base: 0,
    }
    .run(on_sample)
}

/// Parses `body` into owned samples (for tests and one-off use; the collector uses [`parse`]).
pub fn parse_to_vec(body: &str, format: Format) -> Result<Vec<OwnedSample>, ParseError> {
    let mut out = Vec::new();
    parse::<ParseError, _>(body, format, |s| {
        out.push(OwnedSample {
            name: s.name.to_string(),
            labels: s
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value: s.value,
            timestamp_ms: s.timestamp_ms,
            metric_type: s.metric_type,
        });
        Ok(())
    })?;
    Ok(out)
}

/// An owned copy of a [`SampleRef`].
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedSample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
    pub metric_type: MetricType,
}

struct Parser<'a> {
    body: &'a str,
    format: Format,
    families: FxHashMap<&'a str, FamilyState>,
    current: Option<(&'a str, MetricType)>,
    /// Whether the current family is already marked as having samples (saves a map lookup
    /// per sample in the common case of contiguous families).
    current_sampled: bool,
    labels: Vec<(&'a str, Cow<'a, str>)>,
    line_no: usize,
    line_start: usize,
    /// Where the line being parsed begins after its leading blanks (what positions within
    /// it are relative to); `line_start` is its real start, for columns.
    base: usize,
}

// Character classes, as a table so the hot loops do one load per byte.
const NAME_START: u8 = 1;
const NAME_CONT: u8 = 2;
const LABEL_START: u8 = 4;
const LABEL_CONT: u8 = 8;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let alpha = c.is_ascii_alphabetic() || c == b'_';
        let digit = c.is_ascii_digit();
        let mut v = 0;
        if alpha || c == b':' {
            v |= NAME_START | NAME_CONT;
        }
        if digit {
            v |= NAME_CONT | LABEL_CONT;
        }
        if alpha {
            v |= LABEL_START | LABEL_CONT;
        }
        t[i] = v;
        i += 1;
    }
    t
};

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn describe(b: Option<u8>) -> String {
    match b {
        None => "end of line".to_string(),
        Some(b) if b.is_ascii_graphic() => format!("'{}'", b as char),
        Some(b' ') => "space".to_string(),
        Some(b'\t') => "tab".to_string(),
        Some(b) => format!("byte 0x{b:02x}"),
    }
}

impl<'a> Parser<'a> {
    fn err(&self, pos: usize, message: impl Into<String>) -> ParseError {
        let pos = pos.min(self.body.len());
        let start = self.line_start.min(pos);
        // pos always lies on a char boundary: errors are raised at ASCII bytes or at the end
        // of a token, and the body is valid UTF-8.
        let column = self
            .body
            .get(start..pos)
            .map_or(pos - start, |s| s.chars().count())
            + 1;
        ParseError {
            line: self.line_no,
            column,
            message: message.into(),
        }
    }

    fn run<E, F>(mut self, mut on_sample: F) -> Result<ParseStats, E>
    where
        E: From<ParseError>,
        F: FnMut(&SampleRef<'a, '_>) -> Result<(), E>,
    {
        let body = self.body;
        let bytes = body.as_bytes();
        let mut stats = ParseStats::default();
        let mut pos = 0;
        let mut eof = false;
        while pos < bytes.len() {
            let end = memchr::memchr(b'\n', &bytes[pos..]).map_or(bytes.len(), |i| pos + i);
            self.line_no += 1;
            self.line_start = pos;
            if eof {
                return Err(self.err(pos, "unexpected content after '# EOF'").into());
            }
            let mut start = pos;
            if self.format == Format::Prometheus {
                // Prometheus skips blanks before a comment and takes a blank-only line, but
                // fails " x 1" (its parser takes the blank into the name, which its storage
                // then refuses)
                while start < end && is_blank(bytes[start]) {
                    start += 1;
                }
                if start > pos && start < end && bytes[start] != b'#' {
                    return Err(self
                        .err(pos, "blanks before a metric name: expected the name first")
                        .into());
                }
            }
            self.base = start;
            let line = &body[start..end];
            if line.is_empty() {
                if self.format == Format::OpenMetrics {
                    return Err(self
                        .err(pos, "empty lines are not allowed in OpenMetrics")
                        .into());
                }
            } else if bytes[start] == b'#' {
                eof = self.comment(line)?;
            } else {
                self.sample(line, &mut on_sample)?;
                stats.samples += 1;
            }
            pos = end + 1;
        }
        if self.format == Format::OpenMetrics && !eof {
            self.line_start = bytes.len();
            self.base = bytes.len();
            return Err(self
                .err(bytes.len(), "OpenMetrics body must end with '# EOF'")
                .into());
        }
        stats.families = self.families.len();
        Ok(stats)
    }

    /// A `#` line. Returns true for OpenMetrics' `# EOF`.
    fn comment(&mut self, line: &'a str) -> Result<bool, ParseError> {
        let base = self.base;
        let b = line.as_bytes();
        if self.format == Format::OpenMetrics && line == "# EOF" {
            return Ok(true);
        }
        // "#" then blanks then a keyword; anything else is a plain comment
        let mut i = 1;
        if i >= b.len() || !is_blank(b[i]) {
            return self.plain_comment(base + i);
        }
        while i < b.len() && is_blank(b[i]) {
            i += 1;
        }
        let kw_start = i;
        while i < b.len() && !is_blank(b[i]) {
            i += 1;
        }
        let keyword = &line[kw_start..i];
        if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
            return self.plain_comment(base + kw_start);
        }
        if keyword == "UNIT" && self.format == Format::Prometheus {
            return Ok(false);
        }
        if i >= b.len() {
            if self.format == Format::Prometheus {
                // "# HELP" with nothing after it is a plain comment to Prometheus
                return Ok(false);
            }
            return Err(self.err(base + i, format!("expected a metric name after {keyword}")));
        }
        while i < b.len() && is_blank(b[i]) {
            i += 1;
        }
        let name_start = i;
        let name_end = self.metric_name(b, i)?;
        let name = &line[name_start..name_end];
        i = name_end;
        let rest_start = if i < b.len() {
            if !is_blank(b[i]) {
                return Err(self.err(
                    base + i,
                    format!(
                        "expected a space after the metric name, found {}",
                        describe(Some(b[i]))
                    ),
                ));
            }
            i + 1
        } else {
            i
        };
        let rest = &line[rest_start.min(line.len())..];
        let mut st = self.families.get(name).copied().unwrap_or(FamilyState {
            metric_type: MetricType::Unknown,
            typed: false,
            helped: false,
            unit: false,
            sampled: false,
        });
        match keyword {
            "HELP" => {
                if st.helped && self.format == Format::OpenMetrics {
                    return Err(self.err(base + name_start, format!("second HELP line for {name}")));
                }
                st.helped = true;
                // OpenMetrics' docstring may only escape '\\', '\n' and '"'; Prometheus'
                // text parser takes any docstring
                let rb = if self.format == Format::OpenMetrics {
                    rest.as_bytes()
                } else {
                    &[]
                };
                let mut j = 0;
                while j < rb.len() {
                    if rb[j] == b'\\' {
                        match rb.get(j + 1) {
                            Some(b'\\') | Some(b'n') => j += 2,
                            Some(b'"') if self.format == Format::OpenMetrics => j += 2,
                            other => {
                                return Err(self.err(
                                    base + rest_start + j,
                                    format!(
                                        "invalid escape sequence in HELP: expected '\\\\' or '\\n', found '\\' followed by {}",
                                        describe(other.copied())
                                    ),
                                ));
                            }
                        }
                    } else {
                        j += 1;
                    }
                }
            }
            "TYPE" => {
                // Prometheus 2.42 takes a second TYPE line, or one after the samples (the
                // last one wins); OpenMetrics forbids both
                let om = self.format == Format::OpenMetrics;
                if st.typed && om {
                    return Err(self.err(base + name_start, format!("second TYPE line for {name}")));
                }
                if st.sampled && om {
                    return Err(self.err(
                        base + name_start,
                        format!("TYPE line for {name} after its samples"),
                    ));
                }
                // the type is the rest of the line exactly: Prometheus refuses
                // "# TYPE x gauge\t" and "# TYPE x  gauge"
                let t = if om {
                    rest.trim_end_matches([' ', '\t'])
                } else {
                    rest
                };
                let Some(mt) = MetricType::parse(t, self.format) else {
                    let expected = match self.format {
                        Format::Prometheus => "counter, gauge, histogram, summary or untyped",
                        Format::OpenMetrics => {
                            "counter, gauge, histogram, gaugehistogram, summary, info, stateset or unknown"
                        }
                    };
                    return Err(self.err(
                        base + rest_start,
                        format!("unknown metric type {t:?}: expected {expected}"),
                    ));
                };
                st.typed = true;
                st.metric_type = mt;
                self.current = Some((name, mt));
                self.current_sampled = false;
            }
            _ => {
                if st.unit {
                    return Err(self.err(base + name_start, format!("second UNIT line for {name}")));
                }
                st.unit = true;
            }
        }
        self.families.insert(name, st);
        Ok(false)
    }

    fn plain_comment(&self, pos: usize) -> Result<bool, ParseError> {
        if self.format == Format::OpenMetrics {
            return Err(self.err(
                pos,
                "expected HELP, TYPE, UNIT or EOF after '#' (OpenMetrics has no free comments)",
            ));
        }
        Ok(false)
    }

    /// Scans a metric name starting at `i`; returns its end.
    fn metric_name(&self, b: &[u8], i: usize) -> Result<usize, ParseError> {
        if i >= b.len() || CLASS[b[i] as usize] & NAME_START == 0 {
            return Err(self.err(
                self.base + i,
                format!(
                    "expected a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), found {}",
                    describe(b.get(i).copied())
                ),
            ));
        }
        let mut j = i + 1;
        while j < b.len() && CLASS[b[j] as usize] & NAME_CONT != 0 {
            j += 1;
        }
        Ok(j)
    }

    /// The family a sample named `name` belongs to, and its type.
    fn family_of(&mut self, name: &'a str) -> (&'a str, MetricType) {
        if let Some((fam, mt)) = self.current {
            if fam == name {
                return (fam, mt);
            }
            if let Some(rest) = name.strip_prefix(fam) {
                if mt.suffixes(self.format).contains(&rest) {
                    return (fam, mt);
                }
            }
        }
        // A family declared earlier (families need not be contiguous in 0.0.4), or one whose
        // name this sample extends with a suffix its type allows.
        let found = self.families.get(name).map(|st| (name, st.metric_type));
        let found = found.or_else(|| {
            let cut = name.rfind('_')?;
            let (fam, suffix) = name.split_at(cut);
            let st = self.families.get(fam)?;
            st.metric_type
                .suffixes(self.format)
                .contains(&suffix)
                .then_some((fam, st.metric_type))
        });
        let (fam, mt) = found.unwrap_or((name, MetricType::Unknown));
        self.current = Some((fam, mt));
        self.current_sampled = false;
        (fam, mt)
    }

    fn sample<E, F>(&mut self, line: &'a str, on_sample: &mut F) -> Result<(), E>
    where
        E: From<ParseError>,
        F: FnMut(&SampleRef<'a, '_>) -> Result<(), E>,
    {
        let base = self.base;
        let b = line.as_bytes();
        let name_end = self.metric_name(b, 0)?;
        let name = &line[..name_end];
        let mut i = name_end;
        if self.format == Format::Prometheus {
            // 0.0.4 allows blanks between the name and its label set
            while i < b.len() && is_blank(b[i]) {
                i += 1;
            }
            if b.get(i) != Some(&b'{') {
                i = name_end;
            }
        }
        let mut labels = std::mem::take(&mut self.labels);
        labels.clear();
        let mut series_end = name_end;
        if i < b.len() && b[i] == b'{' {
            i = self.label_set(line, i + 1, &mut labels)?;
            series_end = i;
        }
        let series = &line[..series_end];
        // value: after a blank, or (Prometheus) right after the label set's '}'
        let glued = self.format == Format::Prometheus && series_end > name_end && i == series_end;
        if i >= b.len() || !(is_blank(b[i]) || glued) {
            return Err(self
                .err(
                    base + i,
                    format!(
                        "expected a space and then the sample value, found {}",
                        describe(b.get(i).copied())
                    ),
                )
                .into());
        }
        while i < b.len() && is_blank(b[i]) {
            i += 1;
        }
        let v_start = i;
        while i < b.len() && !is_blank(b[i]) {
            i += 1;
        }
        let value = self.float(&line[v_start..i], base + v_start, "sample value")?;
        // optional timestamp, then (OpenMetrics) an optional exemplar
        while i < b.len() && is_blank(b[i]) {
            i += 1;
        }
        let mut timestamp_ms = None;
        if i < b.len() && b[i] != b'#' {
            let t_start = i;
            while i < b.len() && !is_blank(b[i]) {
                i += 1;
            }
            timestamp_ms = Some(self.timestamp(&line[t_start..i], base + t_start)?);
            while i < b.len() && is_blank(b[i]) {
                i += 1;
            }
        }
        if i < b.len() {
            if b[i] == b'#' && self.format == Format::OpenMetrics {
                self.exemplar(line, i)?;
            } else {
                return Err(self
                    .err(
                        base + i,
                        format!(
                            "unexpected text after the {}: expected end of line",
                            if timestamp_ms.is_some() {
                                "timestamp"
                            } else {
                                "value"
                            }
                        ),
                    )
                    .into());
            }
        }

        let (family, metric_type) = self.family_of(name);
        self.check_type(name, family, metric_type, &labels)?;
        if !self.current_sampled {
            self.current_sampled = true;
            if let Some(st) = self.families.get_mut(family) {
                st.sampled = true;
            } else {
                self.families.insert(
                    family,
                    FamilyState {
                        metric_type,
                        typed: false,
                        helped: false,
                        unit: false,
                        sampled: true,
                    },
                );
            }
        }
        let r = on_sample(&SampleRef {
            series,
            name,
            labels: &labels,
            value,
            timestamp_ms,
            family,
            metric_type,
        });
        self.labels = labels;
        r
    }

    /// Checks what the family's type requires of a sample (`le` on buckets, `quantile` on
    /// summary quantiles).
    fn check_type(
        &self,
        name: &str,
        family: &str,
        mt: MetricType,
        labels: &[(&'a str, Cow<'a, str>)],
    ) -> Result<(), ParseError> {
        if self.format == Format::Prometheus {
            // Prometheus' text parser checks no sample against its family's type (a
            // summary sample without `quantile`, a `_bucket` without `le` or with
            // `le="x"`, a histogram sample named as the family: all taken)
            return Ok(());
        }
        let suffix = &name[family.len()..];
        let need = match (mt, suffix) {
            (MetricType::Histogram | MetricType::GaugeHistogram, "_bucket") => Some("le"),
            (MetricType::Histogram | MetricType::GaugeHistogram, "") => {
                return Err(self.err(
                    self.line_start,
                    format!(
                        "histogram {family} has no sample named {name}: expected {family}_bucket, {family}_sum or {family}_count"
                    ),
                ));
            }
            (MetricType::Summary, "") => Some("quantile"),
            // no check of a counter's sign: Prometheus ingests negative counters too
            _ => None,
        };
        if let Some(need) = need {
            match labels.iter().find(|(k, _)| *k == need) {
                None => {
                    return Err(self.err(
                        self.line_start,
                        format!("{name} of {mt:?} {family} needs a {need:?} label"),
                    ));
                }
                Some((_, v)) => {
                    if parse_float(v).is_none() {
                        return Err(self.err(
                            self.line_start,
                            format!("label {need}={v:?} of {name} is not a number"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Parses a label set after its `{`; returns the position after the closing `}`.
    fn label_set(
        &self,
        line: &'a str,
        mut i: usize,
        labels: &mut Vec<(&'a str, Cow<'a, str>)>,
    ) -> Result<usize, ParseError> {
        let base = self.base;
        let b = line.as_bytes();
        let prom = self.format == Format::Prometheus;
        loop {
            if prom {
                while i < b.len() && is_blank(b[i]) {
                    i += 1;
                }
            }
            if i < b.len() && b[i] == b'}' {
                return Ok(i + 1);
            }
            // label name
            if i >= b.len() || CLASS[b[i] as usize] & LABEL_START == 0 {
                return Err(self.err(
                    base + i,
                    format!(
                        "expected a label name ([a-zA-Z_][a-zA-Z0-9_]*) or '}}', found {}",
                        describe(b.get(i).copied())
                    ),
                ));
            }
            let n_start = i;
            i += 1;
            while i < b.len() && CLASS[b[i] as usize] & LABEL_CONT != 0 {
                i += 1;
            }
            let lname = &line[n_start..i];
            if lname == "__name__" {
                return Err(self.err(base + n_start, "label name \"__name__\" is reserved"));
            }
            if labels.iter().any(|(k, _)| *k == lname) {
                return Err(self.err(base + n_start, format!("duplicate label name {lname:?}")));
            }
            if prom {
                while i < b.len() && is_blank(b[i]) {
                    i += 1;
                }
            }
            if i >= b.len() || b[i] != b'=' {
                return Err(self.err(
                    base + i,
                    format!(
                        "expected '=' after label name {lname:?}, found {}",
                        describe(b.get(i).copied())
                    ),
                ));
            }
            i += 1;
            if prom {
                while i < b.len() && is_blank(b[i]) {
                    i += 1;
                }
            }
            if i >= b.len() || b[i] != b'"' {
                return Err(self.err(
                    base + i,
                    format!(
                        "expected '\"' to open the value of label {lname:?}, found {}",
                        describe(b.get(i).copied())
                    ),
                ));
            }
            i += 1;
            let (value, next) = self.label_value(line, i)?;
            labels.push((lname, value));
            i = next;
            if prom {
                while i < b.len() && is_blank(b[i]) {
                    i += 1;
                }
            }
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => return Ok(i + 1),
                // Prometheus' lexer takes `{a="b" b="c"}`: the comma is optional
                Some(c) if prom && CLASS[*c as usize] & LABEL_START != 0 => {}
                other => {
                    return Err(self.err(
                        base + i,
                        format!(
                            "expected ',' or '}}' after a label value, found {}",
                            describe(other.copied())
                        ),
                    ));
                }
            }
        }
    }

    /// Reads a quoted label value starting after its opening quote; returns the unescaped
    /// value and the position after the closing quote.
    fn label_value(
        &self,
        line: &'a str,
        start: usize,
    ) -> Result<(Cow<'a, str>, usize), ParseError> {
        let b = line.as_bytes();
        let mut i = start;
        // fast path: no escapes
        while i < b.len() && b[i] != b'"' && b[i] != b'\\' {
            i += 1;
        }
        if i < b.len() && b[i] == b'"' {
            return Ok((Cow::Borrowed(&line[start..i]), i + 1));
        }
        let mut owned = String::with_capacity(i - start + 8);
        owned.push_str(&line[start..i]);
        loop {
            match b.get(i) {
                None => {
                    return Err(self.err(self.base + i, "unterminated label value: expected '\"'"));
                }
                Some(b'"') => return Ok((Cow::Owned(owned), i + 1)),
                Some(b'\\') => {
                    match b.get(i + 1) {
                        Some(b'\\') => owned.push('\\'),
                        Some(b'"') => owned.push('"'),
                        Some(b'n') => owned.push('\n'),
                        // Prometheus keeps an unknown escape as written (`\q` stays `\q`)
                        Some(_) if self.format == Format::Prometheus => {
                            owned.push('\\');
                            i += 1;
                            continue;
                        }
                        other => {
                            return Err(self.err(
                                self.base + i,
                                format!(
                                    "invalid escape sequence in label value: expected '\\\\', '\\\"' or '\\n', found '\\' followed by {}",
                                    describe(other.copied())
                                ),
                            ));
                        }
                    }
                    i += 2;
                }
                Some(_) => {
                    let s = i;
                    while i < b.len() && b[i] != b'"' && b[i] != b'\\' {
                        i += 1;
                    }
                    owned.push_str(&line[s..i]);
                }
            }
        }
    }

    fn float(&self, tok: &str, pos: usize, what: &str) -> Result<f64, ParseError> {
        parse_float(tok).ok_or_else(|| {
            self.err(
                pos,
                if tok.is_empty() {
                    format!("expected a {what}, found end of line")
                } else {
                    format!("invalid {what} {tok:?}: expected a number, NaN, +Inf or -Inf")
                },
            )
        })
    }

    fn timestamp(&self, tok: &str, pos: usize) -> Result<i64, ParseError> {
        match self.format {
            // digits only: Prometheus refuses "+1", "-1" and "-0"
            Format::Prometheus => tok
                .bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| tok.parse::<i64>().ok())
                .flatten()
                .ok_or_else(|| {
                    self.err(
                        pos,
                        format!("invalid timestamp {tok:?}: expected an integer of milliseconds"),
                    )
                }),
            Format::OpenMetrics => match parse_float(tok) {
                Some(s) if s.is_finite() => Ok((s * 1000.0).round() as i64),
                _ => Err(self.err(
                    pos,
                    format!("invalid timestamp {tok:?}: expected seconds since the epoch"),
                )),
            },
        }
    }

    /// Validates an OpenMetrics exemplar (` # {labels} value [timestamp]`); medic drops it.
    fn exemplar(&self, line: &'a str, mut i: usize) -> Result<(), ParseError> {
        let base = self.base;
        let b = line.as_bytes();
        i += 1;
        if i >= b.len() || b[i] != b' ' || b.get(i + 1) != Some(&b'{') {
            return Err(self.err(base + i, "expected ' {' to start an exemplar after '#'"));
        }
        let mut scratch = Vec::new();
        i = self.label_set(line, i + 2, &mut scratch)?;
        if i >= b.len() || b[i] != b' ' {
            return Err(self.err(base + i, "expected a space and the exemplar value"));
        }
        let rest = &line[i + 1..];
        let mut parts = rest.split(' ');
        let v = parts.next().unwrap_or("");
        self.float(v, base + i + 1, "exemplar value")?;
        if let Some(ts) = parts.next() {
            if parse_float(ts).is_none() {
                return Err(self.err(base + i + 2 + v.len(), "invalid exemplar timestamp"));
            }
        }
        if parts.next().is_some() {
            return Err(self.err(base + i, "unexpected text after the exemplar"));
        }
        Ok(())
    }
}

/// Parses a sample value as Prometheus does (Go's `strconv.ParseFloat` minus the `p`/`_`
/// forms Prometheus' parser refuses, so no hex floats): decimal or exponent notation, `NaN`,
/// `+Inf`, `-Inf` (case-insensitive, `Inf` and `Infinity` both). A number too large for an
/// f64 (`1e400`) is an error, as in Go, not infinity.
pub fn parse_float(s: &str) -> Option<f64> {
    let v = s.parse::<f64>().ok()?;
    // Rust's parser and Go's agree on every other spelling (".5", "5.", "+1", "1E3")
    if v.is_nan() && s.starts_with(['+', '-']) {
        // Go takes a sign on Inf, not on NaN
        return None;
    }
    if v.is_infinite() {
        let t = s.trim_start_matches(['+', '-']);
        if !(t.eq_ignore_ascii_case("inf") || t.eq_ignore_ascii_case("infinity")) {
            return None;
        }
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(body: &str) -> Vec<OwnedSample> {
        parse_to_vec(body, Format::Prometheus).unwrap()
    }

    fn e(body: &str) -> ParseError {
        parse_to_vec(body, Format::Prometheus).unwrap_err()
    }

    fn labels(s: &OwnedSample) -> Vec<(&str, &str)> {
        s.labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    // The example from the exposition format documentation.
    const SPEC_EXAMPLE: &str = r#"# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# Escaping in label values:
msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9

# Minimalistic line:
metric_without_timestamp_and_labels 12.47

# A weird metric from before the epoch:
something_weird{problem="division by zero"} +Inf -3982045

# A histogram, which has a pretty complex representation in the text format:
# HELP http_request_duration_seconds A histogram of the request duration.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="0.1"} 33444
http_request_duration_seconds_bucket{le="0.2"} 100392
http_request_duration_seconds_bucket{le="0.5"} 129389
http_request_duration_seconds_bucket{le="1"} 133988
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320

# Finally a summary, which has a complex representation, too:
# HELP rpc_duration_seconds A summary of the RPC duration in seconds.
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.01"} 3102
rpc_duration_seconds{quantile="0.05"} 3272
rpc_duration_seconds{quantile="0.5"} 4773
rpc_duration_seconds{quantile="0.9"} 9001
rpc_duration_seconds{quantile="0.99"} 76656
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
"#;

    #[test]
    fn spec_example() {
        // the format's own example has a negative timestamp, which Prometheus 2.42 refuses
        // (its lexer takes digits only)
        let err = e(SPEC_EXAMPLE);
        assert!(
            err.message.contains("invalid timestamp \"-3982045\""),
            "{err}"
        );
        let s = p(&SPEC_EXAMPLE.replace(" -3982045", " 3982045"));
        assert_eq!(s.len(), 2 + 1 + 1 + 1 + 8 + 7);
        assert_eq!(s[0].name, "http_requests_total");
        assert_eq!(labels(&s[0]), vec![("method", "post"), ("code", "200")]);
        assert_eq!(s[0].value, 1027.0);
        assert_eq!(s[0].timestamp_ms, Some(1395066363000));
        assert_eq!(s[0].metric_type, MetricType::Counter);
        assert_eq!(s[1].value, 3.0);
        assert_eq!(
            labels(&s[2]),
            vec![
                ("path", "C:\\DIR\\FILE.TXT"),
                ("error", "Cannot find file:\n\"FILE.TXT\"")
            ]
        );
        assert_eq!(s[2].value, 1.458255915e9);
        assert_eq!(s[2].metric_type, MetricType::Unknown);
        assert_eq!(s[3].timestamp_ms, None);
        assert_eq!(s[4].value, f64::INFINITY);
        assert_eq!(s[4].timestamp_ms, Some(3982045));
        let buckets: Vec<_> = s
            .iter()
            .filter(|x| x.name == "http_request_duration_seconds_bucket")
            .collect();
        assert_eq!(buckets.len(), 6);
        assert!(
            buckets
                .iter()
                .all(|b| b.metric_type == MetricType::Histogram)
        );
        assert_eq!(labels(buckets[5]), vec![("le", "+Inf")]);
        let sum = s
            .iter()
            .find(|x| x.name == "http_request_duration_seconds_sum")
            .unwrap();
        assert_eq!(sum.metric_type, MetricType::Histogram);
        let q = s
            .iter()
            .filter(|x| x.name == "rpc_duration_seconds")
            .count();
        assert_eq!(q, 5);
        let rsum = s
            .iter()
            .find(|x| x.name == "rpc_duration_seconds_sum")
            .unwrap();
        assert_eq!(rsum.value, 1.7560473e7);
        assert_eq!(rsum.metric_type, MetricType::Summary);
    }

    #[test]
    fn special_values_and_spacing() {
        let s = p("a NaN\nb -Inf\nc +Inf\nd 1e-3\ne{} 7\nf { x = \"1\" , } 2\t 5\n");
        assert!(s[0].value.is_nan());
        assert_eq!(s[1].value, f64::NEG_INFINITY);
        assert_eq!(s[2].value, f64::INFINITY);
        assert_eq!(s[3].value, 0.001);
        assert!(s[4].labels.is_empty());
        assert_eq!(labels(&s[5]), vec![("x", "1")]);
        assert_eq!(s[5].timestamp_ms, Some(5));
        // a trailing comma and colons in names are fine
        let s = p("ns:rule:rate5m{a=\"b\",} 1\n");
        assert_eq!(s[0].name, "ns:rule:rate5m");
    }

    /// Where Prometheus' own text parser (and so promtool) says yes or no, medic says the same.
    #[test]
    fn verdicts_match_prometheus() {
        // blanks before a comment and a blank-only line are fine, before a name not
        let s = p("  # HELP x help\n   \nx 1\n");
        assert_eq!((s[0].name.as_str(), s[0].value), ("x", 1.0));
        assert!(e(" x 1\n").message.contains("blanks before a metric name"));
        assert!(e("\t y{a=\"b\"} 2\n").message.contains("blanks before"));
        // no blank needed after a label set, no comma between labels; unknown escapes
        // in label values are kept as written
        let s = p("x{a=\"b\" c=\"\\q\"}1\n");
        assert_eq!(labels(&s[0]), vec![("a", "b"), ("c", "\\q")]);
        // timestamps are digits only
        for bad in [
            "x 1 +1\n",
            "x 1 -1\n",
            "x 1 -0\n",
            "x 1 99999999999999999999\n",
        ] {
            assert!(e(bad).message.contains("invalid timestamp"), "{bad}");
        }
        assert_eq!(p("x 1 01\n")[0].timestamp_ms, Some(1));
        // OpenMetrics stays strict
        assert!(parse_to_vec(" x 1\n# EOF\n", Format::OpenMetrics).is_err());
        // a negative counter is ingested
        let s = p("# TYPE c counter\nc -1\nc_total -2\n");
        assert_eq!((s[0].value, s[1].value), (-1.0, -2.0));
        // out of an f64's range is an error (Go's ErrRange), not infinity; underflow is 0
        let err = e("x 1e400\n");
        assert!(
            err.message.contains("invalid sample value \"1e400\""),
            "{err}"
        );
        assert!(e("x -1e400\n").message.contains("invalid sample value"));
        assert_eq!(p("x 1e-400\n")[0].value, 0.0);
        // no check of a sample against its type: Prometheus takes these
        for body in [
            "# TYPE h histogram\nh_bucket{le=\"1e999\"} 1\n",
            "# TYPE h histogram\nh_bucket 1\n",
            "# TYPE h histogram\nh 1\n",
            "# TYPE s summary\ns 1\n",
            "# TYPE s summary\ns{quantile=\"x\"} 1\n",
        ] {
            assert_eq!(p(body).len(), 1, "{body}");
        }
        // ...but the TYPE line must end at the type: no trailing blank
        for body in [
            "# TYPE x histogram\t\n",
            "# TYPE x gauge \nx 1\n",
            "# TYPE x  gauge\n",
        ] {
            assert!(e(body).message.contains("unknown metric type"), "{body:?}");
        }
        // Prometheus refuses hex floats and '_' ("0x1p-2", "1_000"); NaN takes no sign
        for bad in [
            "0x1p-2", "0x10", "1_000", "+NaN", "-nan", "1e", "Inf1", "infinit",
        ] {
            assert!(parse_float(bad).is_none(), "{bad}");
        }
        for (good, v) in [
            (".5", 0.5),
            ("5.", 5.0),
            ("+1", 1.0),
            ("1E3", 1000.0),
            ("-inf", f64::NEG_INFINITY),
            ("+Infinity", f64::INFINITY),
            ("1.7976931348623157e308", f64::MAX),
        ] {
            assert_eq!(parse_float(good), Some(v), "{good}");
        }
        assert!(parse_float("nan").is_some_and(f64::is_nan));
    }

    #[test]
    fn series_text_is_the_identity_key() {
        let mut keys = Vec::new();
        parse::<ParseError, _>("x{a=\"1\"} 1 5\ny 2\n", Format::Prometheus, |s| {
            keys.push(s.series.to_string());
            Ok(())
        })
        .unwrap();
        assert_eq!(keys, vec!["x{a=\"1\"}", "y"]);
    }

    #[test]
    fn errors_name_line_and_column() {
        let err = e("ok 1\nbad{a=\"1\" 2\n");
        assert_eq!((err.line, err.column), (2, 11));
        assert!(err.message.contains("expected ',' or '}'"), "{err}");

        let err = parse_to_vec("x{a=\"\\t\"} 1\n# EOF\n", Format::OpenMetrics).unwrap_err();
        assert_eq!((err.line, err.column), (1, 6));
        assert!(err.message.contains("invalid escape"), "{err}");

        let err = e("x 1 2 3\n");
        assert_eq!((err.line, err.column), (1, 7));

        let err = e("x abc\n");
        assert!(
            err.message.contains("invalid sample value \"abc\""),
            "{err}"
        );
        assert_eq!(err.column, 3);

        let err = e("x 1 1.5\n");
        assert!(err.message.contains("timestamp"), "{err}");

        let err = e("x{a=\"1\"\n");
        assert!(err.message.contains("found end of line"), "{err}");

        let err = e("0x 1\n");
        assert!(err.message.contains("expected a metric name"), "{err}");

        let err = e("x{a=\"1\",a=\"2\"} 1\n");
        assert!(err.message.contains("duplicate label"), "{err}");

        let err = e("x{__name__=\"y\"} 1\n");
        assert!(err.message.contains("reserved"), "{err}");

        let err = e("x{1a=\"y\"} 1\n");
        assert!(err.message.contains("expected a label name"), "{err}");

        let err = e("x{a=\"unterminated} 1\n");
        assert!(err.message.contains("unterminated"), "{err}");

        let err = e("x\n");
        assert!(err.message.contains("sample value"), "{err}");

        // columns count characters, not bytes
        let err = e("x{a=\"é\" b=\"2\"} 1 x\n");
        assert_eq!(err.column, 18);
    }

    #[test]
    fn type_and_help_consistency() {
        // Prometheus 2.42 takes a second TYPE or HELP line and a TYPE after the samples;
        // OpenMetrics does not
        assert_eq!(p("# TYPE x counter\n# TYPE x gauge\nx 1\n").len(), 1);
        assert_eq!(p("# HELP x a\n# HELP x b\nx 1\n").len(), 1);
        assert_eq!(p("x 1\n# TYPE x gauge\n").len(), 1);
        let om = |b: &str| parse_to_vec(b, Format::OpenMetrics).unwrap_err();
        let err = om("# TYPE x counter\n# TYPE x gauge\n# EOF\n");
        assert_eq!(err.line, 2);
        assert!(err.message.contains("second TYPE"), "{err}");
        assert!(
            om("# HELP x a\n# HELP x b\n# EOF\n")
                .message
                .contains("second HELP")
        );
        assert!(
            om("x 1\n# TYPE x gauge\n# EOF\n")
                .message
                .contains("after its samples")
        );

        let err = e("# TYPE x whatever\n");
        assert!(err.message.contains("unknown metric type"), "{err}");

        // OpenMetrics checks samples against their type
        let err = om("# TYPE h histogram\nh_bucket 1\n# EOF\n");
        assert!(err.message.contains("\"le\" label"), "{err}");
        let err = om("# TYPE h histogram\nh_bucket{le=\"x\"} 1\n# EOF\n");
        assert!(err.message.contains("not a number"), "{err}");
        let err = om("# TYPE h histogram\nh 1\n# EOF\n");
        assert!(err.message.contains("expected h_bucket"), "{err}");
        let err = om("# TYPE s summary\ns 1\n# EOF\n");
        assert!(err.message.contains("\"quantile\" label"), "{err}");
        let err = om("# HELP x bad \\t escape\n# EOF\n");
        assert!(err.message.contains("invalid escape"), "{err}");
        // Prometheus takes any docstring
        assert_eq!(p("# HELP x bad \\t escape\nx 1\n").len(), 1);

        // free comments and HELP escapes are fine
        let s = p("# just a comment\n#no space\n# HELP x a \\\\ b \\n c\nx 1\n");
        assert_eq!(s.len(), 1);
        // families need not be contiguous in 0.0.4: the type is remembered
        let s = p("# TYPE h histogram\nh_sum 1\nother 2\nh_count 3\n");
        assert_eq!(s[2].metric_type, MetricType::Histogram);
    }

    #[test]
    fn openmetrics() {
        let body = "# TYPE foo counter\n# UNIT foo seconds\n# HELP foo help\nfoo_total 17.0 1520879607.789 # {trace_id=\"KOO5S4vxi0o\"} 0.67\nfoo_created 1520430000.123\n# TYPE g gaugehistogram\ng_bucket{le=\"1\"} 1\ng_gsum 2\ng_gcount 1\n# TYPE i info\ni_info{version=\"1\"} 1\n# EOF\n";
        let s = parse_to_vec(body, Format::OpenMetrics).unwrap();
        assert_eq!(s.len(), 6);
        assert_eq!(s[0].name, "foo_total");
        assert_eq!(s[0].metric_type, MetricType::Counter);
        assert_eq!(s[0].timestamp_ms, Some(1520879607789));
        assert_eq!(s[2].metric_type, MetricType::GaugeHistogram);
        assert_eq!(s[5].metric_type, MetricType::Info);

        let err = parse_to_vec("a 1\n", Format::OpenMetrics).unwrap_err();
        assert!(err.message.contains("# EOF"), "{err}");
        let err = parse_to_vec("a 1\n# EOF\nb 2\n", Format::OpenMetrics).unwrap_err();
        assert_eq!(err.line, 3);
        let err = parse_to_vec("a 1\n\n# EOF\n", Format::OpenMetrics).unwrap_err();
        assert!(err.message.contains("empty lines"), "{err}");
        // exemplars are only for OpenMetrics
        let err = e("foo_total 1 # {a=\"b\"} 1\n");
        assert!(err.message.contains("unexpected text"), "{err}");
        assert_eq!(
            Format::from_content_type("application/openmetrics-text; version=1.0.0"),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::from_content_type("text/plain; version=0.0.4"),
            Format::Prometheus
        );
    }

    #[test]
    fn callback_can_stop_the_parse() {
        #[derive(Debug)]
        enum Stop {
            Limit,
            Parse,
        }
        impl From<ParseError> for Stop {
            fn from(_: ParseError) -> Self {
                Stop::Parse
            }
        }
        let mut n = 0;
        let r = parse("a 1\nb 2\nc 3\n", Format::Prometheus, |_| {
            n += 1;
            if n > 2 { Err(Stop::Limit) } else { Ok(()) }
        });
        assert!(matches!(r, Err(Stop::Limit)));
        assert_eq!(n, 3);
    }

    #[test]
    fn no_panic_on_arbitrary_input() {
        // every prefix of a valid body parses or errors, never panics
        for end in 0..SPEC_EXAMPLE.len() {
            if SPEC_EXAMPLE.is_char_boundary(end) {
                let _ = parse_to_vec(&SPEC_EXAMPLE[..end], Format::Prometheus);
                let _ = parse_to_vec(&SPEC_EXAMPLE[..end], Format::OpenMetrics);
            }
        }
        for junk in [
            "{", "}", "#", "# TYPE", "# TYPE x", "x{", "x{a", "x{a=", "x{a=\"\\", "é 1", "x é",
        ] {
            let _ = parse_to_vec(junk, Format::Prometheus);
        }
    }
}
