//! The `http` actuator: sends one HTTP request (method, URL, headers, body) and judges the
//! answer by its status code.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use crate::common::{Duration, Secret};
use crate::remedy::actuator::{ActionOutcome, ActionRequest, ActionStatus, Actuator, RemedyError};
use crate::rules::template::{Template, TemplateData};
use crate::store::Labels;

fn default_method() -> String {
    "POST".to_string()
}

/// Most bytes of a response body read (for `data` and the reply object).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// An HTTP request as an action.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The URL the request goes to (`http://` or `https://`).
    pub url: String,
    /// The HTTP method.
    #[serde(default = "default_method")]
    pub method: String,
    /// Request headers with fixed values. Put secrets in `secret_headers` or `bearer_token`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request headers whose values are secrets (`{file: PATH}`, `{env: VAR}`), read when
    /// the config is loaded and never logged, e.g. `X-Api-Key: {file: /etc/medic/key}`.
    #[serde(default)]
    pub secret_headers: BTreeMap<String, Secret>,
    /// Sent as `Authorization: Bearer <token>` (`{file: PATH}` or `{env: VAR}`).
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    /// The request body. A YAML mapping or list is sent as JSON (`Content-Type:
    /// application/json`) with every string in it a template over the alert
    /// (`{{ $labels.instance }}`, `{{ $value }}`) whose result is JSON-encoded where it
    /// lands, so a label value can never add keys or break the JSON; keys, numbers and
    /// booleans are sent as written. A string is a text template sent as `text/plain`
    /// (unless `headers` sets `Content-Type`); JSON written as a string is refused. When
    /// absent, the body is the action request as JSON (the exec plugin protocol's input).
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    /// How long the request may take. A step's `timeout` overrides it;
    /// `remedy.default_timeout` applies when both are absent.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Status codes that count as success; any 2xx when empty.
    #[serde(default)]
    pub expected_status: Vec<u16>,
}

/// A parsed body: text, or a JSON structure whose strings are templates.
#[derive(Debug)]
enum Body {
    Text(Template),
    Json(JsonTemplate),
}

/// A JSON value whose strings are templates (keys and other scalars are as written).
#[derive(Debug)]
enum JsonTemplate {
    Literal(serde_json::Value),
    String(Template),
    Array(Vec<JsonTemplate>),
    Object(Vec<(String, JsonTemplate)>),
}

impl JsonTemplate {
    fn parse(v: &serde_json::Value) -> Result<Self, String> {
        use serde_json::Value;
        Ok(match v {
            Value::String(s) => {
                JsonTemplate::String(Template::parse(s).map_err(|e| e.to_string())?)
            }
            Value::Array(a) => {
                JsonTemplate::Array(a.iter().map(Self::parse).collect::<Result<_, _>>()?)
            }
            Value::Object(o) => JsonTemplate::Object(
                o.iter()
                    .map(|(k, v)| Ok((k.clone(), Self::parse(v)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => JsonTemplate::Literal(other.clone()),
        })
    }

    /// Renders every template into a JSON string value: the structure is fixed by the
    /// config, the alert only ever fills in string values.
    fn render(&self, data: &TemplateData) -> Result<serde_json::Value, String> {
        use serde_json::Value;
        Ok(match self {
            JsonTemplate::Literal(v) => v.clone(),
            JsonTemplate::String(t) => Value::String(t.render(data).map_err(|e| e.to_string())?),
            JsonTemplate::Array(a) => {
                Value::Array(a.iter().map(|t| t.render(data)).collect::<Result<_, _>>()?)
            }
            JsonTemplate::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, t)| Ok((k.clone(), t.render(data)?)))
                    .collect::<Result<_, String>>()?,
            ),
        })
    }
}

fn parse_body(v: &serde_json::Value) -> Result<Body, String> {
    match v {
        serde_json::Value::String(s) => {
            if matches!(s.trim_start().chars().next(), Some('{' | '[')) {
                return Err(
                    "write a JSON body as a YAML mapping or list (body: {drain: true, \
                     instance: \"{{ $labels.instance }}\"}), so templated values are \
                     JSON-encoded; a text body splices them in raw"
                        .into(),
                );
            }
            Ok(Body::Text(Template::parse(s).map_err(|e| e.to_string())?))
        }
        serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
            Ok(Body::Json(JsonTemplate::parse(v)?))
        }
        _ => Err("expected a text template, a mapping or a list".into()),
    }
}

