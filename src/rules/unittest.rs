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
use super::file::{RuleFileErrors, load_files_warning};
use super::group::{Rule, RuleGroup};
use super::template::go_duration;
use crate::common::Duration;
use crate::common::names::is_legacy_metric_name;
use crate::common::yaml::{null_as_empty, null_as_empty_values, parse_yaml_lenient_all};
use crate::promql::{self, Value, notation::parse_series_values};
use crate::store::{Labels, Sample, Store};

/// A promtool unit-test file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitTestFile {
    /// Rule files under test, relative to the test file; globs allowed.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub rule_files: Vec<String>,
    /// How often the rules are evaluated during a test (default 1m).
    #[serde(default)]
    pub evaluation_interval: Option<Duration>,
    /// Group names in the order they are evaluated at each step.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub group_eval_order: Vec<String>,
    /// The test groups.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub tests: Vec<TestGroup>,
    /// Compare floats allowing one unit in the last place of difference (Prometheus 3).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub fuzzy_compare: bool,
}

/// One test group: input series and the checks made on them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestGroup {
    /// Spacing of the input samples (default: the evaluation interval).
    #[serde(default)]
    pub interval: Option<Duration>,
    /// Input series in the expanding notation.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub input_series: Vec<InputSeries>,
    /// Expected firing alerts at given times.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub alert_rule_test: Vec<AlertTestCase>,
    /// Expected results of expressions at given times.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub promql_expr_test: Vec<PromqlTestCase>,
    /// `$externalLabels` in templates.
    #[serde(default, deserialize_with = "null_as_empty_values")]
    pub external_labels: BTreeMap<String, String>,
    /// `$externalURL` in templates.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub external_url: String,
    /// The test group's name (matched by `--run`).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub name: String,
    /// Where the test's time 0 is (Prometheus 3): RFC 3339 or Unix seconds; default the
    /// Unix epoch. Input samples start there and `eval_time`s count from there.
    #[serde(default)]
    pub start_timestamp: Option<StartTimestamp>,
}

/// `start_timestamp`: RFC 3339 (`2024-01-01T00:00:00Z`) or Unix seconds (`1704067200`,
/// fractions allowed), as promtool's `parseTime`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StartTimestamp(pub i64);

impl<'de> Deserialize<'de> for StartTimestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(f64),
            S(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::N(n) => n.to_string(),
            Raw::S(s) => s,
        };
        parse_time_ms(&text).map(StartTimestamp).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "cannot parse {text:?} to a valid timestamp: expected RFC 3339 or Unix seconds"
            ))
        })
    }
}

