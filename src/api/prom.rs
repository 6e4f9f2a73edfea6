//! JSON shapes of `/api/v1/alerts` and `/api/v1/rules`, as Prometheus' HTTP API writes them,
//! so Grafana, promtool-based scripts and anything else that reads Prometheus works unchanged.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::rules::{AlertInstance, AlertState};
use crate::store::Labels;

/// Prometheus' response envelope: `{"status":"success","data":...}`.
#[derive(Debug, Serialize)]
pub struct Envelope<T> {
    pub status: &'static str,
    pub data: T,
}

impl<T> Envelope<T> {
    pub fn success(data: T) -> Self {
        Envelope {
            status: "success",
            data,
        }
    }
}

/// `data` of `/api/v1/alerts`.
#[derive(Debug, Serialize)]
pub struct AlertsData {
    pub alerts: Vec<AlertJson>,
}

/// `data` of `/api/v1/rules`.
#[derive(Debug, Serialize)]
pub struct RulesData {
    pub groups: Vec<GroupJson>,
}

/// One active (pending or firing) alert.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertJson {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `pending` or `firing`.
    pub state: AlertState,
    /// RFC 3339.
    pub active_at: String,
    /// The value as Go's `%e` writes it (`"1e+00"`), a string as in Prometheus.
    pub value: String,
}

impl AlertJson {
    pub fn from_instance(a: &AlertInstance) -> Self {
        AlertJson {
            labels: labels_map(&a.labels),
            annotations: a.annotations.clone(),
            state: a.state,
            active_at: rfc3339_ms(a.active_at_ms),
            value: go_exp_float(a.value),
        }
    }
}

/// A rule group with its rules.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupJson {
    pub name: String,
    pub file: String,
    pub rules: Vec<RuleJson>,
    /// Seconds.
    pub interval: f64,
    pub limit: u64,
    /// Seconds the last evaluation took.
    pub evaluation_time: f64,
    /// RFC 3339; `0001-01-01T00:00:00Z` before the first evaluation, as Prometheus writes it.
    pub last_evaluation: String,
}

/// A rule, tagged by `type` (`alerting` or `recording`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum RuleJson {
    Alerting(AlertingRuleJson),
    Recording(RecordingRuleJson),
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertingRuleJson {
    /// `inactive`, `pending` or `firing`: the most advanced state of its alerts.
    pub state: AlertState,
    pub name: String,
    pub query: String,
    /// `for`, in seconds.
    pub duration: f64,
    /// `keep_firing_for`, in seconds.
    pub keep_firing_for: f64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub alerts: Vec<AlertJson>,
    pub health: Health,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub last_error: String,
    pub evaluation_time: f64,
    pub last_evaluation: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordingRuleJson {
    pub name: String,
    pub query: String,
    pub labels: BTreeMap<String, String>,
    pub health: Health,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub last_error: String,
    pub evaluation_time: f64,
    pub last_evaluation: String,
}

/// A rule's health after its last evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Not evaluated yet.
    Unknown,
    Ok,
    Err,
}

/// Something that can describe a rule group on request (the live group behind a task).
pub trait RuleGroupView: Send + Sync {
    fn snapshot(&self) -> GroupJson;
}

pub fn labels_map(l: &Labels) -> BTreeMap<String, String> {
    l.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

use crate::common::time::rfc3339_ms;

/// Formats like Go's `strconv.FormatFloat(v, 'e', -1, 64)`, which Prometheus uses for alert
/// values: shortest mantissa, sign and at least two exponent digits (`1.5e+00`, `-2e-07`).
pub fn go_exp_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    let s = format!("{v:e}");
    match s.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_float_format() {
        assert_eq!(go_exp_float(1.0), "1e+00");
        assert_eq!(go_exp_float(0.0), "0e+00");
        assert_eq!(go_exp_float(1234.5), "1.2345e+03");
        assert_eq!(go_exp_float(-2e-7), "-2e-07");
        assert_eq!(go_exp_float(1e100), "1e+100");
        assert_eq!(go_exp_float(f64::INFINITY), "+Inf");
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_ms(0), "0001-01-01T00:00:00Z");
        assert_eq!(rfc3339_ms(1_500), "1970-01-01T00:00:01.500Z");
    }

    #[test]
    fn rule_serializes_with_type_tag() {
        let r = RuleJson::Recording(RecordingRuleJson {
            name: "x".into(),
            query: "up".into(),
            labels: BTreeMap::new(),
            health: Health::Ok,
            last_error: String::new(),
            evaluation_time: 0.001,
            last_evaluation: rfc3339_ms(1_000),
        });
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["type"], "recording");
        assert_eq!(v["health"], "ok");
        assert!(v.get("lastError").is_none());
        assert_eq!(v["lastEvaluation"], "1970-01-01T00:00:01.000Z");
    }
}
