//! Rule engine end to end: `medic test` agrees with `promtool test rules` on every unit-test
//! file in tests/promtool/ (pass/fail, exit code and the report itself, byte for byte), and
//! `medic check` reports errors where they are.
//!
//! promtool here is Debian's 2.42 (Prometheus 2 range windows, closed at the start); medic
//! follows Prometheus 3 (left-open windows). The test files keep samples off window
//! boundaries so that both read the same samples (see tests/promtool/rules.yaml).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const MEDIC: &str = env!("CARGO_BIN_EXE_medic");

fn promtool_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/promtool")
}

/// Runs a command with a deadline (the tests must not hang on a stuck child).
fn run(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The unit-test files: `pass_*.yaml` must pass, `fail_*.yaml` must fail.
fn test_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(promtool_dir())
        .expect("tests/promtool")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            (n.starts_with("pass_") || n.starts_with("fail_")) && n.ends_with(".yaml")
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 6,
        "expected the promtool test files, found {files:?}"
    );
    files
}

/// `medic test FILE` and `promtool test rules FILE`, run in tests/promtool.
fn medic_and_promtool(name: &str) -> (Output, Output) {
    let medic = run(Command::new(MEDIC)
        .arg("test")
        .arg(name)
        .current_dir(promtool_dir()));
    let prom = run(Command::new("promtool")
        .args(["test", "rules"])
        .arg(name)
        .current_dir(promtool_dir()));
    (medic, prom)
}