/// Unix seconds (with a fraction) or RFC 3339, in milliseconds.
fn parse_time_ms(s: &str) -> Option<i64> {
    if let Ok(f) = s.trim().parse::<f64>() {
        return f.is_finite().then(|| (f * 1000.0).round() as i64);
    }
    parse_rfc3339_ms(s.trim())
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` in milliseconds since the epoch.
fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[13] != b':' || b[16] != b':' || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut i = 19;
    let mut ms = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = s.get(start..i).filter(|f| !f.is_empty())?;
        ms = format!("{frac:0<3}")[..3].parse::<i64>().ok()?;
    }
    let offset_s = match s.get(i..)? {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && matches!(&tz[..1], "+" | "-") && &tz[3..4] == ":" => {
            let o = tz[1..3].parse::<i64>().ok()? * 3600 + tz[4..6].parse::<i64>().ok()? * 60;
            if tz.starts_with('-') { -o } else { o }
        }
        _ => return None,
    };
    let days = crate::common::time::days_from_civil(y, mo as u32, d as u32);
    Some((days * 86_400 + h * 3600 + mi * 60 + sec - offset_s) * 1000 + ms)
}

/// One input series.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSeries {
    /// The series, e.g. `up{job="api"}`.
    #[serde(deserialize_with = "null_as_empty")]
    pub series: String,
    /// Its values, e.g. `0+10x5 _ stale 3`.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub values: String,
}

/// Expected firing alerts of one alerting rule at one time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertTestCase {
    /// Time since the start of the test.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub eval_time: Duration,
    /// The alerting rule's name.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub alertname: String,
    /// The alerts expected to fire (none: the alert must not fire).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub exp_alerts: Vec<ExpAlert>,
}

/// One expected alert.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpAlert {
    /// Its labels, `alertname` excepted.
    #[serde(default, deserialize_with = "null_as_empty_values")]
    pub exp_labels: BTreeMap<String, String>,
    /// Its annotations.
    #[serde(default, deserialize_with = "null_as_empty_values")]
    pub exp_annotations: BTreeMap<String, String>,
}

/// Expected result of an expression at one time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromqlTestCase {
    /// The PromQL expression.
    #[serde(deserialize_with = "null_as_empty")]
    pub expr: String,
    /// Time since the start of the test.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub eval_time: Duration,
    /// The expected samples (any order).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub exp_samples: Vec<ExpSample>,
}

/// One expected sample.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpSample {
    /// The series, e.g. `up{job="api"}` or `{job="api"}`.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub labels: String,
    /// The value.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub value: f64,
}

/// `medic test`'s options (promtool 3's flags).
#[derive(Debug, Clone, Default)]
pub struct TestOptions {
    /// Only test groups whose name matches one of these regexes (`--run`).
    pub run: Vec<String>,
    /// Write a JUnit XML report here (`--junit`).
    pub junit: Option<PathBuf>,
    /// Print each test group's start, end and duration, and a dump of all series at the
    /// end (`--debug`, to stderr).
    pub debug: bool,
    /// Show failed alert comparisons as a diff of expected and got (`--diff`).
    pub diff: bool,
    /// Ignore unknown fields in test and rule files (`--ignore-unknown-fields`).
    pub ignore_unknown_fields: bool,
}

/// Runs every file, printing promtool's report (`Unit Testing:  FILE`, `  SUCCESS` or
/// `  FAILED:` with the failures). Returns the exit code: 0 if all passed, 1 otherwise.
pub fn run_test_files(
    files: &[PathBuf],
    opts: &TestOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<i32> {
    let run = if opts.run.is_empty() {
        None
    } else {
        match Regex::new(&opts.run.join("|")) {
            Ok(r) => Some(r),
            Err(e) => {
                writeln!(err, "invalid --run regex: {e}")?;
                return Ok(1);
            }
        }
    };
    let mut failed = false;
    let mut junit = junit::Report::default();
    for f in files {
        writeln!(out, "Unit Testing:  {}", f.display())?;
        out.flush()?;
        let suite = junit.suite(&f.display().to_string());
        let errs = test_file(f, run.as_ref(), opts, suite, err);
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
    if let Some(path) = &opts.junit
        && let Err(e) = std::fs::write(path, junit.to_xml())
    {
        writeln!(err, "failed to write JUnit XML: {e}")?;
    }
    Ok(i32::from(failed))
}

/// Runs one test file; the failures, empty if it passed. Warnings and `--debug` output go
/// to `warn`.
fn test_file(
    path: &Path,
    run: Option<&Regex>,
    opts: &TestOptions,
    suite: &mut junit::Suite,
    warn: &mut dyn Write,
) -> Vec<String> {
    let abort = |suite: &mut junit::Suite, e: String| {
        suite.abort(&e);
        vec![e]
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return abort(suite, format!("{}: {e}", path.display())),
    };
    // promtool reads the first document of a test file (yaml.Unmarshal); null is empty.
    // Every unknown field at once, as promtool's yaml.UnmarshalStrict.
    let file: UnitTestFile = match parse_yaml_lenient_all(path, &text, opts.ignore_unknown_fields) {
        Ok(f) => f.value,
        Err(es) => {
            let es: Vec<String> = es
                .iter()
                .map(|e| e.to_string().trim_start_matches("error: ").to_string())
                .collect();
            return abort(suite, es.join("\n"));
        }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let rule_files = match resolve_rule_files(dir, &file.rule_files, warn) {
        Ok(f) => f,
        Err(e) => return abort(suite, e),
    };
    suite.timestamp = crate::common::time::rfc3339_ms(crate::common::time::now_ms())
        .chars()
        .take(19)
        .collect();
    let eval_interval = file
        .evaluation_interval
        .filter(|d| d.as_millis_i64() > 0)
        .unwrap_or(Duration::from_secs(60));
    let mut order = HashMap::new();
    for (i, g) in file.group_eval_order.iter().enumerate() {
        if order.insert(g.clone(), i).is_some() {
            return abort(
                suite,
                format!("group name repeated in evaluation order: {g}"),
            );
        }
    }
    let ctx = RunContext {
        eval_interval,
        order: &order,
        rule_files: &rule_files,
        fuzzy: file.fuzzy_compare,
        opts,
    };
    let mut errs = Vec::new();
    for (i, tg) in file.tests.iter().enumerate() {
        if run.is_some_and(|r| !r.is_match(&tg.name)) {
            continue;
        }
        let name = if tg.name.is_empty() {
            format!("unnamed#{i}")
        } else {
            tg.name.clone()
        };
        suite.case(&name);
        let started = std::time::Instant::now();
        if opts.debug {
            let _ = writeln!(warn, "DEBUG: Starting test {name}");
        }
        let found = tg.run(&ctx, warn);
        if opts.debug {
            let took = started.elapsed().as_nanos().min(i64::MAX as u128) as i64;
            let _ = writeln!(
                warn,
                "DEBUG: Test {name} finished, took {}",
                go_duration(took)
            );
        }
        for e in &found {
            suite.fail(e);
        }
        errs.extend(found);
    }
    errs
}

/// What every test group of one file shares.
struct RunContext<'a> {
    eval_interval: Duration,
    order: &'a HashMap<String, usize>,
    rule_files: &'a [PathBuf],
    fuzzy: bool,
    opts: &'a TestOptions,
}

/// Float equality as promtool compares: exact (NaN never equals NaN, as reflect.DeepEqual),
/// or, with `fuzzy_compare`, also one unit in the last place apart.
fn same_float(a: f64, b: f64, fuzzy: bool) -> bool {
    a == b
        || fuzzy && (next_toward(a, f64::NEG_INFINITY) == b || next_toward(a, f64::INFINITY) == b)
}

/// Go's `math.Nextafter(x, y)` for y = ±Inf.
fn next_toward(x: f64, y: f64) -> f64 {
    if x.is_nan() || x == y {
        return x;
    }
    if x == 0.0 {
        return if y > 0.0 {
            f64::from_bits(1)
        } else {
            -f64::from_bits(1)
        };
    }
    let bits = x.to_bits();
    if (y > x) == (x > 0.0) {
        f64::from_bits(bits + 1)
    } else {
        f64::from_bits(bits - 1)
    }
}

/// The rule files named by a test file, relative to its folder, globs expanded. A pattern
/// that matches nothing is a warning and is skipped, as in promtool.
fn resolve_rule_files(
    dir: &Path,
    patterns: &[String],
    warn: &mut dyn Write,
) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in patterns {
        let full = if Path::new(p).is_absolute() || p.is_empty() {
            PathBuf::from(p)
        } else {
            // Go's filepath.Join cleans `./`
            dir.join(p)
                .components()
                .filter(|c| !matches!(c, std::path::Component::CurDir))
                .collect()
        };
        let pattern = full.to_string_lossy().to_string();
        let matches = glob::glob(&pattern).map_err(|e| format!("{p}: {e}"))?;
        let mut found: Vec<PathBuf> = matches.filter_map(Result::ok).collect();
        found.sort();
        if found.is_empty() {
            let _ = writeln!(warn, "  WARNING: no file match pattern {pattern}");
        }
        out.extend(found);
    }
    Ok(out)
}

impl TestGroup {
    fn run(&self, ctx: &RunContext<'_>, warn: &mut dyn Write) -> Vec<String> {
        let (eval_interval, order) = (ctx.eval_interval, ctx.order);
        // time 0 of the test: the Unix epoch, or `start_timestamp`
        let mint = self.start_timestamp.map_or(0, |t| t.0);
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
                    store.append(&labels, mint + i as i64 * interval.as_millis_i64(), v);
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
        let mut warnings = Vec::new();
        let loaded = load_files_warning(
            ctx.rule_files,
            &opts,
            ctx.opts.ignore_unknown_fields,
            &mut warnings,
        );
        for w in warnings {
            let _ = writeln!(warn, "  WARNING: {w}");
        }
        let mut groups = match loaded {
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
        let mut ts = mint;
        while ts <= mint + max_t {
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
                && ts - mint <= alert_times[curr]
                && alert_times[curr] < ts - mint + step
            {
                let t = alert_times[curr];
                for case in self
                    .alert_rule_test
                    .iter()
                    .filter(|c| c.eval_time.as_millis_i64() == t)
                {
                    if let Some(e) = self.check_alerts(case, &groups, ctx) {
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
            if let Some(e) = check_expr(case, &store, &opts, mint, ctx.fuzzy) {
                errs.push(e);
            }
        }
        if ctx.opts.debug {
            self.dump(&store, mint, max_t, warn);
        }
        errs
    }

    fn check_alerts(
        &self,
        case: &AlertTestCase,
        groups: &[RuleGroup],
        ctx: &RunContext<'_>,
    ) -> Option<String> {
        // Annotations keep empty values, as Prometheus' (labels drop them, as its builder).
        let mut got: Vec<(Labels, Annotations)> = Vec::new();
        for g in groups {
            for r in g.rules() {
                if let Rule::Alerting(a) = r
                    && a.name() == case.alertname
                {
                    got.extend(
                        a.active_alerts(g.name())
                            .into_iter()
                            .filter(|x| x.state == AlertState::Firing)
                            .map(|x| (x.labels, x.annotations.into_iter().collect())),
                    );
                }
            }
        }
        let mut exp: Vec<(Labels, Annotations)> = case
            .exp_alerts
            .iter()
            .map(|a| {
                let mut l = a.exp_labels.clone();
                l.insert("alertname".into(), case.alertname.clone());
                let ann = a.exp_annotations.clone().into_iter().collect();
                (Labels::new(l), ann)
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
        if ctx.opts.diff {
            let diff = alerts_diff(&exp, &got)?;
            return Some(format!(
                "{name}    alertname: {}, time: {}, \n        diff: {}",
                case.alertname,
                case.eval_time,
                indent(&diff, "            ")
            ));
        }
        Some(format!(
            "{name}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
            case.alertname,
            case.eval_time,
            indent(&alerts_string(&exp), "            "),
            indent(&alerts_string(&got), "            ")
        ))
    }

    /// `--debug`: every series in the store (input and recorded) up to the last eval time,
    /// as promtool dumps `{__name__=~".+"}[T]`.
    fn dump(&self, store: &Store, mint: i64, max_t: i64, warn: &mut dyn Write) {
        // whole seconds, rounded up past the last eval time (PromQL has no fractions here)
        let secs = (max_t / 1000) + 1;
        let expr = format!("{{__name__=~\".+\"}}[{secs}s]");
        let v =
            promql::parse(&expr).and_then(|e| promql::eval_instant(store, &e, mint + secs * 1000));
        match v {
            Ok(Value::Matrix(m)) => {
                let _ = writeln!(
                    warn,
                    "DEBUG: Dump of all data (input_series and rules) at {}:",
                    go_duration(secs * 1_000_000_000)
                );
                let series: Vec<String> = m
                    .iter()
                    .map(|r| {
                        let points: Vec<String> = r
                            .points
                            .iter()
                            .map(|(t, v)| format!("{v} @[{t}]"))
                            .collect();
                        format!("{} =>\n{}", go_labels(&r.labels), points.join("\n"))
                    })
                    .collect();
                let _ = writeln!(warn, "{}", series.join("\n"));
            }
            Ok(_) => {
                let _ = writeln!(warn, "DEBUG: Got unexpected type");
            }
            Err(e) => {
                let _ = writeln!(warn, "DEBUG: Failed querying, expr: {expr:?}, err: {e}");
            }
        }
    }
}

/// `--diff`: expected and got alerts as JSON, compared as promtool 3 does (jsondiff, an
/// empty side shown as one empty alert); None when the JSON matches after all.
fn alerts_diff(exp: &[(Labels, Annotations)], got: &[(Labels, Annotations)]) -> Option<String> {
    let json = |la: &[(Labels, Annotations)]| {
        let one = |l: serde_json::Map<String, serde_json::Value>,
                   a: serde_json::Map<String, serde_json::Value>| {
            serde_json::json!({"Labels": l, "Annotations": a})
        };
        if la.is_empty() {
            return serde_json::Value::Array(vec![one(Default::default(), Default::default())]);
        }
        let items = la
            .iter()
            .map(|(l, a)| {
                let labels = l.iter().map(|(k, v)| (k.to_string(), v.into())).collect();
                let ann = a
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().into()))
                    .collect();
                one(labels, ann)
            })
            .collect();
        serde_json::Value::Array(items)
    };
    let (d, text) = super::jsondiff::compare(&json(exp), &json(got));
    (d != super::jsondiff::Difference::FullMatch).then_some(text)
}

fn check_expr(
    case: &PromqlTestCase,
    store: &Store,
    opts: &promql::EvalOptions,
    mint: i64,
    fuzzy: bool,
) -> Option<String> {
    let t = mint + case.eval_time.as_millis_i64();
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
    let same = exp.len() == got.len()
        && exp
            .iter()
            .zip(&got)
            .all(|(e, g)| e.0 == g.0 && same_float(e.1, g.1, fuzzy));
    if same {
        return None;
    }
    Some(format!(
        "{head},\n        exp: {}\n        got: {}",
        samples_string(&exp),
        samples_string(&got)
    ))
}

/// An alert's annotations, sorted by name, empty values kept.
type Annotations = Vec<(String, String)>;

/// Go's `labels.Labels.String()`: `{a="1", b="2"}`.
fn go_labels(l: &Labels) -> String {
    go_pairs(l.iter())
}

fn go_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in pairs.enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{k}={v:?}");
    }
    s.push('}');
    s
}

fn alerts_string(la: &[(Labels, Annotations)]) -> String {
    if la.is_empty() {
        return "[]".into();
    }
    let mut s = String::from("[");
    for (i, (l, a)) in la.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let one = format!(
            "\nLabels:{}\nAnnotations:{}",
            go_labels(l),
            go_pairs(a.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        );
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

/// Parses a series as promtool writes it: `name`, `name{a="b",...}`, `{a="b"}`, or, with
/// Prometheus 3's UTF-8 names, `{"my.metric", "foo.bar"="x"}`. Empty (an `exp_samples`
/// entry without labels, for `vector(1)` or `time()`) is the empty label set.
pub fn parse_metric(s: &str) -> Result<Labels, String> {
    let s = s.trim();
    let (name, rest) = match s.find('{') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let name = name.trim();
    let mut pairs: Vec<(String, String)> = Vec::new();
    if !name.is_empty() {
        if !is_legacy_metric_name(name) {
            return Err(format!(
                "invalid metric name {name:?} (quote it inside braces: {{\"{name}\"}})"
            ));
        }
        pairs.push(("__name__".into(), name.to_string()));
    }
    if rest.is_empty() {
        return Ok(Labels::new(pairs));
    }
    let inner = rest
        .strip_prefix('{')
        .and_then(|r| r.trim_end().strip_suffix('}'))
        .ok_or_else(|| "expected '}' at the end of the label set".to_string())?;
    let chars: Vec<char> = inner.chars().collect();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    loop {
        while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        let start = i;
        let (key, quoted) = if matches!(chars[i], '"' | '\'' | '`') {
            (
                quoted_string(&chars, &mut i).ok_or("unterminated quoted label name")?,
                true,
            )
        } else {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            (chars[start..i].iter().collect::<String>(), false)
        };
        if key.is_empty() && !quoted {
            return Err(format!(
                "expected a label name at {:?}",
                chars[start..].iter().collect::<String>()
            ));
        }
        skip_ws(&mut i);
        if quoted && chars.get(i) != Some(&'=') {
            // `{"my.metric", ...}`: a quoted name alone is the metric name
            if pairs.iter().any(|(k, _)| k == "__name__") {
                return Err(format!("metric name {key:?} given twice"));
            }
            pairs.push(("__name__".into(), key));
            continue;
        }
        if chars.get(i) != Some(&'=') {
            return Err(format!("expected '=' after label {key:?}"));
        }
        i += 1;
        skip_ws(&mut i);
        if !matches!(chars.get(i), Some('"' | '\'' | '`')) {
            return Err(format!("expected a quoted value for label {key:?}"));
        }
        let val = quoted_string(&chars, &mut i)
            .ok_or_else(|| format!("unterminated value for label {key:?}"))?;
        if key.is_empty() {
            return Err("empty label name".into());
        }
        pairs.push((key, val));
    }
    Ok(Labels::new(pairs))
}

