//! Rule files: Prometheus' rule-file format, unchanged, plus medic's `remediate:` on
//! alerting rules. Loading reports every error it finds with file, line and column.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::GroupOptions;
use super::RemediateStep;
use super::alerting::AlertingRule;
use super::group::{Rule, RuleGroup};
use super::recording::RecordingRule;
use super::template::Template;
use crate::common::Duration;
use crate::common::names::{is_valid_label_name, is_valid_metric_name};
use crate::common::yaml::{
    null_as_empty, null_as_empty_spanned, null_as_empty_values, parse_yaml_lenient_all,
};
use crate::promql::{self, Expr};
use crate::store::Labels;

/// The actuator kinds a `remediate:` step may name.
pub const ACTION_KINDS: &[&str] = &[
    "exec",
    "http",
    "clear_cache",
    "set_capacity",
    "set_batch_size",
    "scale_pool",
    "set_value",
    "restart",
    "rollback",
];

/// A rule file: `groups:` of rules.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFileConfig {
    /// The rule groups. Each group is evaluated on its own schedule, its rules in order.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub groups: Vec<RuleGroupConfig>,
}

/// One group of rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleGroupConfig {
    /// The group's name, unique within the file.
    #[serde(deserialize_with = "null_as_empty_spanned")]
    pub name: Spanned<String>,
    /// How often the group is evaluated; the global evaluation interval when absent or 0
    /// (as in Prometheus).
    #[serde(default)]
    pub interval: Option<Duration>,
    /// Evaluate the expressions this long in the past (for data that arrives late).
    #[serde(default)]
    pub query_offset: Option<Duration>,
    /// At most this many series per recording rule and alerts per alerting rule; a rule
    /// producing more fails its evaluation. 0 (or, as in Prometheus, a negative number)
    /// means no limit.
    #[serde(default, deserialize_with = "limit_or_none")]
    pub limit: usize,
    /// Labels added to every rule's result (a rule's own labels win).
    #[serde(default, deserialize_with = "null_as_empty_values")]
    pub labels: BTreeMap<String, String>,
    /// The rules, evaluated in order (a recording rule's output is visible to later rules).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub rules: Vec<RuleConfig>,
}

/// One recording or alerting rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Recording rule: the metric name the result is stored under.
    #[serde(default)]
    pub record: Option<Spanned<String>>,
    /// Alerting rule: the alert's name (`alertname`).
    #[serde(default)]
    pub alert: Option<Spanned<String>>,
    /// The PromQL expression.
    #[serde(default)]
    pub expr: Option<Spanned<String>>,
    /// Alerting rules: how long the expression must keep returning a series before the
    /// alert fires (it is pending meanwhile).
    #[serde(default, rename = "for")]
    pub for_: Option<Duration>,
    /// Alerting rules: how long an alert keeps firing after the expression stops returning it.
    #[serde(default)]
    pub keep_firing_for: Option<Duration>,
    /// Labels added to (or overriding) the result's labels; templated in alerting rules.
    /// (Values located so that template errors point at them.)
    #[serde(default, deserialize_with = "null_as_empty_values")]
    pub labels: BTreeMap<String, Spanned<String>>,
    /// Alerting rules: annotations, templated (`{{ $labels.x }}`, `{{ $value }}`, ...).
    #[serde(default, deserialize_with = "null_as_empty_values")]
    pub annotations: BTreeMap<String, Spanned<String>>,
    /// Alerting rules (medic): the remediation ladder run while the alert fires (each step
    /// located, for messages).
    #[serde(default)]
    pub remediate: Option<Spanned<Vec<Spanned<RemediateStep>>>>,
}

/// Prometheus' `limit: int`: a negative limit is no limit, like 0.
fn limit_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = Option::<i64>::deserialize(d)?.unwrap_or(0);
    Ok(usize::try_from(n).unwrap_or(0))
}

