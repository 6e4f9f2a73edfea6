//! Rule engine end to end: `medic test` agrees with `promtool test rules` on every unit-test
//! file in tests/promtool/ (pass/fail and exit code), and `medic check` reports errors.

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

#[test]
fn medic_test_agrees_with_promtool() {
    let mut report = Vec::new();
    for f in test_files() {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let medic = run(Command::new(MEDIC)
            .arg("test")
            .arg(&name)
            .current_dir(promtool_dir()));
        let prom = run(Command::new("promtool")
            .args(["test", "rules"])
            .arg(&name)
            .current_dir(promtool_dir()));
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
fn medic_test_failure_output_matches_promtool_for_alerts() {
    // The alert comparison report is formatted as promtool formats it.
    let name = "fail_wrong_severity.yaml";
    let medic = run(Command::new(MEDIC)
        .arg("test")
        .arg(name)
        .current_dir(promtool_dir()));
    let prom = run(Command::new("promtool")
        .args(["test", "rules", name])
        .current_dir(promtool_dir()));
    assert_eq!(
        String::from_utf8_lossy(&medic.stderr),
        String::from_utf8_lossy(&prom.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&medic.stdout),
        String::from_utf8_lossy(&prom.stdout)
    );
}

#[test]
fn run_filter_selects_test_groups() {
    // "ratios and memory" passes alone; "keep firing" is filtered out entirely.
    let out = run(Command::new(MEDIC)
        .args([
            "test",
            "--run",
            "^ratios",
            "pass_keep_firing_templating.yaml",
        ])
        .current_dir(promtool_dir()));
    assert_eq!(out.status.code(), Some(0));
    // A filter matching nothing runs nothing, which passes.
    let out = run(Command::new(MEDIC)
        .args(["test", "--run", "no such group", "fail_promql_value.yaml"])
        .current_dir(promtool_dir()));
    assert_eq!(out.status.code(), Some(0));
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
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: sum(rate(x[5m])\n  - record: r\n    expr: up\n    annotations: {a: b}\n  - alert: B\n    expr: up\n    remediate:\n    - action: nuke\n",
    )
    .unwrap();
    let out = run(Command::new(MEDIC).arg("check").arg(&bad));
    let stdout = String::from_utf8_lossy(&out.stdout);
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
    assert!(stdout.contains("unknown action \"nuke\""), "{stdout}");
    // promtool rejects the same file.
    let out = run(Command::new("promtool").args(["check", "rules"]).arg(&bad));
    assert_eq!(out.status.code(), Some(1));
}