/// A quoted string starting at `chars[*i]` (`"`, `'` or a raw `` ` ``), unescaped; `*i` ends
/// past the closing quote. None when it is not closed.
fn quoted_string(chars: &[char], i: &mut usize) -> Option<String> {
    let quote = chars[*i];
    *i += 1;
    let mut val = String::new();
    loop {
        match chars.get(*i)? {
            c if *c == quote => break,
            '\\' if quote != '`' => {
                *i += 1;
                match chars.get(*i)? {
                    'n' => val.push('\n'),
                    't' => val.push('\t'),
                    c => val.push(*c),
                }
            }
            c => val.push(*c),
        }
        *i += 1;
    }
    *i += 1;
    Some(val)
}

/// promtool's JUnit XML report (`--junit`): a suite per file, a case per test group, its
/// failures; encoded as Go's encoding/xml writes it.
mod junit {
    #[derive(Debug, Default)]
    pub struct Report {
        suites: Vec<Suite>,
    }

    #[derive(Debug, Default)]
    pub struct Suite {
        name: String,
        pub timestamp: String,
        failures: usize,
        errors: usize,
        cases: Vec<Case>,
    }

    #[derive(Debug, Default)]
    struct Case {
        name: String,
        failures: Vec<String>,
        error: String,
    }

