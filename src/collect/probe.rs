//! HTTP(S) probes, like blackbox_exporter's `http` module: one request per round, reported as
//! `probe_success`, `probe_duration_seconds`, `probe_http_status_code` and, for https,
//! `probe_ssl_earliest_cert_expiry`, each labelled `probe` (the collector's name) and
//! `instance` (the URL).
//!
//! A failing target is a successful round with `probe_success 0`: the collector fails only
//! when it cannot run at all. So the request's own deadline is a little shorter than the
//! round's timeout, leaving time to report the failure.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::{BuildContext, BuildError, CollectError, Collector, Schedule};
use crate::common::time::days_from_civil;
use crate::common::tls::TlsConfig;
use crate::common::{Duration, Secret, redact_url};
use crate::store::{Labels, Sample};

/// Bodies beyond this are not read further (checks see the first 4 MiB).
const MAX_BODY_BYTES: usize = 4 << 20;

/// `type: http_probe`: requests one URL each round and checks the answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// The URL to request (`http://` or `https://`). Becomes the `instance` label.
    pub url: String,
    /// How often to probe; `global.collect_interval` when absent.
    #[serde(default)]
    pub interval: Option<Duration>,
    /// How long one probe may take; `global.collect_timeout` (at most the interval) when
    /// absent. The request gets this less a tenth (at most 500 ms), so that a target slower
    /// than this is reported as `probe_success 0`.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// HTTP method.
    #[serde(default = "default_method")]
    pub method: String,
    /// Request headers. A value is text, or a secret (`{file: PATH}` / `{env: VAR}`) for
    /// credentials such as `Authorization` (the secret holds the whole value, e.g. `Bearer x`).
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValue>,
    /// Request body (for POST probes).
    #[serde(default)]
    pub body: Option<String>,
    /// Status codes that count as success. Empty (the default): any 2xx.
    #[serde(default)]
    pub valid_status_codes: Vec<u16>,
    /// The response body must contain this text.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// The response body must be JSON with these fields equal to these values.
    #[serde(default)]
    pub json_checks: Vec<JsonCheck>,
    /// Follow redirects (up to 10), as blackbox_exporter does.
    #[serde(default = "default_true")]
    pub follow_redirects: bool,
    /// TLS settings for https targets.
    #[serde(default)]
    pub tls: TlsConfig,
}

fn default_method() -> String {
    "GET".to_string()
}
fn default_true() -> bool {
    true
}

/// One JSON field check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonCheck {
    /// Dotted path to the field; numbers index arrays: `status.ready`, `models.0.name`.
    pub path: String,
    /// The value the field must equal (numbers compare numerically: 1 equals 1.0).
    pub equals: serde_json::Value,
}

/// A header value: plain text, or a [`Secret`].
#[derive(Debug, Clone)]
pub enum HeaderValue {
    Text(String),
    Secret(Secret),
}

