//! The `knob` actuator: one numeric setting behind an HTTP admin API (a batch size, a worker
//! or replica count). `set_batch_size`, `scale_pool` and `set_value` are the same mechanism:
//! read the value (GET + a JSON pointer), compute the new one ([`Adjust`]: `factor`, `step` or
//! `value`, clamped to the bounds), write it (method, URL, a JSON body in which the string
//! `"$value"` stands for the number), read it back to confirm. Reversible: a revert writes
//! the old value back only while the value is still the one medic set.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde::Deserialize;
use tokio::time::Instant;

use super::adjust::{Adjust, Bounds, Plan, Setting, show};
use super::bounded::{Failure, bounded};
use super::http::{build_headers, http_client, http_url, read_body_bounded};
use crate::common::{Duration, Secret};
use crate::remedy::actuator::{ActionOutcome, ActionRequest, ActionStatus, Actuator, RemedyError};

/// The action names a knob performs (all the same mechanism).
pub const ACTIONS: [&str; 3] = ["set_batch_size", "scale_pool", "set_value"];

/// The placeholder for the new value in `write.url` and (as a whole string) in `write.body`.
const PLACEHOLDER: &str = "$value";

/// Most bytes of an admin API answer read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

fn default_method() -> String {
    "PUT".into()
}

fn default_true() -> bool {
    true
}

/// Where the current value is read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnobRead {
    /// `GET` this URL (`http://` or `https://`).
    pub url: String,
    /// RFC 6901 JSON pointer to the number in the answer, e.g. `/batch_size`,
    /// `/spec/replicas`, `/0/minWorkers`. Its last segment names the value in the outcome.
    pub pointer: String,
}

/// How the new value is written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnobWrite {
    /// The URL; `$value` in it is replaced by the new value (a number), e.g. TorchServe's
    /// `.../models/resnet?min_worker=$value`. Default: `read.url`.
    #[serde(default)]
    pub url: Option<String>,
    /// The HTTP method. Default `PUT`.
    #[serde(default = "default_method")]
    pub method: String,
    /// The JSON body, written as YAML: every string exactly `"$value"` in it becomes the new
    /// value as a JSON number; nothing else is templated. Absent: no body.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    /// The body's `Content-Type`. Default `application/json` (Kubernetes' merge patch wants
    /// `application/merge-patch+json`).
    #[serde(default)]
    pub content_type: Option<String>,
}

/// `type: knob`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnobConfig {
    /// Where the value is read.
    pub read: KnobRead,
    /// How it is written.
    pub write: KnobWrite,
    /// The least value medic sets.
    pub min: f64,
    /// The greatest value medic sets.
    pub max: f64,
    /// Round to whole numbers (away from the current value, so a step always moves).
    /// Default true.
    #[serde(default = "default_true")]
    pub integer: bool,
    /// Read the value back after writing and fail unless it is the new one. Default true.
    #[serde(default = "default_true")]
    pub confirm: bool,
    /// Request headers with fixed values.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request headers whose values are secrets (`{file: PATH}`, `{env: VAR}`).
    #[serde(default)]
    pub secret_headers: BTreeMap<String, Secret>,
    /// Sent as `Authorization: Bearer <token>` on every request (`{file: PATH}`, e.g. a
    /// Kubernetes service account token).
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    /// TLS: a PEM file of CAs to trust besides the system's (e.g. the cluster CA),
    /// relative to the config file's folder.
    #[serde(default)]
    pub tls: crate::common::tls::TlsConfig,
    /// How long one action (read, write, read back) may take. A step's `timeout`
    /// overrides it.
    #[serde(default)]
    pub timeout: Option<Duration>,
}

impl KnobConfig {
    fn bounds(&self) -> Bounds {
        Bounds {
            min: self.min,
            max: self.max,
        }
    }

    /// Checks a step's params at config load (numbers that are templates are checked when
    /// the step runs).
    pub fn check_params(&self, params: &serde_json::Value) -> Result<(), String> {
        let a = Adjust::from_params(params, &[])?;
        a.bounds(self.bounds()).map(|_| ())
    }
}

/// A running `knob` actuator.
pub struct KnobActuator {
    read_url: reqwest::Url,
    pointer: String,
    /// The value's name in `before`/`after` (the pointer's last segment).
    key: String,
    write_url: String,
    method: reqwest::Method,
    body: Option<serde_json::Value>,
    content_type: String,
    bounds: Bounds,
    integer: bool,
    confirm: bool,
    headers: HeaderMap,
    timeout: Option<StdDuration>,
    client: reqwest::Client,
}

/// A failed request: `timeout` when it ran out of time.
fn http_failure(what: &str, e: reqwest::Error) -> Failure {
    if e.is_timeout() {
        Failure::timeout(format!("{what}: no answer in time"))
    } else {
        format!("{what}: {e}").into()
    }
}

