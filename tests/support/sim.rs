//! Test helper: `medic-sim` (the simulated inference service) as a real process on an
//! ephemeral loopback port, killed when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct Sim {
    child: Child,
    /// `host:port`.
    pub addr: String,
}

impl Sim {
    /// Starts medic-sim with `args` (e.g. `["--redis", url, "--batch-size", "32"]`).
    pub fn start(args: &[&str]) -> Sim {
        let mut child = Command::new(env!("CARGO_BIN_EXE_medic-sim"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn medic-sim");
        let stdout = child.stdout.take().expect("stdout piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("medic-sim's first line");
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("medic-sim said {line:?}: {e}"));
        let addr = v["listening"].as_str().expect("listening").to_string();
        Sim { child, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// PUT/POST a JSON body; the JSON answer (panics on an error status).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let c = client();
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = c
            .request(m, self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v
    }

    /// `GET /admin/config`.
    pub async fn knobs(&self) -> serde_json::Value {
        client()
            .get(self.url("/admin/config"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// An HTTP client for the tests (rustls needs its provider installed first).
pub fn client() -> reqwest::Client {
    medic::common::tls::init_tls();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("client")
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- end to end through `medic run` (the test crate also holds `mod daemon`) ----

/// Every action the daemon in `dir` journaled (`dir/state/journal.db`), newest first.
pub fn journal_actions(dir: &std::path::Path) -> Vec<medic::journal::ActionRecord> {
    let j = medic::journal::Journal::open(&dir.join("state/journal.db")).unwrap();
    j.actions_recent(100).unwrap()
}

/// A journaled action's structured outcome (the `result` column: status, message,
/// `before`, `after`, `data`), null when it has none.
pub fn result(r: &medic::journal::ActionRecord) -> serde_json::Value {
    r.result
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// The newest finished journal row of `action` (e.g. `set_batch_size`,
/// `revert:set_batch_size`) and its structured outcome, waiting for it.
pub async fn wait_journaled(
    dir: &std::path::Path,
    action: &str,
) -> (medic::journal::ActionRecord, serde_json::Value) {
    super::daemon::wait_for(&format!("{action} journaled"), || async {
        journal_actions(dir)
            .into_iter()
            .find(|r| r.action == action && r.finished_ms.is_some())
            .map(|r| {
                let v = result(&r);
                (r, v)
            })
    })
    .await
}

/// Waits for alert `name` to be firing (its JSON) or resolved (null) in `/api/v1/alerts`.
pub async fn wait_alert(
    medic: &super::daemon::Medic,
    name: &str,
    firing: bool,
) -> serde_json::Value {
    super::daemon::wait_for(
        &format!("{name} {}", if firing { "firing" } else { "resolved" }),
        || async {
            let (_, body) = medic.get("/api/v1/alerts").await;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            let a = v["data"]["alerts"]
                .as_array()?
                .iter()
                .find(|a| a["labels"]["alertname"] == name && a["state"] == "firing")
                .cloned();
            match (firing, a) {
                (true, Some(a)) => Some(a),
                (false, None) => Some(serde_json::Value::Null),
                _ => None,
            }
        },
    )
    .await
}

/// Waits for `medic_actions_total{rule,action,outcome}` to count at least one.
pub async fn wait_action_outcome(
    medic: &super::daemon::Medic,
    rule: &str,
    action: &str,
    outcome: &str,
) {
    super::daemon::wait_for(&format!("{action} {outcome} by {rule}"), || async {
        let v = medic
            .metric(&format!(
                r#"medic_actions_total{{rule="{rule}",action="{action}",outcome="{outcome}"}}"#
            ))
            .await?;
        (v >= 1.0).then_some(())
    })
    .await
}

/// Waits for an `ok` `action` of `rule`.
pub async fn wait_action(medic: &super::daemon::Medic, rule: &str, action: &str) {
    wait_action_outcome(medic, rule, action, "ok").await
}

/// The daemon's JSON log lines whose message contains `text`.
pub fn log_lines(medic: &super::daemon::Medic, text: &str) -> Vec<serde_json::Value> {
    medic
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(text))
        })
        .collect()
}
