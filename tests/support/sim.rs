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