/// A running `http` actuator.
pub struct HttpActuator {
    url: reqwest::Url,
    method: reqwest::Method,
    headers: HeaderMap,
    body: Option<Body>,
    timeout: Option<StdDuration>,
    expected_status: Vec<u16>,
    client: reqwest::Client,
}

impl HttpActuator {
    pub fn build(name: &str, cfg: &HttpConfig) -> Result<Self, RemedyError> {
        let url = http_url(name, &cfg.url)?;
        let method = reqwest::Method::from_bytes(cfg.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| RemedyError::InvalidMethod {
                name: name.into(),
                method: cfg.method.clone(),
            })?;
        let body = match &cfg.body {
            Some(b) => Some(parse_body(b).map_err(|reason| RemedyError::InvalidBody {
                name: name.into(),
                reason,
            })?),
            None => None,
        };
        let headers = build_headers(
            name,
            &cfg.headers,
            &cfg.secret_headers,
            cfg.bearer_token.as_ref(),
        )?;
        let client = http_client(name, &crate::common::tls::TlsConfig::default())?;
        Ok(HttpActuator {
            url,
            method,
            headers,
            body,
            timeout: cfg.timeout.map(|d| d.std()),
            expected_status: cfg.expected_status.clone(),
            client,
        })
    }
}

/// `url` parsed, `http://` or `https://` only; the error shows it with any password
/// redacted. Shared with the knob actuator.
pub(crate) fn http_url(name: &str, url: &str) -> Result<reqwest::Url, RemedyError> {
    let bad = |reason: String| RemedyError::InvalidUrl {
        name: name.into(),
        url: crate::common::redact_url(url),
        reason,
    };
    let u = reqwest::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(bad("expected an http:// or https:// URL".into()));
    }
    Ok(u)
}

