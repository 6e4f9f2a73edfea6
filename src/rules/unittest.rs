//! `medic test`: rule unit tests in promtool's format (`promtool test rules`), with its
//! semantics and its output, so a test file passes or fails the same way under both.
//!
//! Per test group: the input series are loaded (sample `i` of a series at `i * interval`),
//! every rule group is evaluated at `0, evaluation_interval, ...` up to the largest
//! `eval_time`; an `alert_rule_test` at `eval_time` compares the firing alerts after the
//! evaluation at the last step not after it; `promql_expr_test`s run at the end.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Deserialize;

use super::AlertState;
use super::GroupOptions;
use super::file::{RuleFileErrors, load_files};
use super::group::{Rule, RuleGroup};
use super::template::go_duration;
use crate::common::Duration;
use crate::promql::{self, Value, notation::parse_series_values};
use crate::store::{Labels, Sample, Store};

/// A promtool unit-test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitTestFile {
    /// Rule files under test, relative to the test file; globs allowed.
    #[serde(default)]
    pub rule_files: Vec<String>,
    /// How often the rules are evaluated during a test (default 1m).
    #[serde(default)]
    pub evaluation_interval: Option<Duration>,
    /// Group names in the order they are evaluated at each step.
    #[serde(default)]
    pub group_eval_order: Vec<String>,
    /// The test groups.
    #[serde(default)]
    pub tests: Vec<TestGroup>,
}

/// One test group: input series and the checks made on them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestGroup {
    /// Spacing of the input samples (default: the evaluation interval).
    #[serde(default)]
    pub interval: Option<Duration>,
    /// Input series in the expanding notation.
    #[serde(default)]
    pub input_series: Vec<InputSeries>,
    /// Expected firing alerts at given times.
    #[serde(default)]
    pub alert_rule_test: Vec<AlertTestCase>,
    /// Expected results of expressions at given times.
    #[serde(default)]
    pub promql_expr_test: Vec<PromqlTestCase>,
    /// `$externalLabels` in templates.
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// `$externalURL` in templates.
    #[serde(default)]
    pub external_url: String,
    /// The test group's name (matched by `--run`).
    #[serde(default)]
    pub name: String,
}

/// One input series.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSeries {
    /// The series, e.g. `up{job="api"}`.
    pub series: String,
    /// Its values, e.g. `0+10x5 _ stale 3`.
    #[serde(default)]
    pub values: String,
}

/// Expected firing alerts of one alerting rule at one time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertTestCase {
    /// Time since the start of the test.
    #[serde(default)]
    pub eval_time: Duration,
    /// The alerting rule's name.
    #[serde(default)]
    pub alertname: String,
    /// The alerts expected to fire (none: the alert must not fire).
    #[serde(default)]
    pub exp_alerts: Vec<ExpAlert>,
}

/// One expected alert.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpAlert {
    /// Its labels, `alertname` excepted.
    #[serde(default)]
    pub exp_labels: BTreeMap<String, String>,
    /// Its annotations.
    #[serde(default)]
    pub exp_annotations: BTreeMap<String, String>,
}

/// Expected result of an expression at one time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromqlTestCase {
    /// The PromQL expression.
    pub expr: String,
    /// Time since the start of the test.
    #[serde(default)]
    pub eval_time: Duration,
    /// The expected samples (any order).
    #[serde(default)]
    pub exp_samples: Vec<ExpSample>,
}

/// One expected sample.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpSample {
    /// The series, e.g. `up{job="api"}` or `{job="api"}`.
    #[serde(default)]
    pub labels: String,
    /// The value.
    pub value: f64,
}