/// Replaces every string exactly `"$value"` in `body` by `value` (a JSON number).
fn fill(body: &serde_json::Value, value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match body {
        Value::String(s) if s == PLACEHOLDER => value.clone(),
        Value::Array(a) => Value::Array(a.iter().map(|x| fill(x, value)).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, x)| (k.clone(), fill(x, value))).collect())
        }
        other => other.clone(),
    }
}

impl KnobActuator {
    pub fn build(name: &str, cfg: &KnobConfig) -> Result<Self, RemedyError> {
        let invalid = |reason: String| RemedyError::Config {
            name: name.into(),
            reason,
        };
        cfg.bounds().validate().map_err(invalid)?;
        if cfg.integer && (cfg.min.fract() != 0.0 || cfg.max.fract() != 0.0) {
            return Err(invalid(
                "min and max must be whole numbers (or set `integer: false`)".into(),
            ));
        }
        let read_url = http_url(name, &cfg.read.url)?;
        if !cfg.read.pointer.is_empty() && !cfg.read.pointer.starts_with('/') {
            return Err(invalid(format!(
                "read.pointer {:?}: a JSON pointer starts with '/' (e.g. /batch_size)",
                cfg.read.pointer
            )));
        }
        let key = cfg
            .read
            .pointer
            .rsplit('/')
            .next()
            .filter(|k| !k.is_empty())
            .unwrap_or("value")
            .replace("~1", "/")
            .replace("~0", "~");
        let write_url = cfg
            .write
            .url
            .clone()
            .unwrap_or_else(|| cfg.read.url.clone());
        // the URL must parse with a number in place of the placeholder
        http_url(name, &write_url.replace(PLACEHOLDER, "1"))?;
        let method = reqwest::Method::from_bytes(cfg.write.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| RemedyError::InvalidMethod {
                name: name.into(),
                method: cfg.write.method.clone(),
            })?;
        if cfg.write.body.is_none() && !write_url.contains(PLACEHOLDER) {
            return Err(invalid(
                "write: neither `url` nor `body` holds \"$value\", so the new value would go nowhere"
                    .into(),
            ));
        }
        let headers = build_headers(
            name,
            &cfg.headers,
            &cfg.secret_headers,
            cfg.bearer_token.as_ref(),
        )?;
        let client = http_client(name, &cfg.tls)?;
        Ok(KnobActuator {
            read_url,
            pointer: cfg.read.pointer.clone(),
            key,
            write_url,
            method,
            body: cfg.write.body.clone(),
            content_type: cfg
                .write
                .content_type
                .clone()
                .unwrap_or_else(|| "application/json".into()),
            bounds: cfg.bounds(),
            integer: cfg.integer,
            confirm: cfg.confirm,
            headers,
            timeout: cfg.timeout.map(|d| d.std()),
            client,
        })
    }

    fn json_number(&self, v: f64) -> serde_json::Value {
        self.setting().number(v)
    }

