//! End-to-end tests: `medic run` as a real process with a temp config and state dir, an
//! ephemeral API port, real HTTP targets and sinks on loopback, real signals.

#[path = "support/daemon.rs"]
mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::{DEADLINE, Medic, client, metric_value, wait_for};

fn base_config(dir: &std::path::Path, extra: &str) -> String {
    format!(
        "global:\n  listen_address: 127.0.0.1:0\n  state_dir: {}\n  evaluation_interval: 300ms\n  collect_interval: 300ms\n{extra}",
        dir.join("state").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reload_is_rejected_while_medic_keeps_running_and_sigterm_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let token_path = dir.path().join("token");
    std::fs::write(&token_path, "s3cret-token\n").unwrap();
    let good = base_config(
        dir.path(),
        &format!("  api_token: {{file: {}}}\n", token_path.display()),
    );
    let mut medic = Medic::start(dir.path(), &good);
    assert_eq!(medic.get("/healthz").await, (200, "ok\n".to_string()));
    assert_eq!(
        medic.metric("medic_config_last_reload_successful").await,
        Some(1.0)
    );

    // State-changing calls need the bearer token.
    let http = client();
    let reload = medic.url("/-/reload");
    let r = http.post(&reload).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http
        .post(&reload)
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http
        .post(&reload)
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());

    // A broken config (unknown key) on SIGHUP: rejected, old config keeps running.
    std::fs::write(&medic.config_path, format!("{good}bogus_key: 1\n")).unwrap();
    medic.signal(libc::SIGHUP);
    wait_for("the reload to be rejected", || async {
        (medic.metric("medic_config_last_reload_successful").await == Some(0.0)).then_some(())
    })
    .await;
    assert!(medic.is_running());
    assert_eq!(medic.get("/healthz").await.0, 200);
    // The rejected config is also refused through the API, with the reason.
    let r = http
        .post(&reload)
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 500);
    assert!(r.text().await.unwrap().contains("bogus_key"));

    // Fixing the file is noticed without a signal (inotify) and reloads.
    std::fs::write(&medic.config_path, &good).unwrap();
    wait_for("the fixed config to be reloaded", || async {
        (medic.metric("medic_config_last_reload_successful").await == Some(1.0)).then_some(())
    })
    .await;

    medic.signal(libc::SIGTERM);
    let status = medic.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", medic.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changing_endpoints_are_disabled_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let medic = Medic::start(dir.path(), &base_config(dir.path(), ""));
    let r = client()
        .post(medic.url("/-/reload"))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let (status, body) = medic.get("/api/v1/alerts").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success");
    assert!(v["data"]["alerts"].is_array());
    let (_, body) = medic.get("/api/v1/rules").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["data"]["groups"].is_array());
}

/// Receives notify datagrams until one satisfies `want`.
async fn recv_until(
    sock: &tokio::net::UnixDatagram,
    seen: &mut Vec<String>,
    want: &dyn Fn(&str) -> bool,
) -> String {
    let mut buf = vec![0u8; 4096];
    let found = tokio::time::timeout(DEADLINE, async {
        loop {
            let n = sock.recv(&mut buf).await.unwrap();
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            seen.push(msg.clone());
            if want(&msg) {
                return msg;
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("notify message not received; got {seen:?}"))
}

/// Pipes a `/metrics` body through `promtool check metrics`.
fn promtool_check(body: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (package prometheus) must be installed: see scripts/test.sh");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_exposition_passes_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let medic = Medic::start(
        dir.path(),
        &base_config(dir.path(), "  export_collected: true\n"),
    );
    let (status, body) = medic.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("medic_build_info{version="), "{body}");
    let (ok, problems) = promtool_check(&body);
    assert!(
        ok,
        "promtool check metrics failed:\n{problems}\n---\n{body}"
    );

    // Prometheus asks for OpenMetrics and gets it, terminated by # EOF.
    let r = client()
        .get(medic.url("/metrics"))
        .header("accept", "application/openmetrics-text;version=1.0.0")
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(r.text().await.unwrap().ends_with("# EOF\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speaks_the_systemd_notify_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = tokio::net::UnixDatagram::bind(&sock_path).unwrap();
    let medic = Medic::start_with_env(
        dir.path(),
        &base_config(dir.path(), ""),
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            // 400 ms: medic must ping every 200 ms
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let mut seen: Vec<String> = Vec::new();
    let ready = recv_until(&sock, &mut seen, &|m| m.contains("READY=1")).await;
    assert!(ready.contains("STATUS=running"), "{ready}");
    recv_until(&sock, &mut seen, &|m| m.contains("WATCHDOG=1")).await;

    medic.signal(libc::SIGHUP);
    let reloading = recv_until(&sock, &mut seen, &|m| m.contains("RELOADING=1")).await;
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    recv_until(&sock, &mut seen, &|m| m.contains("READY=1")).await;

    medic.signal(libc::SIGTERM);
    recv_until(&sock, &mut seen, &|m| m.contains("STOPPING=1")).await;
}

#[test]
fn systemd_unit_verifies_and_exposure_is_at_most_2() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("systemd/medic.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/medic run -c /etc/medic/medic.yaml"));
    // verify wants the binary to exist: check a copy that points at the one just built.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("medic.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/medic", env!("CARGO_BIN_EXE_medic")),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (package systemd) must be installed: see scripts/test.sh");
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );

    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&copy)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&security.stdout);
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for medic.service:"))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{text}"));
    println!("systemd-analyze security exposure: {exposure}");
    assert!(exposure <= 2.0, "exposure {exposure} > 2.0:\n{text}");
    // Collectors need all of /proc.
    assert!(!unit.lines().any(|l| l.starts_with("ProcSubset=")));
}

#[test]
fn metric_value_parser() {
    let body = "# TYPE a gauge\na 1\nb{x=\"y\"} 2.5\n";
    assert_eq!(metric_value(body, "a"), Some(1.0));
    assert_eq!(metric_value(body, "b{x=\"y\"}"), Some(2.5));
    assert_eq!(metric_value(body, "c"), None);
}