/// Runs every file, printing promtool's report (`Unit Testing:  FILE`, `  SUCCESS` or
/// `  FAILED:` with the failures). `run`: only test groups whose name matches one of these
/// regexes. Returns the exit code: 0 if all passed, 1 otherwise.
pub fn run_test_files(
    files: &[PathBuf],
    run: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<i32> {
    let run = if run.is_empty() {
        None
    } else {
        match Regex::new(&run.join("|")) {
            Ok(r) => Some(r),
            Err(e) => {
                writeln!(err, "invalid --run regex: {e}")?;
                return Ok(1);
            }
        }
    };
    let mut failed = false;
    for f in files {
        writeln!(out, "Unit Testing:  {}", f.display())?;
        let errs = test_file(f, run.as_ref());
        if errs.is_empty() {
            writeln!(out, "  SUCCESS")?;
        } else {
            out.flush()?;
            writeln!(err, "  FAILED:")?;
            for e in errs {
                writeln!(err, "{e}")?;
                writeln!(out)?;
            }
            failed = true;
        }
        writeln!(out)?;
    }
    Ok(i32::from(failed))
}

/// Runs one test file; the failures, empty if it passed.
pub fn test_file(path: &Path, run: Option<&Regex>) -> Vec<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return vec![format!("{}: {e}", path.display())],
    };
    let file: UnitTestFile = match serde_saphyr::from_str(&text) {
        Ok(f) => f,
        Err(e) => return vec![format!("{}: {e}", path.display())],
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let rule_files = match resolve_rule_files(dir, &file.rule_files) {
        Ok(f) => f,
        Err(e) => return vec![e],
    };
    let eval_interval = file
        .evaluation_interval
        .filter(|d| d.as_millis_i64() > 0)
        .unwrap_or(Duration::from_secs(60));
    let mut order = HashMap::new();
    for (i, g) in file.group_eval_order.iter().enumerate() {
        if order.insert(g.clone(), i).is_some() {
            return vec![format!("group name repeated in evaluation order: {g}")];
        }
    }
    let mut errs = Vec::new();
    for tg in &file.tests {
        if run.is_some_and(|r| !r.is_match(&tg.name)) {
            continue;
        }
        errs.extend(tg.run(eval_interval, &order, &rule_files));
    }
    errs
}

fn resolve_rule_files(dir: &Path, patterns: &[String]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in patterns {
        let full = if Path::new(p).is_absolute() {
            PathBuf::from(p)
        } else {
            dir.join(p)
        };
        let pattern = full.to_string_lossy().to_string();
        let matches = glob::glob(&pattern).map_err(|e| format!("{p}: {e}"))?;
        let mut found: Vec<PathBuf> = matches.filter_map(Result::ok).collect();
        found.sort();
        if found.is_empty() {
            // A plain name that does not exist is reported when it is read.
            out.push(full);
        } else {
            out.extend(found);
        }
    }
    Ok(out)
}

impl TestGroup {
    fn run(
        &self,
        eval_interval: Duration,
        order: &HashMap<String, usize>,
        rule_files: &[PathBuf],
    ) -> Vec<String> {
        let interval = self
            .interval
            .filter(|d| d.as_millis_i64() > 0)
            .unwrap_or(eval_interval);
        // Everything is loaded up front: rules only ever read samples at or before the
        // evaluation time, so this is what promtool's lazy loader shows them.
        let store = Store::new(i64::MAX / 4);
        for s in &self.input_series {
            let labels = match parse_metric(&s.series) {
                Ok(l) => l,
                Err(e) => return vec![format!("    series {:?}: {e}", s.series)],
            };
            let values = match parse_series_values(&s.values) {
                Ok(v) => v,
                Err(e) => return vec![format!("    series {:?}: values: {e}", s.series)],
            };
            for (i, v) in values.into_iter().enumerate() {
                if let Some(v) = v.to_sample_value() {
                    store.append(&labels, i as i64 * interval.as_millis_i64(), v);
                }
            }
        }
        let opts = GroupOptions {
            default_interval: interval,
            external_labels: Labels::new(self.external_labels.clone()),
            external_url: self.external_url.clone(),
            subquery_step: eval_interval,
            ..GroupOptions::default()
        };
        let mut groups = match load_files(rule_files, &opts) {
            Ok(g) => g,
            Err(RuleFileErrors(es)) => return es.iter().map(|e| e.to_string()).collect(),
        };
        for name in order.keys() {
            if !groups.iter().any(|g| g.name() == name) {
                return vec![format!(
                    "group name {name} mentioned in group_eval_order does not exist"
                )];
            }
        }
        groups.sort_by_key(|g| order.get(g.name()).copied().unwrap_or(0));

        let mut errs = Vec::new();
        let mut alert_times: Vec<i64> = Vec::new();
        for a in &self.alert_rule_test {
            if a.alertname.is_empty() {
                let in_group = if self.name.is_empty() {
                    String::new()
                } else {
                    format!(" (in TestGroup {})", self.name)
                };
                return vec![format!(
                    "an item under alert_rule_test misses required attribute alertname at eval_time {}{in_group}",
                    a.eval_time
                )];
            }
            alert_times.push(a.eval_time.as_millis_i64());
        }
        alert_times.sort_unstable();
        alert_times.dedup();
        let max_t = self
            .alert_rule_test
            .iter()
            .map(|a| a.eval_time)
            .chain(self.promql_expr_test.iter().map(|p| p.eval_time))
            .max()
            .unwrap_or_default()
            .as_millis_i64();
        let step = eval_interval.as_millis_i64();
        let mut curr = 0;
        let mut ts = 0;
        while ts <= max_t {
            let mut eval_errs = Vec::new();
            for g in &mut groups {
                g.eval(&store, ts);
                for (rule, e) in g.last_errors() {
                    // promtool prints a Go time.Duration here ("1m0s"), unlike elsewhere
                    eval_errs.push(format!(
                        "    rule: {rule}, time: {}, err: {e}",
                        go_duration(ts.saturating_mul(1_000_000))
                    ));
                }
            }
            if !eval_errs.is_empty() {
                errs.extend(eval_errs);
                return errs;
            }
            while curr < alert_times.len()
                && ts <= alert_times[curr]
                && alert_times[curr] < ts + step
            {
                let t = alert_times[curr];
                for case in self
                    .alert_rule_test
                    .iter()
                    .filter(|c| c.eval_time.as_millis_i64() == t)
                {
                    if let Some(e) = self.check_alerts(case, &groups) {
                        errs.push(e);
                    }
                }
                curr += 1;
            }
            ts += step;
        }
        // As the rules above: subqueries without a step use the evaluation interval.
        let opts = promql::EvalOptions {
            default_step_ms: step,
            ..promql::EvalOptions::default()
        };
        for case in &self.promql_expr_test {
            if let Some(e) = check_expr(case, &store, &opts) {
                errs.push(e);
            }
        }
        errs
    }