/// A problem in a rule file, located as precisely as the file allows.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct RuleFileError {
    pub file: PathBuf,
    /// 1-based; 0 when unknown.
    pub line: u64,
    /// 1-based; 0 when unknown.
    pub column: u64,
    pub message: String,
}

impl fmt::Display for RuleFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        } else {
            write!(f, "{}: {}", self.file.display(), self.message)
        }
    }
}

/// Errors of one load, all of them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct RuleFileErrors(pub Vec<RuleFileError>);

impl fmt::Display for RuleFileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Reads and validates rule files into runnable groups. Every error of every file is
/// collected; any error fails the load. Warnings (a second YAML document that is not read)
/// go to the log.
pub fn load_files(
    paths: &[PathBuf],
    opts: &GroupOptions,
) -> Result<Vec<RuleGroup>, RuleFileErrors> {
    let mut warnings = Vec::new();
    let result = load_files_warning(paths, opts, false, &mut warnings);
    for w in warnings {
        tracing::warn!("{w}");
    }
    result
}

/// [`load_files`], with the warnings handed to the caller (`medic check` and `medic test`
/// print them), and unknown fields optionally ignored (promtool's `--ignore-unknown-fields`).
pub fn load_files_warning(
    paths: &[PathBuf],
    opts: &GroupOptions,
    ignore_unknown_fields: bool,
    warnings: &mut Vec<String>,
) -> Result<Vec<RuleGroup>, RuleFileErrors> {
    let mut groups = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let loaded = read_rule_file(path, ignore_unknown_fields, warnings)
            .and_then(|cfg| build_groups(path, cfg, opts));
        match loaded {
            Ok(g) => groups.extend(g),
            Err(e) => errors.extend(e.0),
        }
    }
    if errors.is_empty() {
        Ok(groups)
    } else {
        Err(RuleFileErrors(errors))
    }
}

/// What `medic check` found in one rule file.
#[derive(Debug)]
pub struct FileCheck {
    /// Rules found (0 when there are errors).
    pub rules: usize,
    /// Every error.
    pub errors: Vec<RuleFileError>,
    /// Rules with the same name and labels as another one in the file (promtool's
    /// `duplicate-rules` lint): (name, labels).
    pub duplicates: Vec<(String, Vec<(String, String)>)>,
    /// Warnings (`file:line: ...`).
    pub warnings: Vec<String>,
}

/// Checks one rule file as `medic check` does.
pub fn check_file(path: &Path, ignore_unknown_fields: bool) -> FileCheck {
    let mut warnings = Vec::new();
    let cfg = match read_rule_file(path, ignore_unknown_fields, &mut warnings) {
        Ok(c) => c,
        Err(e) => {
            return FileCheck {
                rules: 0,
                errors: e.0,
                duplicates: Vec::new(),
                warnings,
            };
        }
    };
    let duplicates = duplicate_rules(&cfg);
    match build_groups(path, cfg, &GroupOptions::default()) {
        Ok(groups) => FileCheck {
            rules: groups.iter().map(|g| g.rule_count()).sum(),
            errors: Vec::new(),
            duplicates,
            warnings,
        },
        Err(e) => FileCheck {
            rules: 0,
            errors: e.0,
            duplicates,
            warnings,
        },
    }
}

/// Checks rule files: the number of rules found, or every error.
pub fn check_files(paths: &[PathBuf]) -> Result<usize, RuleFileErrors> {
    let groups = load_files(paths, &GroupOptions::default())?;
    Ok(groups.iter().map(|g| g.rule_count()).sum())
}

