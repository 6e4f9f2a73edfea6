//! The `webhook` notifier: POSTs Alertmanager's webhook JSON (version "4"), so any receiver
//! written for Alertmanager works unchanged.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use super::notifier::{
    AlertError, Notification, NotificationStatus, Notifier, NotifyError, RetryPolicy,
};
use crate::common::time::rfc3339_ms;
use crate::common::{Duration, Secret};
use crate::store::Labels;

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_true() -> bool {
    true
}
fn default_max_attempts() -> u32 {
    5
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(500)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}
fn default_repeat_interval() -> Duration {
    Duration::from_secs(4 * 3600)
}

/// A webhook receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where the JSON is POSTed (`http://` or `https://`).
    pub url: String,
    /// How long one attempt may take.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Also notify when an alert resolves.
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    /// Attempts in all, the first included; 5xx, 429, timeouts and connection errors are
    /// retried, other 4xx are not.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Wait after the first failed attempt; it doubles after each further one.
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff: Duration,
    /// The wait between attempts never exceeds this.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Duration,
    /// Re-send a still-firing alert this often ("0": only on firing and resolving).
    #[serde(default = "default_repeat_interval")]
    pub repeat_interval: Duration,
    /// Sent as `Authorization: Bearer <token>`: `{file: PATH}` or `{env: VAR}`, read when
    /// the config is loaded, never logged.
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    /// Extra request headers with fixed values (no secrets here: use `bearer_token`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The URL medic is reachable at: sent as `externalURL`, and `<external_url>/api/v1/alerts`
    /// as each alert's `generatorURL` (empty when unset).
    #[serde(default)]
    pub external_url: String,
}

/// A running webhook notifier.
pub struct WebhookNotifier {
    receiver: String,
    url: reqwest::Url,
    headers: HeaderMap,
    timeout: StdDuration,
    send_resolved: bool,
    retry: RetryPolicy,
    repeat_interval: Option<StdDuration>,
    external_url: String,
    client: reqwest::Client,
}

impl WebhookNotifier {
    pub fn build(name: &str, cfg: &WebhookConfig) -> Result<Self, AlertError> {
        let bad_url = |reason: String| AlertError::InvalidUrl {
            name: name.into(),
            url: crate::common::redact_url(&cfg.url),
            reason,
        };
        let url = reqwest::Url::parse(&cfg.url).map_err(|e| bad_url(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad_url("expected an http:// or https:// URL".into()));
        }
        if cfg.timeout.std().is_zero() {
            return Err(AlertError::Invalid {
                name: name.into(),
                reason: "`timeout` must be greater than 0".into(),
            });
        }
        let mut headers = HeaderMap::new();
        for (k, v) in &cfg.headers {
            let bad = |reason: String| AlertError::InvalidHeader {
                name: name.into(),
                header: k.clone(),
                reason,
            };
            headers.insert(
                HeaderName::from_bytes(k.as_bytes()).map_err(|e| bad(e.to_string()))?,
                HeaderValue::from_str(v).map_err(|e| bad(e.to_string()))?,
            );
        }
        let token = match &cfg.bearer_token {
            Some(secret) => Some(secret.read().map_err(|e| AlertError::Secret {
                name: name.into(),
                reason: e.to_string(),
            })?),
            None => None,
        };
        if let Some(token) = token {
            let mut hv = HeaderValue::from_str(&format!("Bearer {}", token.expose().trim()))
                .map_err(|_| AlertError::Secret {
                    name: name.into(),
                    reason: "the bearer token holds characters not allowed in a header".into(),
                })?;
            hv.set_sensitive(true);
            headers.insert(AUTHORIZATION, hv);
        }
        crate::common::tls::init_tls();
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout.std())
            .build()
            .map_err(|source| AlertError::HttpClient {
                name: name.into(),
                source,
            })?;
        Ok(WebhookNotifier {
            receiver: name.to_string(),
            url,
            headers,
            timeout: cfg.timeout.std(),
            send_resolved: cfg.send_resolved,
            retry: RetryPolicy {
                max_attempts: cfg.max_attempts.max(1),
                initial_backoff: cfg.initial_backoff.std(),
                max_backoff: cfg.max_backoff.std(),
            },
            repeat_interval: Some(cfg.repeat_interval.std()).filter(|d| !d.is_zero()),
            external_url: cfg.external_url.trim_end_matches('/').to_string(),
            client,
        })
    }

    /// The JSON body for one notification.
    pub fn payload(&self, n: &Notification) -> WebhookMessage {
        let group_key = format!(
            "{{}}:{}",
            Labels::new(n.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        );
        let generator_url = if self.external_url.is_empty() {
            String::new()
        } else {
            format!("{}/api/v1/alerts", self.external_url)
        };
        WebhookMessage {
            version: "4",
            group_key,
            truncated_alerts: 0,
            status: n.status.as_str(),
            receiver: self.receiver.clone(),
            // one alert per message: every label is a group label and common to all
            group_labels: n.labels.clone(),
            common_labels: n.labels.clone(),
            common_annotations: n.annotations.clone(),
            external_url: self.external_url.clone(),
            alerts: vec![WebhookAlert {
                status: n.status.as_str(),
                labels: n.labels.clone(),
                annotations: n.annotations.clone(),
                starts_at: rfc3339_ms(n.starts_at_ms),
                ends_at: match (n.status, n.ends_at_ms) {
                    (NotificationStatus::Resolved, Some(ms)) => rfc3339_ms(ms),
                    // Alertmanager's zero time while firing
                    _ => "0001-01-01T00:00:00Z".to_string(),
                },
                generator_url,
                fingerprint: format!("{:016x}", n.fingerprint),
            }],
            medic_escalation: n.escalation.as_deref().cloned(),
        }
    }
}