    fn check_alerts(&self, case: &AlertTestCase, groups: &[RuleGroup]) -> Option<String> {
        let mut got: Vec<(Labels, Labels)> = Vec::new();
        for g in groups {
            for r in g.rules() {
                if let Rule::Alerting(a) = r
                    && a.name() == case.alertname
                {
                    got.extend(
                        a.active_alerts(g.name())
                            .into_iter()
                            .filter(|x| x.state == AlertState::Firing)
                            .map(|x| (x.labels, Labels::new(x.annotations))),
                    );
                }
            }
        }
        let mut exp: Vec<(Labels, Labels)> = case
            .exp_alerts
            .iter()
            .map(|a| {
                let mut l = a.exp_labels.clone();
                l.insert("alertname".into(), case.alertname.clone());
                (Labels::new(l), Labels::new(a.exp_annotations.clone()))
            })
            .collect();
        got.sort();
        exp.sort();
        if got == exp {
            return None;
        }
        let name = if self.name.is_empty() {
            String::new()
        } else {
            format!("    name: {},\n", self.name)
        };
        Some(format!(
            "{name}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
            case.alertname,
            case.eval_time,
            indent(&alerts_string(&exp), "            "),
            indent(&alerts_string(&got), "            ")
        ))
    }
}

fn check_expr(case: &PromqlTestCase, store: &Store, opts: &promql::EvalOptions) -> Option<String> {
    let t = case.eval_time.as_millis_i64();
    let head = format!("    expr: {:?}, time: {}", case.expr, case.eval_time);
    let got = promql::parse(&case.expr)
        .and_then(|e| promql::eval_instant_with(store, &e, t, opts))
        .map_err(|e| e.to_string())
        .and_then(|v| match v {
            Value::Vector(v) => Ok(v),
            Value::Scalar { value, .. } => Ok(vec![Sample::new(Labels::default(), t, value)]),
            _ => Err("rule result is not a vector or scalar".to_string()),
        });
    let got = match got {
        Ok(g) => g,
        Err(e) => return Some(format!("{head}, err: {e}")),
    };
    let mut exp = Vec::new();
    for s in &case.exp_samples {
        match parse_metric(&s.labels) {
            Ok(l) => exp.push((l, s.value)),
            Err(e) => return Some(format!("{head}, err: labels {:?}: {e}", s.labels)),
        }
    }
    let mut got: Vec<(Labels, f64)> = got.into_iter().map(|s| (s.labels, s.value)).collect();
    exp.sort_by(|a, b| a.0.cmp(&b.0));
    got.sort_by(|a, b| a.0.cmp(&b.0));
    // Plain float equality, as promtool's reflect.DeepEqual (NaN never equals NaN).
    let same =
        exp.len() == got.len() && exp.iter().zip(&got).all(|(e, g)| e.0 == g.0 && e.1 == g.1);
    if same {
        return None;
    }
    Some(format!(
        "{head},\n        exp: {}\n        got: {}",
        samples_string(&exp),
        samples_string(&got)
    ))
}