/// promtool's duplicate-rules lint: rules whose name and labels (the group's, then the
/// rule's) equal another rule's, each listed once, sorted by name then labels.
fn duplicate_rules(cfg: &RuleFileConfig) -> Vec<(String, Vec<(String, String)>)> {
    let mut all: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for g in &cfg.groups {
        for r in &g.rules {
            let name = r
                .alert
                .as_ref()
                .filter(|a| !a.value.is_empty())
                .or(r.record.as_ref())
                .map(|n| n.value.clone())
                .unwrap_or_default();
            let mut labels = g.labels.clone();
            labels.extend(r.labels.iter().map(|(k, v)| (k.clone(), v.value.clone())));
            all.push((name, labels.into_iter().collect()));
        }
    }
    all.sort();
    let mut dups: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for w in all.windows(2) {
        if w[0] == w[1] && dups.last() != Some(&w[1]) {
            dups.push(w[1].clone());
        }
    }
    dups
}

/// How far back the store must keep samples for these groups: what the loaded rules read,
/// the longest of range + offset + 5 m lookback over every selector (subquery ranges
/// included) plus the group's query offset. See [`promql::max_lookback_ms`].
///
/// Floor: the 5 m lookback, for when no rule reads any series (no rules, or only rules
/// like `vector(1)`): an instant query through the HTTP API (or a template's `query`)
/// still looks back 5 m, and with less the store would drop what it needs between two
/// samples.
pub fn retention_needed_ms(groups: &[RuleGroup]) -> i64 {
    groups
        .iter()
        .map(|g| g.max_lookback_ms())
        .max()
        .unwrap_or(0)
        .max(promql::LOOKBACK_DELTA_MS)
}

/// Parses one rule file's text (the path is for messages and for the groups' `file`).
pub fn parse_rule_file(
    path: &Path,
    text: &str,
    opts: &GroupOptions,
) -> Result<Vec<RuleGroup>, RuleFileErrors> {
    let mut warnings = Vec::new();
    let cfg = parse_rule_text(path, text, false, &mut warnings);
    for w in warnings {
        tracing::warn!("{w}");
    }
    build_groups(path, cfg?, opts)
}

fn read_rule_file(
    path: &Path,
    ignore_unknown_fields: bool,
    warnings: &mut Vec<String>,
) -> Result<RuleFileConfig, RuleFileErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_rule_text(path, &text, ignore_unknown_fields, warnings),
        Err(e) => Err(RuleFileErrors(vec![RuleFileError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read: {e}"),
        }])),
    }
}

/// The file's schema, as Prometheus reads it: the first YAML document (a warning when more
/// follow); an empty file, one with only comments, or `null` has no groups.
fn parse_rule_text(
    path: &Path,
    text: &str,
    ignore_unknown_fields: bool,
    warnings: &mut Vec<String>,
) -> Result<RuleFileConfig, RuleFileErrors> {
    match parse_yaml_lenient_all::<RuleFileConfig>(path, text, ignore_unknown_fields) {
        Ok(l) => {
            warnings.extend(l.warnings);
            Ok(l.value)
        }
        Err(es) => Err(RuleFileErrors(
            es.into_iter()
                .map(|e| {
                    let snippet = e.snippet();
                    let message = if snippet.is_empty() {
                        format!("invalid YAML: {}", e.message)
                    } else {
                        format!("invalid YAML: {}\n{snippet}", e.message)
                    };
                    RuleFileError {
                        file: path.to_path_buf(),
                        line: e.line.unwrap_or(0),
                        column: e.column.unwrap_or(0),
                        message,
                    }
                })
                .collect(),
        )),
    }
}

