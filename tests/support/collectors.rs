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
    for _ in 0..5 {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = password {
            cmd.args(["--requirepass", p]);
        }
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
