//! Test helper for the shipped rule packs: their unit tests (rules/tests/) through
//! `medic test` on the packs as shipped and `promtool test rules` on copies without medic's
//! `remediate:` entries (which Prometheus does not know).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")
}

/// Runs `cmd` to its end, at most two minutes.
pub fn run(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

pub fn said(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `text` without its `remediate:` blocks.
pub fn without_remediate(text: &str) -> String {
    let mut out = String::new();
    let mut skip_deeper_than: Option<usize> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(d) = skip_deeper_than {
            if line.trim().is_empty() || indent > d {
                continue;
            }
            skip_deeper_than = None;
        }
        if line.trim_start().starts_with("remediate:") {
            skip_deeper_than = Some(indent);
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `rules/tests/<test>` passes in `medic test` and in `promtool test rules`; `pack` is the
/// rule file it loads (`../<pack>`).
pub fn unit_tests_pass(test: &str, pack: &str) {
    let o = run(Command::new(env!("CARGO_BIN_EXE_medic"))
        .arg("test")
        .arg(format!("tests/{test}"))
        .current_dir(rules_dir()));
    assert!(o.status.success(), "medic test {test}:\n{}", said(&o));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    let text = std::fs::read_to_string(rules_dir().join(pack)).unwrap();
    std::fs::write(dir.path().join(pack), without_remediate(&text)).unwrap();
    std::fs::copy(
        rules_dir().join("tests").join(test),
        dir.path().join("tests").join(test),
    )
    .unwrap();
    let o = run(Command::new("promtool")
        .args(["test", "rules", test])
        .current_dir(dir.path().join("tests")));
    assert!(
        o.status.success(),
        "promtool test rules {test}:\n{}",
        said(&o)
    );
}

/// `medic check -c config/examples/<name>` passes (actuators built, every step's target and
/// params valid).
pub fn example_config_checks(name: &str, env: &[(&str, &str)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/examples")
        .join(name);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_medic"));
    cmd.arg("check").arg("-c").arg(&path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = run(&mut cmd);
    assert!(
        o.status.success(),
        "medic check -c {}:\n{}",
        path.display(),
        said(&o)
    );
    said(&o)
}
