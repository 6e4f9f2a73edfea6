//! Test helpers for the collectors: real redis-server and memcached on ephemeral loopback
//! ports, killed when dropped.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A server process on a loopback port; killed on drop.
pub struct Server {
    pub child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Server {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills the server now (to test a target going down).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_accepting(child: &mut Child, port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before accepting connections: {status}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not accept connections on {addr} within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `redis-server` on a free port, optionally with a password. Retries on a port race.
pub fn redis(password: Option<&str>) -> Server {
    let args: Vec<&str> = match password {
        Some(p) => vec!["--requirepass", p],
        None => vec![],
    };
    redis_server(false, &args)
}

/// Starts `redis-server` with TLS only (no plain port), serving `cert_pem`/`key_pem`.
pub fn redis_tls(
    cert_pem: &std::path::Path,
    key_pem: &std::path::Path,
    ca_pem: &std::path::Path,
) -> Server {
    let s = |p: &std::path::Path| p.to_str().expect("UTF-8 temp path").to_string();
    let (cert, key, ca) = (s(cert_pem), s(key_pem), s(ca_pem));
    redis_server(
        true,
        &[
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
        ],
    )
}

/// `redis-server` on a free port (its TLS port when `tls`) with `extra` arguments.
fn redis_server(tls: bool, extra: &[&str]) -> Server {
    for _ in 0..5 {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("redis-server");
        if tls {
            cmd.args(["--port", "0", "--tls-port", &port.to_string()]);
        } else {
            cmd.args(["--port", &port.to_string()]);
        }
        cmd.args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .expect("redis-server is installed (scripts/test.sh)");
        std::thread::sleep(Duration::from_millis(20));
        if let Ok(Some(_)) = child.try_wait() {
            continue; // lost the port to someone else; try another
        }
        wait_accepting(&mut child, port, "redis-server");
        return Server {
            child,
            port,
            _dir: dir,
        };
    }
    panic!("could not start redis-server");
}

/// Starts `memcached` on a free port with `memory_mb` of cache.
pub fn memcached(memory_mb: u32) -> Server {
    for _ in 0..5 {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("memcached")
            .args(["-p", &port.to_string(), "-l", "127.0.0.1", "-U", "0"])
            .args(["-m", &memory_mb.to_string()])
            // memcached refuses to run as root without naming a user; ignored otherwise
            .args(["-u", "root"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("memcached is installed (scripts/test.sh)");
        std::thread::sleep(Duration::from_millis(20));
        if let Ok(Some(_)) = child.try_wait() {
            continue;
        }
        wait_accepting(&mut child, port, "memcached");
        return Server {
            child,
            port,
            _dir: dir,
        };
    }
    panic!("could not start memcached");
}

/// A minimal memcached text-protocol client for putting load in (not the code under test).
pub struct Memc {
    reader: std::io::BufReader<TcpStream>,
    writer: TcpStream,
}

impl Memc {
    pub fn connect(port: u16) -> Memc {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Memc {
            reader: std::io::BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    fn line(&mut self) -> String {
        use std::io::BufRead;
        let mut l = String::new();
        self.reader.read_line(&mut l).unwrap();
        l.trim_end().to_string()
    }

    fn send(&mut self, s: &str) {
        use std::io::Write;
        self.writer.write_all(s.as_bytes()).unwrap();
    }

    pub fn set(&mut self, key: &str, value: &str) {
        self.send(&format!("set {key} 0 0 {}\r\n{value}\r\n", value.len()));
        assert_eq!(self.line(), "STORED");
    }

    /// True on a hit.
    pub fn get(&mut self, key: &str) -> bool {
        self.send(&format!("get {key}\r\n"));
        let mut hit = false;
        loop {
            let l = self.line();
            if l == "END" {
                return hit;
            }
            if l.starts_with("VALUE ") {
                hit = true;
                let _data = self.line();
            }
        }
    }

    /// The CAS unique of `key` (which must exist).
    pub fn gets(&mut self, key: &str) -> u64 {
        self.send(&format!("gets {key}\r\n"));
        let head = self.line();
        let unique = head
            .split(' ')
            .nth(4)
            .and_then(|u| u.parse().ok())
            .unwrap_or_else(|| panic!("gets {key}: {head}"));
        let _data = self.line();
        assert_eq!(self.line(), "END");
        unique
    }

    /// `cas`: the server's answer (STORED, EXISTS or NOT_FOUND).
    pub fn cas(&mut self, key: &str, value: &str, unique: u64) -> String {
        self.send(&format!(
            "cas {key} 0 0 {} {unique}\r\n{value}\r\n",
            value.len()
        ));
        self.line()
    }

    pub fn delete(&mut self, key: &str) -> bool {
        self.send(&format!("delete {key}\r\n"));
        self.line() == "DELETED"
    }

    /// The server's own `stats`, as a map.
    pub fn stats(&mut self) -> std::collections::HashMap<String, String> {
        self.send("stats\r\n");
        let mut m = std::collections::HashMap::new();
        loop {
            let l = self.line();
            if l == "END" {
                return m;
            }
            let mut p = l.splitn(3, ' ');
            if let (Some("STAT"), Some(k), Some(v)) = (p.next(), p.next(), p.next()) {
                m.insert(k.to_string(), v.to_string());
            }
        }
    }
}