    impl Report {
        pub fn suite(&mut self, name: &str) -> &mut Suite {
            self.suites.push(Suite {
                name: name.to_string(),
                ..Suite::default()
            });
            let last = self.suites.len() - 1;
            &mut self.suites[last]
        }

        pub fn to_xml(&self) -> String {
            let mut x = String::from("<testsuites>");
            for s in &self.suites {
                x.push_str(&format!(
                    "<testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"0\" timestamp=\"{}\">",
                    esc(&s.name),
                    s.cases.len(),
                    s.failures,
                    s.errors,
                    esc(&s.timestamp)
                ));
                for c in &s.cases {
                    x.push_str(&format!("<testcase name=\"{}\">", esc(&c.name)));
                    for f in &c.failures {
                        x.push_str(&format!("<failure>{}</failure>", esc(f)));
                    }
                    if !c.error.is_empty() {
                        x.push_str(&format!("<error>{}</error>", esc(&c.error)));
                    }
                    x.push_str("</testcase>");
                }
                x.push_str("</testsuite>");
            }
            x.push_str("</testsuites>");
            x
        }
    }

    impl Suite {
        pub fn case(&mut self, name: &str) {
            self.cases.push(Case {
                name: name.to_string(),
                ..Case::default()
            });
        }

        fn last(&mut self) -> &mut Case {
            if self.cases.is_empty() {
                self.case("unknown");
            }
            let last = self.cases.len() - 1;
            &mut self.cases[last]
        }

