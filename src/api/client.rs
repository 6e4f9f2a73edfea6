//! The client the CLI (`medic status`, `medic incidents`, `medic approve`, `medic silence`)
//! uses to talk to a running daemon, and the tables it prints.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach medic at {url}: {source}")]
    Connect { url: String, source: reqwest::Error },
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url}: the answer is not JSON: {source}")]
    Json {
        url: String,
        source: serde_json::Error,
    },
    #[error("cannot build the HTTP client: {0}")]
    Build(reqwest::Error),
}

/// A connection to one daemon's API.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// `address`: `host:port` (as `global.listen_address`) or a URL; `token`: the API token
    /// for state-changing calls.
    pub fn new(address: &str, token: Option<String>) -> Result<Client, ClientError> {
        crate::common::tls::init_tls();
        let address = address.replace("0.0.0.0:", "127.0.0.1:");
        let base = if address.starts_with("http://") || address.starts_with("https://") {
            address.trim_end_matches('/').to_string()
        } else {
            format!("http://{address}")
        };
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(ClientError::Build)?;
        Ok(Client { base, token, http })
    }

    async fn send(&self, req: reqwest::RequestBuilder, url: &str) -> Result<Value, ClientError> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await.map_err(|source| ClientError::Connect {
            url: url.to_string(),
            source,
        })?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(|source| ClientError::Connect {
            url: url.to_string(),
            source,
        })?;
        if !(200..300).contains(&status) {
            return Err(ClientError::Status {
                url: url.to_string(),
                status,
                body: body.trim().to_string(),
            });
        }
        if body.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&body).map_err(|source| ClientError::Json {
            url: url.to_string(),
            source,
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.get(&url), &url).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.post(&url).json(body), &url).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.delete(&url), &url).await
    }
}

/// A plain text table: headers, then rows, columns padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < width.len() {
                width[i] = width[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = width[i].saturating_sub(c.chars().count());
            l.push_str(c);
            if i + 1 < cells.len() {
                l.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut out, headers.to_vec());
    for r in rows {
        line(&mut out, r.iter().map(String::as_str).collect());
    }
    out
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn labels(v: &Value) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.as_str() != "alertname")
                .map(|(k, v)| format!("{k}={}", s(v)))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// One table row per element of the JSON array `v` (none when it is not an array).
fn rows(v: &Value, row: impl Fn(&Value) -> Vec<String>) -> Vec<Vec<String>> {
    v.as_array()
        .map(|a| a.iter().map(row).collect())
        .unwrap_or_default()
}

/// `medic incidents`.
pub fn incidents_table(data: &Value) -> String {
    let rows = rows(&data["incidents"], |i| {
        let steps = i["steps"].as_array().map(|st| {
            st.iter()
                .map(|x| {
                    let st = s(&x["state"]);
                    match x.get("result").or(x.get("reason")) {
                        Some(r) => format!("{}:{}", s(&x["action"]), s(r)),
                        None => format!("{}:{st}", s(&x["action"])),
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        });
        vec![
            s(&i["id"]),
            s(&i["alertname"]),
            labels(&i["labels"]),
            s(&i["phase"]),
            s(&i["outcome"]),
            s(&i["startsAt"]),
            steps.unwrap_or_default(),
        ]
    });
    table(
        &[
            "ID", "ALERT", "LABELS", "PHASE", "OUTCOME", "STARTED", "STEPS",
        ],
        &rows,
    )
}

/// `medic incident ID`: the incident, its steps and its timeline.
pub fn incident_text(i: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "incident {}  {} {{{}}}\nphase {}  outcome {}  started {}  resolved {}",
        s(&i["id"]),
        s(&i["alertname"]),
        labels(&i["labels"]),
        s(&i["phase"]),
        s(&i["outcome"]),
        s(&i["startsAt"]),
        s(&i["resolvedAt"]),
    );
    out.push('\n');
    let rows = rows(&i["timeline"], |e| {
        vec![
            s(&e["at"]),
            s(&e["kind"]),
            e["step"]
                .as_u64()
                .map(|n| n.to_string())
                .unwrap_or_default(),
            s(&e["detail"]),
        ]
    });
    out.push_str(&table(&["AT", "EVENT", "STEP", "DETAIL"], &rows));
    out
}

/// `medic status`.
pub fn status_text(d: &Value) -> String {
    let mut out = String::new();
    let alerts = rows(&d["alerts"], |x| {
        vec![
            s(&x["labels"]["alertname"]),
            labels(&x["labels"]),
            s(&x["state"]),
            s(&x["activeAt"]),
        ]
    });
    let _ = writeln!(out, "ALERTS ({})", alerts.len());
    out.push_str(&table(
        &["ALERT", "LABELS", "STATE", "ACTIVE SINCE"],
        &alerts,
    ));
    let n = d["incidents"].as_array().map_or(0, Vec::len);
    let _ = writeln!(out, "\nOPEN INCIDENTS ({n})");
    out.push_str(&incidents_table(d));
    let breakers = rows(&d["breakers"], |b| {
        vec![
            s(&b["target"]),
            s(&b["state"]),
            s(&b["failures"]),
            s(&b["half_open_at"]),
        ]
    });
    out.push_str("\nBREAKERS\n");
    out.push_str(&table(
        &["TARGET", "STATE", "FAILURES", "HALF-OPEN AT"],
        &breakers,
    ));
    let budgets = rows(&d["budgets"], |b| {
        vec![
            s(&b["scope"]),
            s(&b["name"]),
            s(&b["budget"]),
            b["remaining"]
                .as_f64()
                .map(|r| format!("{r:.2}"))
                .unwrap_or_default(),
        ]
    });
    out.push_str("\nBUDGETS\n");
    out.push_str(&table(&["SCOPE", "NAME", "BUDGET", "REMAINING"], &budgets));
    let approvals = rows(&d["awaitingApproval"], |x| {
        vec![
            s(&x["incident"]),
            s(&x["rule"]),
            s(&x["action"]),
            s(&x["target"]),
            s(&x["expires_at"]),
        ]
    });
    if !approvals.is_empty() {
        out.push_str("\nAWAITING APPROVAL\n");
        out.push_str(&table(
            &["INCIDENT", "ALERT", "ACTION", "TARGET", "EXPIRES"],
            &approvals,
        ));
    }
    let _ = writeln!(out, "\nactive silences: {}", s(&d["activeSilences"]));
    out
}

/// `medic silence list`.
pub fn silences_table(v: &Value) -> String {
    let rows = rows(v, |x| {
        let matchers = x["matchers"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|m| {
                        serde_json::from_value::<crate::silence::Matcher>(m.clone()).ok()
                    })
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        vec![
            s(&x["id"]),
            s(&x["status"]["state"]),
            matchers,
            s(&x["startsAt"]),
            s(&x["endsAt"]),
            s(&x["createdBy"]),
            s(&x["comment"]),
        ]
    });
    table(
        &[
            "ID",
            "STATE",
            "MATCHERS",
            "STARTS",
            "ENDS",
            "CREATED BY",
            "COMMENT",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
        let v = serde_json::json!({"incidents": [{"id": 3, "alertname": "Down", "labels": {"alertname": "Down", "i": "a"},
            "phase": "active", "outcome": null, "startsAt": "t", "steps": [{"state": "done", "result": "verified", "action": "exec"}]}]});
        let t = incidents_table(&v);
        assert!(t.contains("exec:verified"), "{t}");
        assert!(t.contains("i=a"), "{t}");
    }
}
