//! Units run by the stand-in `systemctl` (tests/support/systemctl): a folder holding a copy
//! of it, unit files, and their state; every unit still running is stopped when dropped.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A stand-in service manager in `root`.
pub struct Units {
    pub root: PathBuf,
    started: std::sync::Mutex<Vec<String>>,
}

impl Units {
    pub fn new(root: &Path) -> Units {
        std::fs::create_dir_all(root.join("units")).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/systemctl");
        let dst = root.join("systemctl");
        std::fs::copy(&src, &dst).unwrap();
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).unwrap();
        Units {
            root: root.to_path_buf(),
            started: Default::default(),
        }
    }

    /// The stand-in's path, for `systemctl:` in a config.
    pub fn systemctl(&self) -> PathBuf {
        self.root.join("systemctl")
    }

    /// Writes a unit file (`ExecStart=...` and optional `WorkingDirectory=...`).
    pub fn define(&self, name: &str, body: &str) {
        std::fs::write(self.root.join("units").join(name), body).unwrap();
    }

    /// Runs the stand-in: (exit code, stdout).
    pub fn ctl(&self, args: &[&str]) -> (i32, String) {
        if matches!(args.first(), Some(&"start") | Some(&"restart")) {
            let mut s = self.started.lock().unwrap();
            s.extend(
                args[1..]
                    .iter()
                    .filter(|a| **a != "--")
                    .map(|a| a.to_string()),
            );
        }
        let o = Command::new(self.systemctl())
            .args(args)
            .output()
            .expect("run the stand-in systemctl");
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).trim().to_string(),
        )
    }

    pub fn state(&self, unit: &str) -> String {
        self.ctl(&["is-active", "--", unit]).1
    }

    pub fn main_pid(&self, unit: &str) -> i32 {
        self.ctl(&["show", "-p", "MainPID", "--value", "--", unit])
            .1
            .parse()
            .unwrap_or(0)
    }

    /// Every argv the stand-in was called with (medic's calls and the test's own).
    pub fn calls(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.root.join("state/calls.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Remembers a unit to stop at the end (one medic started).
    pub fn track(&self, unit: &str) {
        self.started.lock().unwrap().push(unit.to_string());
    }
}

impl Drop for Units {
    fn drop(&mut self) {
        let units: Vec<String> = std::mem::take(&mut *self.started.lock().unwrap());
        for u in units {
            let _ = Command::new(self.systemctl())
                .args(["stop", "--", &u])
                .output();
        }
    }
}

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Waits (at most 60 s) until `url` answers with `status`.
pub fn wait_http(url: &str, status: u16) {
    let started = Instant::now();
    loop {
        if http_status(url) == Some(status) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{url} never answered {status}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The status of a GET (None: no answer), with a short timeout; blocking.
pub fn http_status(url: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let addr: std::net::SocketAddr = host.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace().nth(1)?.parse().ok()
}

/// A tiny HTTP service for a unit: `/health` answers `status`.
pub const SERVER_PY: &str = r#"import http.server, sys
STATUS = int(sys.argv[2])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(STATUS if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"status\n")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;