        pub fn fail(&mut self, f: &str) {
            self.failures += 1;
            self.last().failures.push(f.to_string());
        }

        pub fn abort(&mut self, e: &str) {
            self.errors += 1;
            self.last().error = e.to_string();
        }
    }

    /// Go's xml.EscapeText.
    fn esc(s: &str) -> String {
        let mut o = String::with_capacity(s.len());
        for c in s.chars() {
            match c {
                '&' => o.push_str("&amp;"),
                '<' => o.push_str("&lt;"),
                '>' => o.push_str("&gt;"),
                '"' => o.push_str("&#34;"),
                '\'' => o.push_str("&#39;"),
                '\n' => o.push_str("&#xA;"),
                '\r' => o.push_str("&#xD;"),
                '\t' => o.push_str("&#x9;"),
                // not allowed in XML: Go writes the replacement character
                c if (c as u32) < 0x20 => o.push('\u{FFFD}'),
                c => o.push(c),
            }
        }
        o
    }
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
        // no labels at all: the empty set (`exp_samples` for `vector(1)`), as promtool
        assert!(parse_metric("").unwrap().is_empty());
        assert!(parse_metric("{}").unwrap().is_empty());
        // Prometheus 3's UTF-8 names (promtool 2.42 rejects these)
        let l = parse_metric(r#"{"my.metric", a="b", "foo.bar"='x'}"#).unwrap();
        assert_eq!(l.get("__name__"), Some("my.metric"));
        assert_eq!(l.get("foo.bar"), Some("x"));
        assert!(parse_metric(r#"up{"x"}"#).is_err());
        assert!(parse_metric("my.metric").is_err());
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