impl<'de> Deserialize<'de> for HeaderValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HeaderValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a header value: text, or a secret {file: PATH} / {env: VAR}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HeaderValue, E> {
                Ok(HeaderValue::Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HeaderValue, E> {
                Ok(HeaderValue::Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<HeaderValue, E> {
                Ok(HeaderValue::Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<HeaderValue, E> {
                Ok(HeaderValue::Text(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<HeaderValue, E> {
                Ok(HeaderValue::Text(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<HeaderValue, A::Error> {
                Secret::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(HeaderValue::Secret)
            }
        }
        d.deserialize_any(V)
    }
}

impl ProbeConfig {
    pub fn build(&self, ctx: &BuildContext<'_>) -> Result<Arc<dyn Collector>, BuildError> {
        let schedule = ctx.schedule(self.interval, self.timeout)?;
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| ctx.invalid(format!("url {:?}: {e}", redact_url(&self.url))))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ctx.invalid(format!(
                "url {:?}: expected an http:// or https:// URL",
                redact_url(&self.url)
            )));
        }
        let method = reqwest::Method::from_bytes(self.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| ctx.invalid(format!("method {:?} is not an HTTP method", self.method)))?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &self.headers {
            let hname = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ctx.invalid(format!("headers: {name:?} is not a header name")))?;
            let (text, sensitive) = match value {
                HeaderValue::Text(t) => (t.clone(), false),
                HeaderValue::Secret(s) => (
                    s.read()
                        .map_err(|e| ctx.invalid(format!("headers.{name}: {e}")))?
                        .expose()
                        .to_string(),
                    true,
                ),
            };
            let mut hv = reqwest::header::HeaderValue::from_str(&text)
                .map_err(|_| ctx.invalid(format!("headers.{name}: not a valid header value")))?;
            hv.set_sensitive(sensitive);
            headers.insert(hname, hv);
        }
        for code in &self.valid_status_codes {
            if !(100..=599).contains(code) {
                return Err(ctx.invalid(format!(
                    "valid_status_codes: {code} is not an HTTP status code"
                )));
            }
        }
        for c in &self.json_checks {
            if c.path.is_empty() {
                return Err(ctx.invalid("json_checks: path must not be empty"));
            }
        }
        // Leave time to report the failure before the scheduler's timeout cancels the round.
        let margin = (schedule.timeout / 10).min(std::time::Duration::from_millis(500));
        let request_timeout = schedule.timeout - margin;

        crate::common::tls::init_tls();
        let mut builder = reqwest::Client::builder()
            .timeout(request_timeout)
            .tls_info(true)
            .no_proxy()
            // A fresh connection per probe, as blackbox_exporter does, so each probe measures
            // (and checks) connect and TLS handshake too.
            .pool_max_idle_per_host(0)
            .redirect(if self.follow_redirects {
                reqwest::redirect::Policy::limited(10)
            } else {
                reqwest::redirect::Policy::none()
            })
            .user_agent(concat!("medic/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &self.tls.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| ctx.invalid(format!("tls.ca_file {}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ctx.invalid(format!("tls.ca_file {}: {e}", ca.display())))?;
            builder = builder.tls_certs_merge(certs);
        }
        if self.tls.insecure_skip_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let client = builder
            .build()
            .map_err(|e| ctx.invalid(format!("cannot build the HTTP client: {e}")))?;

        // the URL as it may be shown: a password in it stays out of labels and logs
        let shown = redact_url(&self.url);
        let base = Labels::new([("probe", ctx.name), ("instance", shown.as_str())]);
        Ok(Arc::new(HttpProbe {
            name: ctx.name.to_string(),
            schedule,
            client,
            method,
            url,
            shown,
            headers,
            body: self.body.clone(),
            valid_status_codes: self.valid_status_codes.clone(),
            body_contains: self.body_contains.clone(),
            json_checks: self.json_checks.clone(),
            labels: [
                "probe_success",
                "probe_duration_seconds",
                "probe_http_status_code",
                "probe_ssl_earliest_cert_expiry",
            ]
            .map(|n| base.with("__name__", n)),
            last_failure: Mutex::new(None),
        }))
    }
}

/// The running probe.
pub struct HttpProbe {
    name: String,
    schedule: Schedule,
    client: reqwest::Client,
    method: reqwest::Method,
    url: reqwest::Url,
    /// `url` with any password redacted: what logs and labels show.
    shown: String,
    headers: reqwest::header::HeaderMap,
    body: Option<String>,
    valid_status_codes: Vec<u16>,
    body_contains: Option<String>,
    json_checks: Vec<JsonCheck>,
    /// success, duration, status code, cert expiry.
    labels: [Labels; 4],
    /// The last failure reason, so a lasting failure is logged once, not every round.
    last_failure: Mutex<Option<String>>,
}

/// What one request found.
struct Outcome {
    status: u16,
    cert_expiry: Option<i64>,
    failure: Option<String>,
}

impl HttpProbe {
    async fn run(&self) -> Outcome {
        let mut req = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone());
        if let Some(b) = &self.body {
            req = req.body(b.clone());
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Outcome {
                    status: 0,
                    cert_expiry: None,
                    failure: Some(describe(&e)),
                };
            }
        };
        let status = resp.status().as_u16();
        let cert_expiry = resp
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|i| i.peer_certificate())
            .and_then(cert_not_after);
        let mut out = Outcome {
            status,
            cert_expiry,
            failure: None,
        };
        let status_ok = if self.valid_status_codes.is_empty() {
            (200..300).contains(&status)
        } else {
            self.valid_status_codes.contains(&status)
        };
        if !status_ok {
            out.failure = Some(format!("status {status} is not an expected status"));
            return out;
        }
        if self.body_contains.is_none() && self.json_checks.is_empty() {
            return out;
        }
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    body.extend_from_slice(&c);
                    if body.len() >= MAX_BODY_BYTES {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    out.failure = Some(format!("reading the body: {}", describe(&e)));
                    return out;
                }
            }
        }
        if let Some(want) = &self.body_contains
            && !String::from_utf8_lossy(&body).contains(want.as_str())
        {
            out.failure = Some(format!("body does not contain {want:?}"));
            return out;
        }
        if !self.json_checks.is_empty() {
            out.failure = check_json(&body, &self.json_checks).err();
        }
        out
    }
}

/// reqwest's error with its causes (the top level alone says little: "error sending request").
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_string();
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// Checks every JSON check against `body`; the first failure's reason.
pub fn check_json(body: &[u8], checks: &[JsonCheck]) -> Result<(), String> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    for c in checks {
        let mut v = &doc;
        for seg in c.path.split('.') {
            let next = match v {
                serde_json::Value::Object(m) => m.get(seg),
                serde_json::Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
                _ => None,
            };
            v = next.ok_or_else(|| format!("JSON field {} is missing", c.path))?;
        }
        let equal = match (v, &c.equals) {
            (serde_json::Value::Number(a), serde_json::Value::Number(b)) => {
                a.as_f64() == b.as_f64()
            }
            (a, b) => a == b,
        };
        if !equal {
            return Err(format!(
                "JSON field {} is {v}, expected {}",
                c.path, c.equals
            ));
        }
    }
    Ok(())
}

