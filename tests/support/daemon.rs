//! Test helpers for running `medic run` as a real process: temp config and state dir,
//! ephemeral API port (read back from the JSON log), signals, polling with deadlines.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Overall deadline for anything a test waits for. Generous: the machine is shared.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A running `medic run`.
pub struct Medic {
    child: Child,
    /// `host:port` of the API.
    pub addr: String,
    logs: Arc<Mutex<Vec<String>>>,
    /// The folder holding the config (and whatever the test writes next to it).
    pub dir: PathBuf,
    pub config_path: PathBuf,
}

impl Medic {
    /// Writes `config` to `dir/medic.yaml` and starts medic on it.
    pub fn start(dir: &Path, config: &str) -> Medic {
        Self::start_with_env(dir, config, &[])
    }

    pub fn start_with_env(dir: &Path, config: &str, env: &[(&str, &str)]) -> Medic {
        Self::spawn(dir, config, env, false)
    }

    /// Starts medic in `dir` as `medic run -c medic.yaml`: paths relative to the working
    /// directory, as an operator types them.
    #[allow(dead_code)] // not every test binary uses every helper
    pub fn start_relative(dir: &Path, config: &str) -> Medic {
        Self::spawn(dir, config, &[], true)
    }

    fn spawn(dir: &Path, config: &str, env: &[(&str, &str)], relative: bool) -> Medic {
        let config_path = dir.join("medic.yaml");
        std::fs::write(&config_path, config).expect("write config");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_medic"));
        cmd.args(["run", "-c"]);
        if relative {
            cmd.current_dir(dir).arg("medic.yaml");
        } else {
            cmd.arg(&config_path);
        }
        cmd.args(["--log-format", "json", "--log-level", "info"])
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn medic");
        let stderr = child.stderr.take().expect("stderr piped");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if v["fields"]["message"] == "API listening" {
                    if let Some(a) = v["fields"]["address"].as_str() {
                        let _ = addr_tx.send(a.to_string());
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        let mut medic = Medic {
            child,
            addr: String::new(),
            logs,
            dir: dir.to_path_buf(),
            config_path,
        };
        let started = Instant::now();
        loop {
            match addr_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(a) => {
                    medic.addr = a;
                    return medic;
                }
                Err(_) => {
                    if let Ok(Some(status)) = medic.child.try_wait() {
                        panic!("medic exited early ({status}):\n{}", medic.logs());
                    }
                    assert!(
                        started.elapsed() < DEADLINE,
                        "medic did not start listening:\n{}",
                        medic.logs()
                    );
                }
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Everything medic logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                started.elapsed() < within,
                "medic did not exit:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// GET a path of the API: (status, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.url(path)).await
    }

    /// The value of one sample of `/metrics`, e.g. `medic_config_last_reload_successful`
    /// or `medic_rule_evaluations_total{rule_group="g"}`.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics").await;
        metric_value(&body, sample)
    }
}

impl Drop for Medic {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn client() -> reqwest::Client {
    medic::common::tls::init_tls();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

pub async fn http_get(url: &str) -> (u16, String) {
    let resp = client().get(url).send().await.expect("GET");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

/// Finds `sample` (name with its exact label text) in an exposition.
pub fn metric_value(body: &str, sample: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == sample).then(|| value.parse().ok()).flatten()
    })
}

/// Polls `f` until it returns `Some`, at most [`DEADLINE`]; panics naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An HTTP target on loopback whose `/health` answers 200 until told to fail (500).
pub struct Target {
    pub addr: std::net::SocketAddr,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl Target {
    pub async fn start() -> Target {
        use axum::{Router, http::StatusCode, routing::get};
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = failing.clone();
        let app = Router::new().route(
            "/health",
            get(move || {
                let flag = flag.clone();
                async move {
                    if flag.load(std::sync::atomic::Ordering::SeqCst) {
                        (StatusCode::INTERNAL_SERVER_ERROR, "down")
                    } else {
                        (StatusCode::OK, "up")
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Target { addr, failing }
    }

    pub fn set_failing(&self, failing: bool) {
        self.failing
            .store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        format!("http://{}/health", self.addr)
    }
}

/// Writes an executable script.
pub fn write_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Whether a process exists (kill(pid, 0)).
pub fn process_exists(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// A webhook receiver on loopback that keeps every JSON body POSTed to `/hook`.
pub struct WebhookSink {
    pub addr: std::net::SocketAddr,
    received: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl WebhookSink {
    pub async fn start() -> WebhookSink {
        use axum::{Json, Router, routing::post};
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        let app = Router::new().route(
            "/hook",
            post(move |Json(body): Json<serde_json::Value>| {
                let sink = sink.clone();
                async move {
                    sink.lock().unwrap().push(body);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        WebhookSink { addr, received }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Every payload received so far.
    pub fn all(&self) -> Vec<serde_json::Value> {
        self.received.lock().unwrap().clone()
    }

    /// How many payloads with this `status` named this `alertname`.
    pub fn count(&self, status: &str, alertname: &str) -> usize {
        self.all()
            .iter()
            .filter(|p| {
                p["status"] == status
                    && p["alerts"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x["labels"]["alertname"] == alertname))
            })
            .count()
    }

    /// The first payload received with this `status` for this `alertname`.
    pub fn find(&self, status: &str, alertname: &str) -> Option<serde_json::Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .find(|p| {
                p["status"] == status
                    && p["alerts"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x["labels"]["alertname"] == alertname))
            })
            .cloned()
    }
}