#[test]
fn medic_test_agrees_with_promtool() {
    let mut report = Vec::new();
    for f in test_files() {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let (medic, prom) = medic_and_promtool(&name);
        let (m, p) = (medic.status.code(), prom.status.code());
        let expected = if name.starts_with("pass_") { 0 } else { 1 };
        report.push(format!("{name}: medic {m:?}, promtool {p:?}"));
        let medic_out = String::from_utf8_lossy(&medic.stdout).to_string()
            + &String::from_utf8_lossy(&medic.stderr);
        assert_eq!(
            p,
            Some(expected),
            "promtool on {name} (is the test file right?):\n{}{}",
            String::from_utf8_lossy(&prom.stdout),
            String::from_utf8_lossy(&prom.stderr)
        );
        assert_eq!(
            m, p,
            "medic and promtool disagree on {name}; medic said:\n{medic_out}"
        );
        // The report has promtool's shape.
        let first = String::from_utf8_lossy(&medic.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        assert_eq!(first, format!("Unit Testing:  {name}"));
        if expected == 0 {
            assert!(medic_out.contains("  SUCCESS"), "{medic_out}");
        } else {
            assert!(
                String::from_utf8_lossy(&medic.stderr).contains("  FAILED:"),
                "{medic_out}"
            );
        }
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn medic_test_reports_match_promtool_byte_for_byte() {
    // Every report, failures included (alert and sample comparisons, rendered templates,
    // rule evaluation errors with Go durations), is what promtool prints.
    for f in test_files() {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let (medic, prom) = medic_and_promtool(&name);
        assert_eq!(
            String::from_utf8_lossy(&medic.stderr),
            String::from_utf8_lossy(&prom.stderr),
            "stderr of {name}"
        );
        assert_eq!(
            String::from_utf8_lossy(&medic.stdout),
            String::from_utf8_lossy(&prom.stdout),
            "stdout of {name}"
        );
    }
}

#[test]
fn run_filter_selects_test_groups() {
    // One file, one passing and one failing test group: the file fails as a whole, and
    // --run decides which group runs. (promtool 2.42 has no --run to compare with.)
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mixed.yaml");
    let rules = promtool_dir().join("rules.yaml");
    std::fs::write(
        &file,
        format!(
            r#"rule_files: [{rules:?}]
tests:
- name: passing
  interval: 1m
  input_series:
  - series: 'up{{job="api", instance="h1:80"}}'
    values: '1 1 1'
  promql_expr_test:
  - expr: up
    eval_time: 2m
    exp_samples:
    - labels: 'up{{job="api", instance="h1:80"}}'
      value: 1
- name: failing
  interval: 1m
  input_series:
  - series: 'up{{job="api", instance="h1:80"}}'
    values: '1 1 1'
  promql_expr_test:
  - expr: up
    eval_time: 2m
    exp_samples:
    - labels: 'up{{job="api", instance="h1:80"}}'
      value: 0
"#,
            rules = rules.display().to_string()
        ),
    )
    .unwrap();
    let medic = |args: &[&str]| {
        let out = run(Command::new(MEDIC).arg("test").args(args).arg(&file));
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let (code, text) = medic(&[]);
    // (the failing group is the one expecting 0)
    assert_eq!(code, Some(1), "both groups run, one fails:\n{text}");
    assert!(
        text.contains("exp: {__name__=\"up\", instance=\"h1:80\", job=\"api\"} 0E+00"),
        "{text}"
    );
    let (code, text) = medic(&["--run", "^passing$"]);
    assert_eq!(code, Some(0), "only the passing group runs:\n{text}");
    assert!(text.contains("  SUCCESS"), "{text}");
    let (code, text) = medic(&["--run", "^fail"]);
    assert_eq!(code, Some(1), "only the failing group runs:\n{text}");
    assert!(text.contains("0E+00"), "{text}");
    // Several --run regexes: any of them selects.
    let (code, _) = medic(&["--run", "^nothing$", "--run", "^passing$"]);
    assert_eq!(code, Some(0));
    // A filter matching nothing runs nothing, which passes.
    let (code, text) = medic(&["--run", "no such group"]);
    assert_eq!(code, Some(0), "{text}");
}

#[test]
fn check_accepts_good_rules_and_reports_every_error() {
    let out = run(Command::new(MEDIC)
        .arg("check")
        .arg(promtool_dir().join("rules.yaml")));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("SUCCESS: 6 rules found"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: sum(rate(x[5m])\n  - record: r\n    expr: up\n    annotations: {a: b}\n  - alert: B\n    expr: up\n    remediate:\n    - action: restart\n    - action: nuke\n  - alert: C\n    expr: up\n    annotations:\n      ok: fine\n      summary: '{{ nosuchfunc $value }}'\n",
    )
    .unwrap();
    let out = run(Command::new(MEDIC).arg("check").arg(&bad));
    // as promtool: `Checking` on stdout, `FAILED:` and the errors on stderr
    let stdout = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let b = bad.display();
    assert!(
        stdout.contains(&format!(
            "{b}:5:11: alert \"A\": could not parse expression"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{b}:6:13: recording rule \"r\": invalid field 'annotations'"
        )),
        "{stdout}"
    );
    // A step's error points at the step, a template's at its annotation.
    assert!(
        stdout.contains(&format!(
            "{b}:13:7: alert \"B\": remediate[1]: unknown action \"nuke\""
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{b}:18:16: alert \"C\": annotation \"summary\": template: 1:1: function \"nosuchfunc\" not defined"
        )),
        "{stdout}"
    );
    // promtool rejects the same file.
    let out = run(Command::new("promtool").args(["check", "rules"]).arg(&bad));
    assert_eq!(out.status.code(), Some(1));

    // Both accept the template functions' rule file, and Prometheus' `interval: 0s` (the
    // default interval) and negative `limit` (no limit).
    let ok = dir.path().join("ok.yaml");
    std::fs::write(
        &ok,
        "groups:\n- name: g\n  interval: 0s\n  limit: -1\n  rules:\n  - alert: A\n    expr: up == 0\n",
    )
    .unwrap();
    for f in [promtool_dir().join("templates.yaml"), ok] {
        let m = run(Command::new(MEDIC).arg("check").arg(&f));
        let p = run(Command::new("promtool").args(["check", "rules"]).arg(&f));
        let text = String::from_utf8_lossy(&m.stdout);
        assert_eq!(m.status.code(), Some(0), "{text}");
        assert_eq!(p.status.code(), Some(0), "promtool on {}", f.display());
        assert_eq!(text, String::from_utf8_lossy(&p.stdout));
    }

    // A YAML error's snippet names the file.
    let yaml = dir.path().join("yaml.yaml");
    std::fs::write(
        &yaml,
        "groups:\n- name: g\n  rules:\n  - alert: A\n    exprr: up\n",
    )
    .unwrap();
    let out = run(Command::new(MEDIC).arg("check").arg(&yaml));
    let stdout = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains(&format!(
            "{}:5:5: invalid YAML: unknown field `exprr`",
            yaml.display()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("5 |     exprr: up\n"), "{stdout}");
    assert!(!stdout.contains("<input>"), "{stdout}");
}

/// `medic check FILE...` and `promtool check rules ARGS FILE...` in tests/promtool.
fn check_both(args: &[&str], files: &[&Path]) -> (Output, Output) {
    let medic = run(Command::new(MEDIC)
        .arg("check")
        .args(args)
        .args(files)
        .current_dir(promtool_dir()));
    let prom = run(Command::new("promtool")
        .args(["check", "rules"])
        .args(args)
        .args(files)
        .current_dir(promtool_dir()));
    (medic, prom)
}

fn same_report(medic: &Output, prom: &Output, what: &str) {
    assert_eq!(
        medic.status.code(),
        prom.status.code(),
        "exit code of {what}"
    );
    assert_eq!(
        String::from_utf8_lossy(&medic.stdout),
        String::from_utf8_lossy(&prom.stdout),
        "stdout of {what}"
    );
    assert_eq!(
        String::from_utf8_lossy(&medic.stderr),
        String::from_utf8_lossy(&prom.stderr),
        "stderr of {what}"
    );
}

#[test]
fn check_reads_yaml_nulls_as_empty_as_promtool() {
    // A rule file that is `null`, and `labels:` / `annotations:` / `rules:` with no value.
    let (m, p) = check_both(
        &[],
        &[Path::new("rules_null.yaml"), Path::new("rules_nulls.yaml")],
    );
    same_report(&m, &p, "the null rule files");
    assert!(String::from_utf8_lossy(&m.stdout).contains("SUCCESS: 0 rules found"));
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("empty.yaml", ""),
        ("groups.yaml", "groups:\n"),
        ("comment.yaml", "# nothing yet\n"),
    ] {
        let f = dir.path().join(name);
        std::fs::write(&f, text).unwrap();
        let (m, p) = check_both(&[], &[&f]);
        same_report(&m, &p, name);
    }
}

#[test]
fn check_lints_duplicate_rules_as_promtool() {
    // promtool's default lint (duplicate-rules): the same report, and exit 3 with
    // --lint-fatal, 0 with --lint=none.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("dup.yaml");
    std::fs::write(
        &f,
        "groups:\n- name: a\n  rules:\n  - record: job:up\n    expr: up\n  - alert: A\n    expr: up == 0\n    labels: {severity: page}\n- name: b\n  rules:\n  - record: job:up\n    expr: sum(up)\n  - alert: A\n    expr: up == 1\n    labels: {severity: page}\n  - alert: A\n    expr: up == 2\n    labels: {severity: page}\n  - alert: A\n    expr: up == 1\n    labels: {severity: info}\n",
    )
    .unwrap();
    for args in [
        &[][..],
        &["--lint-fatal"],
        &["--lint=none"],
        &["--lint=all"],
    ] {
        let (m, p) = check_both(args, &[&f]);
        same_report(&m, &p, &format!("dup.yaml with {args:?}"));
    }
    let (m, _) = check_both(&[], &[&f]);
    let err = String::from_utf8_lossy(&m.stderr);
    assert!(
        err.contains("lint error 2 duplicate rule(s) found.\nMetric: A\nLabel(s):\n\tseverity: page\nMetric: job:up\nLabel(s):\nMight cause inconsistency while recording expressions\n"),
        "{err}"
    );
    assert_eq!(
        check_both(&["--lint-fatal"], &[&f]).0.status.code(),
        Some(3)
    );
}

#[test]
fn promql_parse_errors_say_where_and_what_as_promtool() {
    let exprs = [
        "sum(up",
        "up +",
        "up{a=}",
        "rate(up[5m]",
        "foo bar",
        "1 +",
        "up[5m",
        "sum by(a b) (x)",
        "\\\"abc",
        "x offset",
        ")",
        "up == on(",
        "sum(rate(x[5m])) by",
        // well-formed, but wrong: types, names
        "rate(up)",
        "sum(up) + nosuch(x)",
        "up and 1",
        "x + rate(up[5m]) + abs(up[5m])",
        "sum by (a) (up) by (b)",
        "\\\"a\\\" + 1",
        "topk(x, up)",
        "histogram_quantile(0.9)",
        "up offset 5x",
        "label_replace(up, 1, \\\"a\\\", \\\"b\\\", \\\"c\\\")",
        "up{__name__=\\\"a\\\"} == bool up",
    ];
    let mut text = String::from("groups:\n- name: a\n  rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        text.push_str(&format!("  - alert: A{i}\n    expr: \"{e}\"\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("pe.yaml");
    std::fs::write(&f, &text).unwrap();
    let (m, p) = check_both(&[], &[&f]);
    assert_eq!(m.status.code(), Some(1));
    assert_eq!(p.status.code(), Some(1));
    // The place in the file is written differently (promtool: `file: 5:11: group "a",
    // rule 1, "A0": ...`); the parse error itself must be the same.
    let parse_errors = |o: &Output| -> Vec<String> {
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .filter_map(|l| l.split_once("could not parse expression: "))
            .map(|(_, e)| e.to_string())
            .collect()
    };
    let (me, pe) = (parse_errors(&m), parse_errors(&p));
    assert_eq!(pe.len(), exprs.len(), "{pe:#?}");
    assert_eq!(me, pe);
}

/// Runs `medic test ARGS FILE` in `dir`: (exit code, stdout, stderr).
fn medic_test_in(dir: &Path, args: &[&str], file: &str) -> (Option<i32>, String, String) {
    let out = run(Command::new(MEDIC)
        .arg("test")
        .args(args)
        .arg(file)
        .current_dir(dir));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

// Prometheus 3's unit-test features, which Debian's promtool 2.42 does not have (so these
// are medic-only tests, checked against promtool 3's cmd/promtool/unittest.go).

#[test]
fn fuzzy_compare_and_start_timestamp_as_promtool_3() {
    let dir = tempfile::tempdir().unwrap();
    let test = |fuzzy: bool| {
        format!(
            "fuzzy_compare: {fuzzy}\ntests:\n- start_timestamp: 1700000000\n  input_series:\n  - series: up\n    values: '1 1'\n  promql_expr_test:\n  - expr: 0.1 + 0.2\n    eval_time: 1m\n    exp_samples: [{{value: 0.3}}]\n  - expr: time()\n    eval_time: 1m\n    exp_samples: [{{value: 1700000060}}]\n  - expr: timestamp(up)\n    eval_time: 1m\n    exp_samples: [{{labels: '{{}}', value: 1700000060}}]\n- name: rfc3339\n  start_timestamp: '2023-11-14T22:13:20Z'\n  promql_expr_test:\n  - expr: time()\n    eval_time: 2m\n    exp_samples: [{{value: 1700000120}}]\n"
        )
    };
    std::fs::write(dir.path().join("exact.yaml"), test(false)).unwrap();
    std::fs::write(dir.path().join("fuzzy.yaml"), test(true)).unwrap();
    // 0.1 + 0.2 is one unit in the last place above 0.3: equal only when fuzzy
    let (code, _, err) = medic_test_in(dir.path(), &[], "exact.yaml");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("expr: \"0.1 + 0.2\", time: 1m,"), "{err}");
    assert_eq!(
        err.matches("expr:").count(),
        1,
        "only the float differs: {err}"
    );
    let (code, _, err) = medic_test_in(dir.path(), &[], "fuzzy.yaml");
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn junit_debug_and_diff_reports() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("r.yaml"),
        "groups:\n- name: g\n  rules:\n  - alert: Down\n    expr: up == 0\n    labels: {severity: page}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("t.yaml"),
        "rule_files: [r.yaml]\ntests:\n- name: good\n  input_series:\n  - series: 'up{job=\"a\"}'\n    values: '0 0'\n  alert_rule_test:\n  - alertname: Down\n    eval_time: 1m\n    exp_alerts: [{exp_labels: {job: a, severity: page}}]\n- input_series:\n  - series: 'up{job=\"a\"}'\n    values: '0 0'\n  alert_rule_test:\n  - alertname: Down\n    eval_time: 1m\n    exp_alerts: [{exp_labels: {job: b, severity: page}}]\n",
    )
    .unwrap();
    let xml = dir.path().join("out.xml");
    let (code, _, err) = medic_test_in(
        dir.path(),
        &["--junit", xml.to_str().unwrap(), "--debug", "--diff"],
        "t.yaml",
    );
    assert_eq!(code, Some(1), "{err}");
    // JUnit: a suite per file, a case per test group (unnamed ones numbered), failures
    let x = std::fs::read_to_string(&xml).unwrap();
    assert!(
        x.starts_with("<testsuites><testsuite name=\"t.yaml\" tests=\"2\" failures=\"1\" errors=\"0\" skipped=\"0\" timestamp=\""),
        "{x}"
    );
    assert!(x.contains("<testcase name=\"good\"></testcase>"), "{x}");
    assert!(x.contains("<testcase name=\"unnamed#1\"><failure>    alertname: Down, time: 1m, &#xA;        diff: "), "{x}");
    assert!(x.ends_with("</testsuite></testsuites>"), "{x}");
    // --debug: start and end of each test group and a dump of every series
    assert!(err.contains("DEBUG: Starting test good\n"), "{err}");
    assert!(
        err.contains("DEBUG: Test unnamed#1 finished, took "),
        "{err}"
    );
    assert!(
        err.contains("DEBUG: Dump of all data (input_series and rules) at 1m1s:\n"),
        "{err}"
    );
    // (a range `[61s]` at 61 s is left-open in Prometheus 3: the sample at 0 is outside)
    assert!(
        err.contains("{__name__=\"up\", job=\"a\"} =>\n0 @[60000]\n"),
        "{err}"
    );
    assert!(
        err.contains("{__name__=\"ALERTS\", alertname=\"Down\", alertstate=\"firing\""),
        "{err}"
    );
    // --diff: promtool 3's jsondiff (console colors: changed values yellow, `old => new`)
    assert!(
        err.contains("        diff: [\n                {\n                    \"Annotations\": {},\n                    \"Labels\": {\n                        \"alertname\": \"Down\",\n                        \"job\": \u{1b}[0;33m\"b\" => \"a\"\u{1b}[0m,\n                        \"severity\": \"page\"\n                    }\n                }\n            ]\n"),
        "{err}"
    );
}

#[test]
fn ignore_unknown_fields_and_utf8_series() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("r.yaml"),
        "groups:\n- name: g\n  owner: team-a\n  rules:\n  - record: \"job.up\"\n    runbook:\n      url: x\n    expr: '{\"my.metric\"}'\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("t.yaml"),
        "rule_files: [r.yaml]\nmeta: {ticket: 1}\ntests:\n- input_series:\n  - series: '{\"my.metric\", \"a.b\"=\"c\"}'\n    values: '1 2'\n  promql_expr_test:\n  - expr: '{\"job.up\"}'\n    eval_time: 1m\n    exp_samples:\n    - labels: '{\"job.up\", \"a.b\"=\"c\"}'\n      value: 2\n",
    )
    .unwrap();
    let (code, _, err) = medic_test_in(dir.path(), &[], "t.yaml");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("t.yaml:2:1: unknown field `meta`"), "{err}");
    let (code, out, err) = medic_test_in(dir.path(), &["--ignore-unknown-fields"], "t.yaml");
    assert_eq!(code, Some(0), "{out}{err}");
    // and check: unknown fields are errors unless ignored
    let check = |args: &[&str]| {
        run(Command::new(MEDIC)
            .arg("check")
            .args(args)
            .arg("r.yaml")
            .current_dir(dir.path()))
        .status
        .code()
    };
    assert_eq!(check(&[]), Some(1));
    assert_eq!(check(&["--ignore-unknown-fields"]), Some(0));
    // `--enable-feature=promql-experimental-functions` is accepted (and changes nothing)
    let (code, _, err) = medic_test_in(
        dir.path(),
        &[
            "--ignore-unknown-fields",
            "--enable-feature=promql-experimental-functions",
        ],
        "t.yaml",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("WARNING"), "{err}");
}

#[test]
fn experimental_functions_always_on_in_check_and_test() {
    // Prometheus 3 needs --enable-feature=promql-experimental-functions for these; medic
    // has them on everywhere (check, test and the daemon share one loader), with or
    // without the flag.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("r.yaml"),
        "groups:\n- name: g\n  rules:\n  - record: one\n    expr: limitk(1, up)\n  - record: mad\n    expr: mad_over_time(up[5m])\n  - record: des\n    expr: double_exponential_smoothing(up[5m], 0.5, 0.5)\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("t.yaml"),
        "rule_files: [r.yaml]\ntests:\n- input_series:\n  - series: 'up{a=\"1\"}'\n    values: '1 1 1'\n  promql_expr_test:\n  - expr: count(one)\n    eval_time: 2m\n    exp_samples: [{value: 1}]\n  - expr: mad\n    eval_time: 2m\n    exp_samples: [{labels: 'mad{a=\"1\"}', value: 0}]\n",
    )
    .unwrap();
    for flags in [&[][..], &["--enable-feature=promql-experimental-functions"]] {
        let out = run(Command::new(MEDIC)
            .arg("check")
            .args(flags)
            .arg("r.yaml")
            .current_dir(dir.path()));
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{text}");
        assert!(text.contains("SUCCESS: 3 rules found"), "{text}");
        let (code, out, err) = medic_test_in(dir.path(), flags, "t.yaml");
        assert_eq!(code, Some(0), "{out}{err}");
    }
}

#[test]
fn readme_rule_and_test_examples_pass() {
    // The first YAML block of "Writing rules" is the rule file the YAML block of "Testing
    // rules" tests.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = |marker: &str| {
        let start = readme.find(marker).expect(marker);
        let rest = &readme[start..];
        let end = rest[marker.len()..]
            .find("<!-- section:")
            .map_or(rest.len(), |e| e + marker.len());
        rest[..end].to_string()
    };
    let first_yaml = |text: &str, containing: &str| {
        text.split("```yaml\n")
            .skip(1)
            .map(|b| b.split("```").next().unwrap().to_string())
            .find(|b| b.contains(containing))
            .expect(containing)
    };
    let rules = first_yaml(&section("<!-- section: rules -->"), "groups:");
    let test = first_yaml(&section("<!-- section: rules-test -->"), "rule_files:");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), rules).unwrap();
    std::fs::write(dir.path().join("test.yaml"), test).unwrap();
    let (code, out, err) = medic_test_in(dir.path(), &[], "test.yaml");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(err.is_empty(), "{err}");
}