/// The client of an actuator that sends requests: no redirects followed (a redirect could
/// carry the credentials elsewhere), the CAs of `tls.ca_file` trusted besides the system's.
/// Shared with the knob actuator.
pub(crate) fn http_client(
    name: &str,
    tls: &crate::common::tls::TlsConfig,
) -> Result<reqwest::Client, RemedyError> {
    crate::common::tls::init_tls();
    let invalid = |reason: String| RemedyError::Config {
        name: name.into(),
        reason,
    };
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tls_danger_accept_invalid_certs(tls.insecure_skip_verify);
    if let Some(ca) = &tls.ca_file {
        let pem =
            std::fs::read(ca).map_err(|e| invalid(format!("tls.ca_file {}: {e}", ca.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| invalid(format!("tls.ca_file {}: {e}", ca.display())))?;
        builder = builder.tls_certs_merge(certs);
    }
    builder.build().map_err(|source| RemedyError::HttpClient {
        name: name.into(),
        source,
    })
}

/// Header map from the config; secret values are marked sensitive so they are never
/// printed by reqwest's debug output.
pub(crate) fn build_headers(
    name: &str,
    headers: &BTreeMap<String, String>,
    secret_headers: &BTreeMap<String, Secret>,
    bearer_token: Option<&Secret>,
) -> Result<HeaderMap, RemedyError> {
    let bad = |header: &str, reason: String| RemedyError::InvalidHeader {
        name: name.into(),
        header: header.to_string(),
        reason,
    };
    let mut map = HeaderMap::new();
    let mut put = |k: &str, v: &str, sensitive: bool| -> Result<(), RemedyError> {
        let hn = HeaderName::from_bytes(k.as_bytes()).map_err(|e| bad(k, e.to_string()))?;
        // the value may be a secret: never echo it in the error
        let mut hv = HeaderValue::from_str(v).map_err(|_| {
            bad(
                k,
                "the value holds characters not allowed in a header".into(),
            )
        })?;
        hv.set_sensitive(sensitive);
        map.insert(hn, hv);
        Ok(())
    };
    for (k, v) in headers {
        put(k, v, false)?;
    }
    let read = |s: &Secret| {
        s.read().map_err(|e| RemedyError::Secret {
            name: name.into(),
            reason: e.to_string(),
        })
    };
    for (k, s) in secret_headers {
        put(k, read(s)?.expose(), true)?;
    }
    if let Some(s) = bearer_token {
        put(
            AUTHORIZATION.as_str(),
            &format!("Bearer {}", read(s)?.expose().trim()),
            true,
        )?;
    }
    Ok(map)
}

/// Reads at most `max` bytes of the body.
pub(crate) async fn read_body_bounded(mut resp: reqwest::Response, max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = max.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= max {
            break;
        }
    }
    out
}

#[async_trait]
impl Actuator for HttpActuator {
    fn kind(&self) -> &'static str {
        "http"
    }

    fn timeout(&self) -> Option<StdDuration> {
        self.timeout
    }

    async fn act(&self, req: &ActionRequest) -> ActionOutcome {
        let mut rb = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone())
            .timeout(req.timeout);
        rb = match &self.body {
            Some(t) => {
                let labels = Labels::new(
                    req.alert
                        .labels
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str())),
                );
                let data = TemplateData {
                    labels: &labels,
                    external_labels: &Labels::default(),
                    external_url: "",
                    value: req.alert.value,
                };
                let rendered = match t {
                    Body::Text(t) => t
                        .render(&data)
                        .map(|b| ("text/plain; charset=utf-8", b.into_bytes()))
                        .map_err(|e| e.to_string()),
                    Body::Json(t) => t.render(&data).and_then(|v| {
                        serde_json::to_vec(&v)
                            .map(|b| ("application/json", b))
                            .map_err(|e| e.to_string())
                    }),
                };
                match rendered {
                    Ok((kind, b)) => {
                        if !self.headers.contains_key(CONTENT_TYPE) {
                            rb = rb.header(CONTENT_TYPE, kind);
                        }
                        rb.body(b)
                    }
                    Err(e) => {
                        return ActionOutcome::new(
                            ActionStatus::Failed,
                            format!("cannot render the body: {e}"),
                        );
                    }
                }
            }
            None => match serde_json::to_vec(req) {
                Ok(v) => rb.header(CONTENT_TYPE, "application/json").body(v),
                Err(e) => {
                    return ActionOutcome::new(
                        ActionStatus::Failed,
                        format!("cannot encode request: {e}"),
                    );
                }
            },
        };
        // the whole exchange, body included, stays inside the action's timeout
        let exchange = async {
            let resp = rb.send().await?;
            let status = resp.status();
            let body = read_body_bounded(resp, MAX_RESPONSE_BYTES).await;
            Ok::<_, reqwest::Error>((status, body))
        };
        let (status, body) = match tokio::time::timeout(req.timeout, exchange).await {
            Err(_) => {
                return ActionOutcome::new(
                    ActionStatus::Timeout,
                    format!(
                        "no answer from {} within {:?}",
                        crate::common::redact_url(self.url.as_str()),
                        req.timeout
                    ),
                );
            }
            Ok(Err(e)) if e.is_timeout() => {
                return ActionOutcome::new(
                    ActionStatus::Timeout,
                    format!(
                        "no answer from {} within {:?}",
                        crate::common::redact_url(self.url.as_str()),
                        req.timeout
                    ),
                );
            }
            Ok(Err(e)) => {
                return ActionOutcome::new(
                    ActionStatus::Failed,
                    format!(
                        "request to {} failed: {e}",
                        crate::common::redact_url(self.url.as_str())
                    ),
                );
            }
            Ok(Ok(x)) => x,
        };
        let code = status.as_u16();
        let good = if self.expected_status.is_empty() {
            status.is_success()
        } else {
            self.expected_status.contains(&code)
        };
        let data: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&body).into_owned())
        });
        let mut out = ActionOutcome::new(
            if good {
                ActionStatus::Ok
            } else {
                ActionStatus::Failed
            },
            format!("HTTP {code}"),
        );
        // a JSON answer shaped like an exec plugin's reply may say `noop` or `failed`
        let reply_status = data.get("status").and_then(|s| s.as_str());
        if let (true, Some(s)) = (good, reply_status) {
            match s {
                "noop" => out.status = ActionStatus::Noop,
                "failed" => out.status = ActionStatus::Failed,
                _ => {}
            }
            if let Some(m) = data.get("message").and_then(|m| m.as_str()) {
                out.message = format!("HTTP {code}: {m}");
            }
        }
        out.data = data;
        out
    }
}