/// Validates a parsed file and builds its groups; every error is reported.
fn build_groups(
    path: &Path,
    cfg: RuleFileConfig,
    opts: &GroupOptions,
) -> Result<Vec<RuleGroup>, RuleFileErrors> {
    let err = |line: u64, column: u64, message: String| RuleFileError {
        file: path.to_path_buf(),
        line,
        column,
        message,
    };
    let mut errors = Vec::new();
    let mut groups = Vec::new();
    let mut names = HashSet::new();
    for g in cfg.groups {
        let (gl, gc) = (g.name.referenced.line(), g.name.referenced.column());
        if g.name.value.is_empty() {
            errors.push(err(gl, gc, "group name should not be empty".into()));
        }
        if !names.insert(g.name.value.clone()) {
            errors.push(err(
                gl,
                gc,
                format!("groupname: {:?} is repeated in the same file", g.name.value),
            ));
        }
        for k in g.labels.keys() {
            if !is_valid_label_name(k) || k == "__name__" {
                errors.push(err(
                    gl,
                    gc,
                    format!("group {:?}: invalid label name: {k}", g.name.value),
                ));
            }
        }
        let mut rules = Vec::new();
        for r in g.rules {
            match build_rule(&g.name.value, &g.labels, r, opts) {
                Ok(rule) => rules.push(rule),
                Err(es) => errors.extend(es.into_iter().map(|(l, c, m)| err(l, c, m))),
            }
        }
        // `interval: 0s` is "the default", as in Prometheus (a zero model.Duration is unset).
        let interval = g
            .interval
            .filter(|d| d.as_millis_i64() > 0)
            .unwrap_or(opts.default_interval);
        if interval.as_millis_i64() <= 0 {
            errors.push(err(
                gl,
                gc,
                format!("group {:?}: interval must be positive", g.name.value),
            ));
        }
        groups.push(RuleGroup::new(
            g.name.value,
            path.to_path_buf(),
            interval,
            g.query_offset.unwrap_or_default(),
            g.limit,
            rules,
            opts,
        ));
    }
    if errors.is_empty() {
        Ok(groups)
    } else {
        Err(RuleFileErrors(errors))
    }
}

type LocErr = (u64, u64, String);