/// Go's `labels.Labels.String()`: `{a="1", b="2"}`.
fn go_labels(l: &Labels) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in l.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{k}={v:?}");
    }
    s.push('}');
    s
}

fn alerts_string(la: &[(Labels, Labels)]) -> String {
    if la.is_empty() {
        return "[]".into();
    }
    let mut s = String::from("[");
    for (i, (l, a)) in la.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let one = format!("\nLabels:{}\nAnnotations:{}", go_labels(l), go_labels(a));
        let _ = write!(s, "\n{i}:{}", indent(&one, "  "));
    }
    s.push_str("\n]");
    s
}

fn samples_string(ss: &[(Labels, f64)]) -> String {
    if ss.is_empty() {
        return "nil".into();
    }
    ss.iter()
        .map(|(l, v)| format!("{} {}", go_labels(l), go_float_e(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Go's `strconv.FormatFloat(v, 'E', -1, 64)`.
fn go_float_e(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let s = format!("{v:E}");
    match s.split_once('E') {
        Some((m, e)) => {
            let e: i32 = e.parse().unwrap_or(0);
            format!("{m}E{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
        }
        None => s,
    }
}

fn indent(s: &str, pad: &str) -> String {
    s.replace('\n', &format!("\n{pad}"))
}

/// Parses a series as promtool writes it: `name`, `name{a="b",...}` or `{a="b"}`.
pub fn parse_metric(s: &str) -> Result<Labels, String> {
    let s = s.trim();
    let (name, rest) = match s.find('{') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let name = name.trim();
    let mut pairs: Vec<(String, String)> = Vec::new();
    if !name.is_empty() {
        if !name.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
        }) {
            return Err(format!("invalid metric name {name:?}"));
        }
        pairs.push(("__name__".into(), name.to_string()));
    }
    if !rest.is_empty() {
        let inner = rest
            .strip_prefix('{')
            .and_then(|r| r.trim_end().strip_suffix('}'))
            .ok_or_else(|| "expected '}' at the end of the label set".to_string())?;
        let chars: Vec<char> = inner.chars().collect();
        let mut i = 0;
        loop {
            while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
                i += 1;
            }
            if i >= chars.len() {
                break;
            }
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let key: String = chars[start..i].iter().collect();
            if key.is_empty() {
                return Err(format!(
                    "expected a label name at {:?}",
                    &inner[start.min(inner.len())..]
                ));
            }
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            if chars.get(i) != Some(&'=') {
                return Err(format!("expected '=' after label {key:?}"));
            }
            i += 1;
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            let quote = match chars.get(i) {
                Some(q @ ('"' | '\'' | '`')) => *q,
                _ => return Err(format!("expected a quoted value for label {key:?}")),
            };
            i += 1;
            let mut val = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(format!("unterminated value for label {key:?}")),
                    Some(c) if *c == quote => break,
                    Some('\\') if quote != '`' => {
                        i += 1;
                        match chars.get(i) {
                            Some('n') => val.push('\n'),
                            Some('t') => val.push('\t'),
                            Some(c) => val.push(*c),
                            None => return Err(format!("unterminated value for label {key:?}")),
                        }
                    }
                    Some(c) => val.push(*c),
                }
                i += 1;
            }
            i += 1;
            pairs.push((key, val));
        }
    }
    if s.is_empty() {
        return Err("no metric name or labels".into());
    }
    Ok(Labels::new(pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_metrics() {
        let l = parse_metric(r#"up{job="api", instance='h:1'}"#).unwrap();
        assert_eq!(l.get("__name__"), Some("up"));
        assert_eq!(l.get("instance"), Some("h:1"));
        assert_eq!(
            parse_metric(r#"{a="x\"y"}"#).unwrap().get("a"),
            Some("x\"y")
        );
        assert!(parse_metric("up{job=api}").is_err());
        assert!(parse_metric("").is_err());
        assert!(parse_metric("{}").unwrap().is_empty());
    }

    #[test]
    fn go_formats() {
        assert_eq!(go_float_e(1.0), "1E+00");
        assert_eq!(go_float_e(0.25), "2.5E-01");
        assert_eq!(go_float_e(12345.0), "1.2345E+04");
        let l = Labels::new([("a", "1"), ("b", "x")]);
        assert_eq!(go_labels(&l), r#"{a="1", b="x"}"#);
    }
}
