//! Test helpers for the core collectors: an HTTP target with canned routes and an HTTPS
//! target with a self-signed certificate made by the `openssl` CLI, both on loopback.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Starts the HTTP target: `/ok` (200 "all good"), `/status/503`, `/json`
/// (`{"status":{"ready":true},"version":"1.2"}`), `/sleep` (answers after 30 s).
pub async fn http_target() -> SocketAddr {
    let app = Router::new()
        .route("/ok", get(|| async { "all good" }))
        .route(
            "/status/503",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "overloaded") }),
        )
        .route(
            "/json",
            get(|| async {
                (
                    [("content-type", "application/json")],
                    r#"{"status":{"ready":true},"version":"1.2"}"#,
                )
            }),
        )
        .route(
            "/sleep",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .route(
            "/auth",
            get(|h: axum::http::HeaderMap| async move {
                match h.get("authorization").and_then(|v| v.to_str().ok()) {
                    Some("Bearer t0ken") => (StatusCode::OK, "welcome"),
                    _ => (StatusCode::UNAUTHORIZED, "who are you"),
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// A loopback port nothing listens on.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A test CA and a server certificate it signed for 127.0.0.1 / localhost, valid for `days`,
/// made by the openssl CLI.
pub struct SelfSigned {
    /// The CA certificate (what a client must trust).
    pub ca_pem: PathBuf,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
    /// The server certificate's notAfter as Unix seconds, as `openssl x509 -enddate` says.
    pub not_after: i64,
}

fn openssl(args: &[&str]) -> String {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn self_signed(dir: &Path, days: u32) -> SelfSigned {
    let p = |n: &str| dir.join(n);
    let s = |p: &Path| p.to_str().expect("UTF-8 temp path").to_string();
    let (ca_pem, cert_pem, key_pem) = (p("ca.pem"), p("cert.pem"), p("key.pem"));
    let (ca, ca_key, csr, ext) = (
        s(&ca_pem),
        s(&p("ca.key")),
        s(&p("leaf.csr")),
        s(&p("leaf.ext")),
    );
    let (cert, key) = (s(&cert_pem), s(&key_pem));
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let days = days.to_string();
    let run = |line: String, extra: &[&str]| {
        let mut args: Vec<&str> = line.split_whitespace().collect();
        args.extend_from_slice(extra);
        openssl(&args)
    };
    run(
        format!("req -x509 {ec} -days 3650 -keyout {ca_key} -out {ca}"),
        &["-subj", "/CN=medic test CA"],
    );
    run(
        format!("req {ec} -keyout {key} -out {csr}"),
        &["-subj", "/CN=localhost"],
    );
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n",
    )
    .unwrap();
    run(
        format!(
            "x509 -req -in {csr} -CA {ca} -CAkey {ca_key} -CAcreateserial -days {days} -extfile {ext} -out {cert}"
        ),
        &[],
    );
    // notAfter=Dec 23 18:23:04 2026 GMT
    let text = run(format!("x509 -noout -enddate -in {cert}"), &[]);
    let not_after = parse_openssl_date(text.trim().trim_start_matches("notAfter="));
    SelfSigned {
        ca_pem,
        cert_pem,
        key_pem,
        not_after,
    }
}

/// Parses openssl's `Mon DD HH:MM:SS YYYY GMT`.
fn parse_openssl_date(s: &str) -> i64 {
    let f: Vec<&str> = s.split_whitespace().collect();
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = months.iter().position(|x| *x == f[0]).unwrap() as i64 + 1;
    let d: i64 = f[1].parse().unwrap();
    let hms: Vec<i64> = f[2].split(':').map(|x| x.parse().unwrap()).collect();
    let y: i64 = f[3].parse().unwrap();
    // days from civil, independently of the code under test: count days year by year
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mut days = 0;
    for yy in 1970..y {
        days += if leap(yy) { 366 } else { 365 };
    }
    let mdays = [
        31,
        if leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    days += mdays[..(m - 1) as usize].iter().sum::<i64>() + d - 1;
    days * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2]
}

/// An HTTPS server with `cert`: every request gets `200 secure`. Returns its address.
pub async fn https_target(cert: &SelfSigned) -> SocketAddr {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    medic::common::tls::init_tls();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert.cert_pem)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(&cert.key_pem).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                // Read the request head, answer, close.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nsecure",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}