    /// GETs the value.
    async fn read(&self, deadline: Instant) -> Result<f64, Failure> {
        let left = deadline.saturating_duration_since(Instant::now());
        let resp = self
            .client
            .get(self.read_url.clone())
            .headers(self.headers.clone())
            .timeout(left)
            .send()
            .await
            .map_err(|e| http_failure(&format!("GET {}", self.read_url), e))?;
        let status = resp.status();
        let body = read_body_bounded(resp, MAX_RESPONSE_BYTES).await;
        if !status.is_success() {
            return Err(Failure::from(format!(
                "GET {}: HTTP {}: {}",
                self.read_url,
                status.as_u16(),
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )));
        }
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| format!("GET {}: the answer is not JSON: {e}", self.read_url))?;
        let at = v.pointer(&self.pointer).ok_or_else(|| {
            format!(
                "GET {}: nothing at JSON pointer {:?}",
                self.read_url, self.pointer
            )
        })?;
        match at {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| {
            Failure::from(format!(
                "GET {}: {:?} is {at}, not a number",
                self.read_url, self.pointer
            ))
        })
    }

    /// Writes `v` (method, URL, body).
    async fn write(&self, v: f64, deadline: Instant) -> Result<(), Failure> {
        let num = self.json_number(v);
        let url = self.write_url.replace(PLACEHOLDER, &num.to_string());
        let url = reqwest::Url::parse(&url).map_err(|e| format!("write url: {e}"))?;
        let left = deadline.saturating_duration_since(Instant::now());
        let mut rb = self
            .client
            .request(self.method.clone(), url.clone())
            .headers(self.headers.clone())
            .timeout(left);
        if let Some(b) = &self.body {
            let body = serde_json::to_vec(&fill(b, &num)).map_err(|e| e.to_string())?;
            if !self.headers.contains_key(CONTENT_TYPE) {
                rb = rb.header(CONTENT_TYPE, self.content_type.as_str());
            }
            rb = rb.body(body);
        }
        let resp = rb
            .send()
            .await
            .map_err(|e| http_failure(&format!("{} {url}", self.method), e))?;
        let status = resp.status();
        if !status.is_success() {
            let body = read_body_bounded(resp, MAX_RESPONSE_BYTES).await;
            return Err(Failure::from(format!(
                "{} {url}: HTTP {}: {}",
                self.method,
                status.as_u16(),
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )));
        }
        Ok(())
    }

    /// Writes `to` and, with `confirm`, reads it back.
    async fn set(&self, to: f64, deadline: Instant) -> Result<(), Failure> {
        self.write(to, deadline).await?;
        if self.confirm {
            let got = self.read(deadline).await?;
            if got != to {
                return Err(format!("wrote {} but read back {}", show(to), show(got)).into());
            }
        }
        Ok(())
    }

    fn setting(&self) -> Setting<'_> {
        Setting {
            key: &self.key,
            name: &self.key,
            unit: "",
            integer: self.integer,
        }
    }

    async fn act_inner(&self, req: &ActionRequest, deadline: Instant) -> ActionOutcome {
        let fail = |m: String| ActionOutcome::new(ActionStatus::Failed, m);
        let adjust = match Adjust::from_params(&req.params, &[]) {
            Ok(a) => a,
            Err(e) => return fail(format!("params: {e}")),
        };
        let bounds = match adjust.bounds(self.bounds) {
            Ok(b) => b,
            Err(e) => return fail(format!("params: {e}")),
        };
        let current = match self.read(deadline).await {
            Ok(v) => v,
            Err(e) => return e.outcome(),
        };
        let plan = self.setting().plan(current, &adjust, bounds, req.dry_run);
        self.carry_out(plan, deadline).await
    }

    async fn revert_inner(
        &self,
        done: &ActionOutcome,
        deadline: Instant,
        dry_run: bool,
    ) -> ActionOutcome {
        let values = match self.setting().revert_of(done) {
            Ok(v) => v,
            Err(why) => return ActionOutcome::new(ActionStatus::Noop, why),
        };
        let current = match self.read(deadline).await {
            Ok(v) => v,
            Err(e) => return e.outcome(),
        };
        let plan = self.setting().plan_revert(current, values, dry_run);
        self.carry_out(plan, deadline).await
    }

    /// Writes what `plan` says (if anything) and reports.
    async fn carry_out(&self, plan: Plan, deadline: Instant) -> ActionOutcome {
        match plan.to {
            Some(to) => {
                let written = self.set(to, deadline).await;
                plan.finish(written)
            }
            None => plan.outcome,
        }
    }
}

#[async_trait]
impl Actuator for KnobActuator {
    fn kind(&self) -> &'static str {
        "knob"
    }

    fn timeout(&self) -> Option<StdDuration> {
        self.timeout
    }

    fn supports_dry_run(&self) -> bool {
        true
    }

    fn reversible(&self, action: &str) -> bool {
        ACTIONS.contains(&action)
    }

    async fn act(&self, req: &ActionRequest) -> ActionOutcome {
        let deadline = Instant::now() + req.timeout;
        bounded(req.timeout, &req.action, self.act_inner(req, deadline)).await
    }

    async fn revert(&self, req: &ActionRequest, done: &ActionOutcome) -> ActionOutcome {
        let deadline = Instant::now() + req.timeout;
        bounded(
            req.timeout,
            "the revert",
            self.revert_inner(done, deadline, req.dry_run),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_placeholder_becomes_a_json_number_and_nothing_else_is_templated() {
        let body = json!({"spec": {"replicas": "$value"}, "note": "{{ $labels.x }} $value", "l": ["$value"]});
        let out = fill(&body, &json!(4));
        assert_eq!(
            out,
            json!({"spec": {"replicas": 4}, "note": "{{ $labels.x }} $value", "l": [4]})
        );
    }

    fn cfg(yaml: &str) -> KnobConfig {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn bounds_and_urls_are_checked_at_build() {
        let good = "read: {url: 'http://127.0.0.1:1/c', pointer: /batch_size}\nwrite: {body: {batch_size: $value}}\nmin: 1\nmax: 64\n";
        assert!(KnobActuator::build("k", &cfg(good)).is_ok());
        for (yaml, want) in [
            (good.replace("min: 1", "min: 100"), "greater than max"),
            (good.replace("min: 1", "min: 1.5"), "whole numbers"),
            (
                good.replace("pointer: /batch_size", "pointer: batch_size"),
                "starts with '/'",
            ),
            (good.replace("http://127.0.0.1:1/c", "ftp://x/c"), "http://"),
            (
                good.replace("{body: {batch_size: $value}}", "{method: PUT}"),
                "go nowhere",
            ),
        ] {
            let e = KnobActuator::build("k", &cfg(&yaml)).err().expect(&yaml);
            assert!(e.to_string().contains(want), "{yaml}: {e}");
        }
        let k = cfg(good);
        assert!(k.check_params(&json!({"factor": 0.5, "min": 4})).is_ok());
        assert!(k.check_params(&json!({"factor": 0.5, "min": 0})).is_err());
        assert!(k.check_params(&json!({"delta": 1})).is_err());
        assert!(k.check_params(&json!({"value": 65})).is_err());
    }
}