#[async_trait]
impl Collector for HttpProbe {
    fn name(&self) -> &str {
        &self.name
    }
    fn interval(&self) -> std::time::Duration {
        self.schedule.interval
    }
    fn timeout(&self) -> std::time::Duration {
        self.schedule.timeout
    }

    async fn collect(&self, now_ms: i64, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        let started = Instant::now();
        let o = self.run().await;
        let elapsed = started.elapsed().as_secs_f64();
        {
            let mut last = self.last_failure.lock().unwrap_or_else(|e| e.into_inner());
            if *last != o.failure {
                match &o.failure {
                    Some(f) => {
                        tracing::info!(probe = %self.name, url = %self.shown, reason = %f, "probe failing")
                    }
                    None => {
                        tracing::info!(probe = %self.name, url = %self.shown, "probe succeeding")
                    }
                }
                *last = o.failure.clone();
            }
        }
        let [success, duration, status, expiry] = &self.labels;
        out.push(Sample::new(
            success.clone(),
            now_ms,
            if o.failure.is_none() { 1.0 } else { 0.0 },
        ));
        out.push(Sample::new(duration.clone(), now_ms, elapsed));
        out.push(Sample::new(status.clone(), now_ms, o.status as f64));
        if let Some(t) = o.cert_expiry {
            out.push(Sample::new(expiry.clone(), now_ms, t as f64));
        }
        Ok(())
    }
}

/// One DER element: (tag, contents, rest).
fn der_next(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    let content = b.get(header..end)?;
    Some((tag, content, &b[end..]))
}

/// The `notAfter` of an X.509 certificate (DER), in Unix seconds.
pub fn cert_not_after(der: &[u8]) -> Option<i64> {
    const SEQUENCE: u8 = 0x30;
    let (tag, cert, _) = der_next(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = der_next(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    // TBSCertificate: [0] version (optional), serialNumber, signature, issuer, validity, ...
    let (mut tag, _, mut rest) = der_next(tbs)?;
    if tag == 0xa0 {
        (tag, _, rest) = der_next(rest)?; // serialNumber
    }
    if tag != 0x02 {
        return None;
    }
    let (_, _, rest) = der_next(rest)?; // signature algorithm
    let (_, _, rest) = der_next(rest)?; // issuer
    let (tag, validity, _) = der_next(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let (_, _, after) = der_next(validity)?; // notBefore
    let (tag, time, _) = der_next(after)?;
    parse_asn1_time(tag, std::str::from_utf8(time).ok()?)
}

/// UTCTime (`YYMMDDHHMMSSZ`, tag 0x17) or GeneralizedTime (`YYYYMMDDHHMMSSZ`, tag 0x18).
fn parse_asn1_time(tag: u8, s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i64 = s.get(0..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, s.get(2..)?)
        }
        0x18 => (s.get(0..4)?.parse().ok()?, s.get(4..)?),
        _ => return None,
    };
    if rest.len() != 10 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |i: usize| rest[i..i + 2].parse::<i64>().ok();
    let (mo, d, h, mi, se) = (n(0)?, n(2)?, n(4)?, n(6)?, n(8)?);
    Some(
        days_from_civil(year, u32::try_from(mo).ok()?, u32::try_from(d).ok()?) * 86400
            + h * 3600
            + mi * 60
            + se,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asn1_times() {
        assert_eq!(parse_asn1_time(0x17, "700101000000Z"), Some(0));
        assert_eq!(parse_asn1_time(0x17, "491231235959Z"), Some(2524607999));
        assert_eq!(parse_asn1_time(0x18, "20380119031408Z"), Some(2147483648));
        assert_eq!(parse_asn1_time(0x18, "2038011903140Z"), None);
        assert_eq!(days_from_civil(2000, 3, 1), 11017);
    }

    #[test]
    fn der_walker_rejects_garbage() {
        assert_eq!(cert_not_after(&[]), None);
        assert_eq!(cert_not_after(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(cert_not_after(&[0x30, 0x03, 0x30, 0x01, 0x02]), None);
    }

    #[test]
    fn json_checks_follow_dotted_paths() {
        let body = br#"{"status":{"ready":true,"n":1},"models":[{"name":"a"}]}"#;
        let c = |p: &str, v: serde_json::Value| JsonCheck {
            path: p.into(),
            equals: v,
        };
        assert!(check_json(body, &[c("status.ready", true.into())]).is_ok());
        assert!(check_json(body, &[c("status.n", serde_json::json!(1.0))]).is_ok());
        assert!(check_json(body, &[c("models.0.name", "a".into())]).is_ok());
        assert!(check_json(body, &[c("status.ready", false.into())]).is_err());
        assert!(check_json(body, &[c("status.missing", 1.into())]).is_err());
        assert!(check_json(b"nope", &[c("a", 1.into())]).is_err());
    }
}