fn build_rule(
    group: &str,
    group_labels: &BTreeMap<String, String>,
    r: RuleConfig,
    opts: &GroupOptions,
) -> Result<Rule, Vec<LocErr>> {
    let mut errors: Vec<LocErr> = Vec::new();
    let (name, loc, is_alert) = match (&r.record, &r.alert) {
        (Some(rec), None) => (rec.value.clone(), rec.referenced, false),
        (None, Some(al)) => (al.value.clone(), al.referenced, true),
        (Some(rec), Some(_)) => {
            return Err(vec![(
                rec.referenced.line(),
                rec.referenced.column(),
                "only one of 'record' and 'alert' must be set".into(),
            )]);
        }
        (None, None) => {
            let (l, c) = r
                .expr
                .as_ref()
                .map(|e| (e.referenced.line(), e.referenced.column()))
                .unwrap_or((0, 0));
            return Err(vec![(
                l,
                c,
                format!("group {group:?}: one of 'record' or 'alert' must be set"),
            )]);
        }
    };
    let (line, col) = (loc.line(), loc.column());
    let what = if is_alert { "alert" } else { "recording rule" };
    let mut e = |m: String| errors.push((line, col, format!("{what} {name:?}: {m}")));
    if name.is_empty() {
        e("name must not be empty".into());
    }
    if !is_alert && !name.is_empty() && !is_valid_metric_name(&name) {
        e(format!("invalid recording rule name: {name}"));
    }
    // Prometheus 3: any UTF-8 name, but braces are a PromQL selector written by mistake.
    if !is_alert && (name.contains('{') || name.contains('}')) {
        e(format!(
            "braces present in the recording rule name; should it be in expr?: {name}"
        ));
    }
    if !is_alert {
        if r.for_.is_some() {
            e("invalid field 'for' in recording rule".into());
        }
        if r.keep_firing_for.is_some() {
            e("invalid field 'keep_firing_for' in recording rule".into());
        }
        if !r.annotations.is_empty() {
            e("invalid field 'annotations' in recording rule".into());
        }
        if r.remediate.is_some() {
            e("'remediate' is only allowed on alerting rules".into());
        }
    }
    for k in r.labels.keys() {
        if !is_valid_label_name(k) || k == "__name__" {
            e(format!("invalid label name: {k}"));
        }
    }
    for k in r.annotations.keys() {
        if !is_valid_label_name(k) {
            e(format!("invalid annotation name: {k}"));
        }
    }
    // Labels: the group's, then the rule's (the rule wins); each with where it was written
    // (a group label's errors point at the rule).
    let mut located: BTreeMap<String, (String, u64, u64)> = group_labels
        .iter()
        .map(|(k, v)| (k.clone(), (v.clone(), line, col)))
        .collect();
    for (k, v) in &r.labels {
        let (l, c) = (v.referenced.line(), v.referenced.column());
        located.insert(k.clone(), (v.value.clone(), l, c));
    }
    let labels: BTreeMap<String, String> = located
        .iter()
        .map(|(k, (v, _, _))| (k.clone(), v.clone()))
        .collect();
    let annotations: BTreeMap<String, String> = r
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.value.clone()))
        .collect();
    let mut label_tmpls = Vec::new();
    let mut ann_tmpls = Vec::new();
    if is_alert {
        // Template errors point at the label's or annotation's value.
        for (k, (v, l, c)) in &located {
            match Template::parse(v) {
                Ok(t) => label_tmpls.push((k.clone(), t)),
                Err(err) => errors.push((*l, *c, format!("{what} {name:?}: label {k:?}: {err}"))),
            }
        }
        for (k, v) in &r.annotations {
            match Template::parse(&v.value) {
                Ok(t) => ann_tmpls.push((k.clone(), t)),
                Err(err) => errors.push((
                    v.referenced.line(),
                    v.referenced.column(),
                    format!("{what} {name:?}: annotation {k:?}: {err}"),
                )),
            }
        }
    }
    let mut remediate = Vec::new();
    if let Some(steps) = &r.remediate {
        for (i, step) in steps.value.iter().enumerate() {
            // each step's errors point at the step itself
            let (sl, sc) = (step.referenced.line(), step.referenced.column());
            let s = &step.value;
            if !ACTION_KINDS.contains(&s.action.as_str()) {
                errors.push((
                    sl,
                    sc,
                    format!(
                        "{what} {name:?}: remediate[{i}]: unknown action {:?}, expected one of {}",
                        s.action,
                        ACTION_KINDS.join(", ")
                    ),
                ));
            }
            if let Some(v) = &s.verify
                && let Err(err) = promql::parse(v)
            {
                errors.push((
                    sl,
                    sc,
                    format!("{what} {name:?}: remediate[{i}].verify: {err}"),
                ));
            }
            for (k, v) in &s.params {
                if let serde_json::Value::String(text) = v
                    && let Err(err) = Template::parse(text)
                {
                    errors.push((
                        sl,
                        sc,
                        format!("{what} {name:?}: remediate[{i}].params.{k}: {err}"),
                    ));
                }
            }
        }
        remediate = steps.value.iter().map(|s| s.value.clone()).collect();
    }
    let expr = match &r.expr {
        None => {
            errors.push((
                line,
                col,
                format!("{what} {name:?}: field 'expr' must be set in rule"),
            ));
            None
        }
        Some(x) => {
            let (xl, xc) = (x.referenced.line(), x.referenced.column());
            match parse_expr(&x.value) {
                Ok(ex) => Some(ex),
                Err(m) => {
                    errors.push((xl, xc, format!("{what} {name:?}: {m}")));
                    None
                }
            }
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let Some(expr) = expr else {
        return Err(vec![(line, col, format!("{what} {name:?}: no expression"))]);
    };
    let expr_text = r.expr.map(|x| x.value).unwrap_or_default();
    Ok(if is_alert {
        Rule::Alerting(AlertingRule::new(
            name,
            expr_text,
            expr,
            r.for_.unwrap_or_default(),
            r.keep_firing_for.unwrap_or_default(),
            label_tmpls,
            ann_tmpls,
            remediate.into(),
            opts,
            labels,
            annotations,
        ))
    } else {
        Rule::Recording(RecordingRule::new(
            name,
            expr_text,
            expr,
            Labels::new(labels),
        ))
    })
}

/// Parses an expression and checks that the evaluator supports everything in it.
fn parse_expr(text: &str) -> Result<Expr, String> {
    if text.trim().is_empty() {
        return Err("field 'expr' must be set in rule".into());
    }
    let expr = promql::parse(text).map_err(|e| format!("could not parse expression: {e}"))?;
    promql::check_supported(&expr).map_err(|e| e.to_string())?;
    Ok(expr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<RuleGroup>, RuleFileErrors> {
        parse_rule_file(Path::new("r.yaml"), text, &GroupOptions::default())
    }

    #[test]
    fn loads_prometheus_file_with_remediate() {
        let text = r#"
groups:
- name: g
  interval: 10s
  rules:
  - record: job:up:sum
    expr: sum by (job) (up)
  - alert: Down
    expr: up == 0
    for: 1m
    keep_firing_for: 30s
    labels: {severity: page}
    annotations:
      summary: "{{ $labels.instance }} down"
    remediate:
    - action: restart
      target: svc
      params: {unit: "{{ $labels.job }}.service"}
"#;
        let groups = parse(text).unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].rule_count(), 2);
        assert_eq!(groups[0].interval_ms(), 10_000);
    }

    #[test]
    fn reports_every_error_with_location() {
        let text = r#"groups:
- name: g
  rules:
  - record: "bad{name}"
    expr: up
  - alert: A
    record: b
    expr: up
  - alert: B
    expr: sum(up
  - record: r
    expr: up
    for: 1m
  - alert: C
    expr: up
    remediate:
    - action: reboot_the_world
"#;
        let errs = parse(text).unwrap_err().0;
        let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 5, "{msgs:#?}");
        assert!(msgs[0].starts_with("r.yaml:4:13: "), "{}", msgs[0]);
        assert!(msgs[0].contains("braces present in the recording rule name"));
        assert!(msgs[1].contains("only one of"));
        assert!(msgs[2].starts_with("r.yaml:10:11: "), "{}", msgs[2]);
        assert!(
            msgs[2].contains(
                "could not parse expression: 1:7: parse error: unclosed left parenthesis"
            ),
            "{}",
            msgs[2]
        );
        assert!(msgs[3].contains("invalid field 'for'"));
        assert!(msgs[4].contains("unknown action \"reboot_the_world\""));
    }

    #[test]
    fn yaml_errors_carry_location() {
        let errs = parse("groups:\n- name: g\n  rules:\n  - alert: A\n    exprr: up\n")
            .unwrap_err()
            .0;
        assert_eq!(errs.len(), 1);
        assert_eq!((errs[0].line, errs[0].column), (5, 5), "{}", errs[0]);
        let errs = parse("groups:\n- name: g\n  rules: [\n").unwrap_err().0;
        assert!(errs[0].line > 0, "{}", errs[0]);
    }

    #[test]
    fn unsupported_constructs_rejected_and_retention_follows_ranges() {
        let text = "groups:\n- name: g\n  rules:\n  - alert: H\n    expr: histogram_count(x) > 1\n";
        let errs = parse(text).unwrap_err().0;
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0]
                .to_string()
                .starts_with("r.yaml:5:11: alert \"H\": unsupported: "),
            "{}",
            errs[0]
        );
        assert!(errs[0].message.contains("histogram_count"), "{}", errs[0]);
        // range + offset + 5 m lookback, plus the group's query offset
        let text = "groups:\n- name: g\n  query_offset: 1m\n  rules:\n  - record: r\n    expr: rate(x[30m] offset 5m)\n  - alert: A\n    expr: up == 0\n";
        let groups = parse(text).unwrap();
        assert_eq!(retention_needed_ms(&groups), (30 + 5 + 5 + 1) * 60_000);
        // no floor above the formula: a short range needs little
        let text = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: rate(x[1m]) > 0\n";
        assert_eq!(retention_needed_ms(&parse(text).unwrap()), (1 + 5) * 60_000);
        // nothing read at all: the API's 5 m lookback
        assert_eq!(retention_needed_ms(&[]), 5 * 60_000);
        let text = "groups:\n- name: g\n  rules:\n  - record: one\n    expr: vector(1)\n";
        assert_eq!(retention_needed_ms(&parse(text).unwrap()), 5 * 60_000);
    }

    #[test]
    fn bad_templates_and_duplicate_groups_rejected() {
        let text = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    annotations: {s: '{{ nope }}'}\n- name: g\n  rules: []\n";
        let errs = parse(text).unwrap_err().0;
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].message.contains("annotation \"s\""));
        assert!(errs[1].message.contains("repeated"));
    }

    #[test]
    fn zero_interval_is_the_default_and_negative_limit_is_no_limit() {
        // as in Prometheus: `interval: 0s` is unset, a negative limit is no limit
        let text = "groups:\n- name: g\n  interval: 0s\n  limit: -1\n  rules:\n  - alert: A\n    expr: up == 0\n";
        let opts = GroupOptions {
            default_interval: Duration::from_secs(15),
            ..GroupOptions::default()
        };
        let groups = parse_rule_file(Path::new("r.yaml"), text, &opts).unwrap();
        assert_eq!(groups[0].interval_ms(), 15_000);
        assert_eq!(groups[0].rules_snapshot().limit, 0);
        let text = "groups:\n- name: g\n  limit: 3\n  rules: []\n";
        assert_eq!(parse(text).unwrap()[0].rules_snapshot().limit, 3);
    }

    #[test]
    fn template_and_remediate_errors_point_at_their_own_lines() {
        let text = r#"groups:
- name: g
  rules:
  - alert: A
    expr: up == 0
    labels:
      severity: '{{ nope }}'
    annotations:
      ok: fine
      summary: "{{ $undefined }}"
    remediate:
    - action: restart
      target: svc
    - action: nuke
    -   action: exec
        params: {cmd: "{{ bad"}
"#;
        let errs = parse(text).unwrap_err().0;
        let got: Vec<(u64, u64, &str)> = errs
            .iter()
            .map(|e| (e.line, e.column, e.message.as_str()))
            .collect();
        assert_eq!(got.len(), 4, "{got:#?}");
        assert_eq!((got[0].0, got[0].1), (7, 17), "{got:?}");
        assert!(
            got[0]
                .2
                .contains("label \"severity\": template: 1:1: function \"nope\" not defined"),
            "{got:?}"
        );
        assert_eq!((got[1].0, got[1].1), (10, 16), "{got:?}");
        assert!(
            got[1].2.contains("undefined variable \"$undefined\""),
            "{got:?}"
        );
        assert_eq!((got[2].0, got[2].1), (14, 7), "{got:?}");
        assert!(
            got[2].2.contains("remediate[1]: unknown action \"nuke\""),
            "{got:?}"
        );
        assert_eq!((got[3].0, got[3].1), (15, 9), "{got:?}");
        assert!(got[3].2.contains("remediate[2].params.cmd"), "{got:?}");
    }

    #[test]
    fn yaml_error_snippets_name_the_file() {
        let errs = parse_rule_file(
            Path::new("rules/bad.yaml"),
            "groups:\n- name: g\n  rules:\n  - alert: A\n    exprr: up\n",
            &GroupOptions::default(),
        )
        .unwrap_err()
        .0;
        let shown = errs[0].to_string();
        assert!(
            shown.starts_with("rules/bad.yaml:5:5: invalid YAML: unknown field `exprr`"),
            "{shown}"
        );
        assert!(shown.contains("\n5 |     exprr: up\n"), "{shown}");
        assert!(!shown.contains("<input>"), "{shown}");
    }

    #[test]
    fn yaml_nulls_are_empty_everywhere() {
        // The mixins ship files whose whole content is `null`; keys with no value are empty.
        for text in ["null\n", "", "# nothing\n", "groups:\n", "groups: ~\n"] {
            assert_eq!(parse(text).unwrap().len(), 0, "{text:?}");
        }
        let text = "groups:\n- name: g\n  labels:\n  rules:\n- name: h\n  rules:\n  - alert: A\n    expr: up\n    labels:\n    annotations:\n";
        let groups = parse(text).unwrap();
        assert_eq!(
            (groups.len(), groups[0].rule_count(), groups[1].rule_count()),
            (2, 0, 1)
        );
        // null strings are "" (promtool: `Groupname must not be empty`, `field 'expr' must
        // be set`), null label and annotation values too
        let errs = parse("groups:\n- name:\n  rules:\n  - alert:\n    record: x\n    expr:\n    labels: {a: }\n  limit:\n").unwrap_err().0;
        assert!(
            errs.iter()
                .any(|e| e.message == "group name should not be empty"),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.message.ends_with("field 'expr' must be set in rule")),
            "{errs:?}"
        );
        let text = "groups:\n- name: g\n  limit:\n  rules:\n  - alert: A\n    expr: up\n    labels: {a: }\n    annotations:\n      summary:\n";
        assert_eq!(parse(text).unwrap()[0].rule_count(), 1);
    }

    #[test]
    fn first_yaml_document_read_with_a_warning() {
        // Prometheus 3 (promtool 2.42 reads the first document too, silently)
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("m.yaml");
        std::fs::write(
            &f,
            "groups:\n- name: a\n  rules:\n  - record: r\n    expr: up\n---\ngroups: [{name: b, bogus: 1}]\n",
        )
        .unwrap();
        let c = check_file(&f, false);
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        assert_eq!(c.rules, 1);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].ends_with(":7: multiple document yaml files are not supported, only the first document is processed"));
    }

    #[test]
    fn utf8_names_as_prometheus_3() {
        // Prometheus 3 validates names as UTF-8 (2.42 rejects these: a unit test, not an
        // agreement test); braces in a record name are still refused, as in Prometheus 3.
        let text = "groups:\n- name: g\n  labels: {\"grp.label\": x}\n  rules:\n  - record: foo-bar\n    expr: '{\"my.metric\", a=\"b\"}'\n    labels: {\"foo.bar\": x}\n  - alert: A\n    expr: up\n    annotations: {\"my.note\": x}\n";
        assert_eq!(parse(text).unwrap()[0].rule_count(), 2);
        let errs = parse("groups:\n- name: g\n  rules:\n  - record: 'x{a=\"b\"}'\n    expr: up\n  - record: r\n    expr: up\n    labels: {__name__: x, '': y}\n").unwrap_err().0;
        let msgs: Vec<String> = errs.iter().map(|e| e.message.clone()).collect();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(
            msgs[0].contains("braces present in the recording rule name; should it be in expr?")
        );
        assert!(
            msgs.iter()
                .any(|m| m.ends_with("invalid label name: __name__")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter().any(|m| m.ends_with("invalid label name: ")),
            "{msgs:?}"
        );
    }

    #[test]
    fn duplicate_rules_found_as_promtool_lints_them() {
        let cfg: RuleFileConfig = crate::common::yaml::parse_yaml(
            Path::new("d.yaml"),
            "groups:\n- name: a\n  labels: {team: x}\n  rules:\n  - record: r\n    expr: up\n  - alert: A\n    expr: up\n- name: b\n  rules:\n  - record: r\n    expr: sum(up)\n    labels: {team: x}\n  - record: r\n    expr: up\n    labels: {team: x}\n  - alert: A\n    expr: up\n    labels: {team: y}\n",
        )
        .unwrap();
        // group labels count (the rule's win); each duplicate listed once
        assert_eq!(
            duplicate_rules(&cfg),
            vec![("r".to_string(), vec![("team".to_string(), "x".to_string())])]
        );
    }
}