/// Alertmanager's webhook body, version 4.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookMessage {
    pub version: &'static str,
    pub group_key: String,
    pub truncated_alerts: u64,
    pub status: &'static str,
    pub receiver: String,
    pub group_labels: BTreeMap<String, String>,
    pub common_labels: BTreeMap<String, String>,
    pub common_annotations: BTreeMap<String, String>,
    #[serde(rename = "externalURL")]
    pub external_url: String,
    pub alerts: Vec<WebhookAlert>,
    /// medic's addition for escalations: the incident, why remediation stopped, its whole
    /// history (receivers that do not know it ignore it).
    #[serde(rename = "medicEscalation", skip_serializing_if = "Option::is_none")]
    pub medic_escalation: Option<crate::remedy::Escalation>,
}

/// One alert in a webhook body.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAlert {
    pub status: &'static str,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    pub fingerprint: String,
}

#[async_trait]
impl Notifier for WebhookNotifier {
    fn send_resolved(&self) -> bool {
        self.send_resolved
    }

    fn repeat_interval(&self) -> Option<StdDuration> {
        self.repeat_interval
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    async fn send(&self, n: &Notification) -> Result<(), NotifyError> {
        let body = serde_json::to_vec(&self.payload(n))
            .map_err(|e| NotifyError::Permanent(format!("cannot encode the payload: {e}")))?;
        let req = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send();
        // the client timeout covers the exchange; this outer one also covers a stalled
        // body, and never lets an attempt outlive the configured timeout by much
        let resp = match tokio::time::timeout(self.timeout, req).await {
            Err(_) => return Err(NotifyError::Timeout(self.timeout)),
            Ok(Err(e)) if e.is_timeout() => return Err(NotifyError::Timeout(self.timeout)),
            Ok(Err(e)) => {
                return Err(NotifyError::Transient(format!(
                    "POST {} failed: {e}",
                    crate::common::redact_url(self.url.as_str())
                )));
            }
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let msg = format!(
            "POST {}: HTTP {}",
            crate::common::redact_url(self.url.as_str()),
            status.as_u16()
        );
        if status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
        {
            Err(NotifyError::Transient(msg))
        } else {
            Err(NotifyError::Permanent(msg))
        }
    }
}