#[test]
fn yaml_1_1_booleans_are_errors_in_medic_yaml() {
    // YAML 1.2 core booleans only, as Prometheus' yaml.v3: `n`, `off`, `faLse` in a bool
    // field are errors naming file:line:column and what was expected.
    let dir = tempfile::tempdir().unwrap();
    for word in ["n", "off", "faLse", "yes"] {
        let cfg = dir.path().join(format!("medic-{word}.yaml"));
        std::fs::write(
            &cfg,
            format!("global:\n  export_collected: {word}\ncollectors:\n  host:\n    type: host\n"),
        )
        .unwrap();
        let out = run(Command::new(MEDIC).args(["check", "-c"]).arg(&cfg));
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{word}: {text}");
        assert!(
            text.contains(&format!(
                "{}:2:21: invalid boolean \"{word}\": expected true or false",
                cfg.display()
            )),
            "{word}: {text}"
        );
    }
    for word in ["true", "True", "TRUE", "false", "False", "FALSE"] {
        let cfg = dir.path().join("medic-ok.yaml");
        std::fs::write(
            &cfg,
            format!("global:\n  export_collected: {word}\ncollectors:\n  host:\n    type: host\n"),
        )
        .unwrap();
        let out = run(Command::new(MEDIC).args(["check", "-c"]).arg(&cfg));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{word}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn prometheus_3_own_unit_test_files() {
    // tests/promtool/prometheus3: Prometheus' cmd/promtool/testdata, with the arguments and
    // exit codes of its cmd/promtool/unittest_test.go (features on: medic has `@` and
    // negative offsets always; unittest.yml is left out, it tests native histograms).
    let dir = promtool_dir().join("prometheus3");
    let cases: &[(&[&str], &str, i32)] = &[
        (&[], "long-period.yml", 0),
        (&[], "bad-input-series.yml", 1),
        (&[], "bad-promql.yml", 1),
        (&[], "bad-rules-syntax-test.yml", 1),
        (&[], "bad-rules-error-test.yml", 1),
        (&[], "failing.yml", 1),
        (&[], "at-modifier-test.yml", 0),
        (&[], "negative-offset-test.yml", 0),
        (&[], "no-test-group-interval.yml", 0),
        (&[], "start-time-test.yml", 0),
        (&[], "rules_run.yml", 1),
        (&["--run", "correct", "--run", "wrong"], "rules_run.yml", 1),
        (&["--run", "correct"], "rules_run.yml", 0),
        (&["--run", "wrong"], "rules_run.yml", 1),
        (&["--ignore-unknown-fields"], "rules_run_extrafields.yml", 0),
        (&[], "rules_run_extrafields.yml", 1),
        (&[], "rules_run_no_fuzzy.yml", 1),
        (&["--run", "correct"], "rules_run_fuzzy.yml", 0),
        (&["--run", "wrong"], "rules_run_fuzzy.yml", 1),
    ];
    for (args, file, want) in cases {
        let (code, out, err) = medic_test_in(&dir, args, file);
        assert_eq!(code, Some(*want), "medic test {args:?} {file}:\n{out}{err}");
    }
}

#[test]
fn check_agrees_with_promtool_on_every_rule_file_here() {
    // The rule files of the agreement tests and Prometheus' own (prometheus3/): the same
    // verdict, and the same report when they pass.
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in [promtool_dir(), promtool_dir().join("prometheus3")] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            let is_rules = (n.starts_with("rules") || n == "templates.yaml")
                || [
                    "at-modifier.yml",
                    "negative-offset.yml",
                    "bad-rules-error.yml",
                    "bad-rules-syntax.yml",
                ]
                .contains(&n.as_str());
            if is_rules && (n.ends_with(".yaml") || n.ends_with(".yml")) {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 12, "{files:?}");
    for f in &files {
        let (m, p) = check_both(&[], &[f.as_path()]);
        let what = f.display().to_string();
        assert_eq!(m.status.code(), p.status.code(), "exit code of {what}");
        assert_eq!(
            String::from_utf8_lossy(&m.stdout),
            String::from_utf8_lossy(&p.stdout),
            "stdout of {what}"
        );
    }
    // every unknown field reported, as promtool does (its wording differs)
    let (m, p) = check_both(
        &[],
        &[&promtool_dir().join("prometheus3/rules_extrafields.yml")],
    );
    let (me, pe) = (
        String::from_utf8_lossy(&m.stderr),
        String::from_utf8_lossy(&p.stderr),
    );
    for (line, field) in [(7, "namespace"), (21, "ownership")] {
        assert!(
            pe.contains(&format!("line {line}: field {field} not found")),
            "{pe}"
        );
        assert!(
            me.contains(&format!(":{line}:5: invalid YAML: unknown field `{field}`")),
            "{me}"
        );
    }
}

/// A small deterministic generator (xorshift) for the mutation test below.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// `seed` with a few random edits: bytes deleted, duplicated, or replaced by one of the
/// characters the grammars care about.
fn mutate(rng: &mut Rng, seed: &str) -> String {
    const PIECES: &[&str] = &[
        "(", ")", "{", "}", "[", "]", "\"", "'", "`", ",", ":", "-", " ", "\n", "{{", "}}", "|",
        "$", ".", "\\", "ü", "null", "---", "#", "5m", "by", "offset", "@", "=~", "~",
    ];
    let mut s: Vec<char> = seed.chars().collect();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(s.len() + 1);
        match rng.below(3) {
            0 if at < s.len() => {
                s.remove(at);
            }
            1 if at < s.len() => {
                let c = s[at];
                s.insert(at, c);
            }
            _ => {
                let p = PIECES[rng.below(PIECES.len())];
                for (k, c) in p.chars().enumerate() {
                    s.insert((at + k).min(s.len()), c);
                }
            }
        }
    }
    s.into_iter().collect()
}

#[test]
fn mutated_rule_and_test_files_never_crash_check_or_test() {
    // 300 mutations of the agreement files through `medic check` and `medic test`: each
    // ends with a verdict (0 or 1, or 3 for lint), never a crash or a hang.
    let dir = tempfile::tempdir().unwrap();
    let seeds: Vec<(String, String)> = [
        "rules.yaml",
        "templates.yaml",
        "pass_templates.yaml",
        "pass_yaml_nulls.yaml",
    ]
    .iter()
    .map(|n| {
        (
            n.to_string(),
            std::fs::read_to_string(promtool_dir().join(n)).unwrap(),
        )
    })
    .collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..300 {
        let (name, text) = &seeds[round % seeds.len()];
        let f = dir.path().join(format!("m{round}.yaml"));
        std::fs::write(&f, mutate(&mut rng, text)).unwrap();
        let cmd = if name.starts_with("pass_") {
            "test"
        } else {
            "check"
        };
        // test files name their rule files relative to themselves: keep them beside
        for r in [
            "rules.yaml",
            "templates.yaml",
            "rules_nulls.yaml",
            "rules_null.yaml",
        ] {
            let to = dir.path().join(r);
            if !to.exists() {
                std::fs::copy(promtool_dir().join(r), to).unwrap();
            }
        }
        let out = run(Command::new(MEDIC).arg(cmd).arg(&f));
        let code = out.status.code();
        assert!(
            matches!(code, Some(0 | 1 | 3)),
            "medic {cmd} on a mutation of {name} ended with {code:?}:\n{}\n{}",
            std::fs::read_to_string(&f).unwrap(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
