//! The planner's side of the API: incidents (list, filter, one with its timeline), actions,
//! approve/reject, breakers (state, reset), budgets, and a status summary for `medic status`.
//! Answers use Prometheus' envelope (`{"status":"success","data":...}`); state changes need
//! the bearer token.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::access::ApiAccess;
use super::prom::Envelope;
use crate::common::time::rfc3339_ms;
use crate::journal::{ActionRecord, Incident as Row, IncidentFilter};
use crate::remedy::{Incident, PlannerControl};

pub fn routes<S: ApiAccess>() -> Router<Arc<S>> {
    Router::new()
        .route("/api/v1/incidents", get(list::<S>))
        .route("/api/v1/incidents/{id}", get(one::<S>))
        .route("/api/v1/incidents/{id}/approve", post(approve::<S>))
        .route("/api/v1/incidents/{id}/reject", post(reject::<S>))
        .route("/api/v1/actions", get(actions::<S>))
        .route("/api/v1/breakers", get(breakers::<S>))
        .route("/api/v1/breakers/{target}/reset", post(reset::<S>))
        .route("/api/v1/budgets", get(budgets::<S>))
        .route("/api/v1/status", get(status::<S>))
}

/// Prometheus' error shape.
pub(crate) fn error(code: StatusCode, kind: &str, msg: impl std::fmt::Display) -> Response {
    (
        code,
        Json(json!({"status": "error", "errorType": kind, "error": msg.to_string()})),
    )
        .into_response()
}

fn planner(st: &impl ApiAccess) -> Result<PlannerControl, Box<Response>> {
    st.remedy().map(|(p, _)| p).ok_or_else(|| {
        Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the planner is not running",
        ))
    })
}

/// One incident as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IncidentJson {
    pub id: i64,
    pub alertname: String,
    pub group: String,
    pub fingerprint: String,
    pub labels: Value,
    pub annotations: Value,
    pub phase: String,
    pub outcome: Option<String>,
    pub starts_at: String,
    pub resolved_at: Option<String>,
    pub updated_at: String,
    pub escalated: bool,
    pub steps: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<ActionJson>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionJson {
    pub id: i64,
    pub incident: Option<i64>,
    pub action: String,
    pub target: Option<String>,
    pub idempotency_key: String,
    pub params: Value,
    pub dry_run: bool,
    pub status: &'static str,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub message: Option<String>,
    pub result: Value,
}

fn action_json(a: &ActionRecord) -> ActionJson {
    ActionJson {
        id: a.id,
        incident: a.incident_id,
        action: a.action.clone(),
        target: a.target.clone(),
        idempotency_key: a.idempotency_key.clone(),
        params: serde_json::from_str(&a.params).unwrap_or(Value::Null),
        dry_run: a.dry_run,
        status: a.status.as_str(),
        started_at: rfc3339_ms(a.started_ms),
        finished_at: a.finished_ms.map(rfc3339_ms),
        message: a.message.clone(),
        result: a
            .result
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok())
            .unwrap_or(Value::Null),
    }
}

fn incident_json(row: &Row, detail: bool, actions: Option<Vec<ActionRecord>>) -> IncidentJson {
    let state: Option<Incident> = serde_json::from_str(&row.state).ok();
    let steps = state
        .as_ref()
        .map(|s| {
            s.ladder
                .iter()
                .zip(&s.steps)
                .enumerate()
                .map(|(i, (l, st))| {
                    let mut v = serde_json::to_value(st).unwrap_or(Value::Null);
                    if let Value::Object(m) = &mut v {
                        m.insert("index".into(), json!(i));
                        m.insert("action".into(), json!(l.action));
                        m.insert("target".into(), json!(l.target));
                        m.remove("request");
                    }
                    v
                })
                .collect()
        })
        .unwrap_or_default();
    let timeline = detail.then(|| {
        state
            .as_ref()
            .map(|s| {
                s.timeline
                    .iter()
                    .map(|e| {
                        json!({"at": rfc3339_ms(e.at_ms), "kind": e.kind, "step": e.step,
                               "detail": e.detail, "data": e.data})
                    })
                    .collect()
            })
            .unwrap_or_default()
    });
    IncidentJson {
        id: row.id,
        alertname: row.alertname.clone(),
        group: row.group.clone(),
        fingerprint: row.fingerprint.clone(),
        labels: serde_json::from_str(&row.labels).unwrap_or(Value::Null),
        annotations: state
            .as_ref()
            .map(|s| json!(s.annotations))
            .unwrap_or(Value::Null),
        phase: row.phase.clone(),
        outcome: row.outcome.clone(),
        starts_at: rfc3339_ms(row.started_ms),
        resolved_at: row.resolved_ms.map(rfc3339_ms),
        updated_at: rfc3339_ms(row.updated_ms),
        escalated: state.as_ref().is_some_and(|s| s.escalated),
        steps,
        timeline,
        actions: actions.map(|a| a.iter().map(action_json).collect()),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    /// `open` or `closed`.
    state: Option<String>,
    alertname: Option<String>,
    outcome: Option<String>,
    limit: Option<usize>,
}

async fn list<S: ApiAccess>(State(st): State<Arc<S>>, Query(q): Query<ListQuery>) -> Response {
    let p = match planner(&*st) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let open = match q.state.as_deref() {
        None | Some("") | Some("all") => None,
        Some("open") => Some(true),
        Some("closed") => Some(false),
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_data",
                format!("state {other:?}: expected open, closed or all"),
            );
        }
    };
    let filter = IncidentFilter {
        open,
        alertname: q.alertname.filter(|s| !s.is_empty()),
        outcome: q.outcome.filter(|s| !s.is_empty()),
        limit: q.limit.unwrap_or(100).min(10_000),
    };
    match p.read(move |j| j.incidents_query(&filter)).await {
        Ok(rows) => {
            let incidents: Vec<IncidentJson> =
                rows.iter().map(|r| incident_json(r, false, None)).collect();
            Json(Envelope::success(json!({ "incidents": incidents }))).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
    }
}

async fn one<S: ApiAccess>(State(st): State<Arc<S>>, Path(id): Path<i64>) -> Response {
    let p = match planner(&*st) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let got = p
        .read(move |j| {
            let row = j.incident_get(id)?;
            let actions = j.actions_of_incident(id)?;
            Ok((row, actions))
        })
        .await;
    match got {
        Ok((Some(row), actions)) => {
            Json(Envelope::success(incident_json(&row, true, Some(actions)))).into_response()
        }
        Ok((None, _)) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no incident {id}"),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
    }
}

#[derive(Deserialize, Default)]
struct Decision {
    /// Who decided (logged and on the timeline).
    #[serde(default)]
    by: Option<String>,
}

async fn decide<S: ApiAccess>(
    st: Arc<S>,
    headers: HeaderMap,
    id: i64,
    body: Option<Json<Decision>>,
    approve: bool,
) -> Response {
    if let Err(r) = st.authorize(&headers) {
        return *r;
    }
    let p = match planner(&*st) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let by = body
        .and_then(|Json(d)| d.by)
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| "api".into());
    match p.decide(id, &by, approve).await {
        Ok(()) => Json(Envelope::success(
            json!({"incident": id, "approved": approve}),
        ))
        .into_response(),
        Err(e) => error(StatusCode::CONFLICT, "bad_data", e),
    }
}

async fn approve<S: ApiAccess>(
    State(st): State<Arc<S>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Option<Json<Decision>>,
) -> Response {
    decide::<S>(st, headers, id, body, true).await
}

async fn reject<S: ApiAccess>(
    State(st): State<Arc<S>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Option<Json<Decision>>,
) -> Response {
    decide::<S>(st, headers, id, body, false).await
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<usize>,
}

async fn actions<S: ApiAccess>(State(st): State<Arc<S>>, Query(q): Query<Limit>) -> Response {
    let p = match planner(&*st) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let limit = q.limit.unwrap_or(100).min(10_000);
    match p.read(move |j| j.actions_recent(limit)).await {
        Ok(rows) => {
            let actions: Vec<ActionJson> = rows.iter().map(action_json).collect();
            Json(Envelope::success(json!({ "actions": actions }))).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
    }
}

async fn breakers<S: ApiAccess>(State(st): State<Arc<S>>) -> Response {
    match planner(&*st) {
        Ok(p) => Json(Envelope::success(json!({"breakers": p.status().breakers}))).into_response(),
        Err(r) => *r,
    }
}

async fn reset<S: ApiAccess>(
    State(st): State<Arc<S>>,
    headers: HeaderMap,
    Path(target): Path<String>,
) -> Response {
    if let Err(r) = st.authorize(&headers) {
        return *r;
    }
    let p = match planner(&*st) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    match p.reset_breaker(&target).await {
        Ok(()) => Json(Envelope::success(
            json!({"target": target, "state": "closed"}),
        ))
        .into_response(),
        Err(e) => error(StatusCode::CONFLICT, "bad_data", e),
    }
}

async fn budgets<S: ApiAccess>(State(st): State<Arc<S>>) -> Response {
    match planner(&*st) {
        Ok(p) => Json(Envelope::success(json!({"budgets": p.status().budgets}))).into_response(),
        Err(r) => *r,
    }
}

/// Everything `medic status` shows: firing alerts, open incidents, breakers, budgets,
/// steps awaiting approval, active silences.
async fn status<S: ApiAccess>(State(st): State<Arc<S>>) -> Response {
    let alerts = st.alerts();
    let Some((p, silences)) = st.remedy() else {
        return Json(Envelope::success(json!({"alerts": alerts}))).into_response();
    };
    let s = p.status();
    let open = p
        .read(|j| {
            j.incidents_query(&IncidentFilter {
                open: Some(true),
                limit: 1000,
                ..IncidentFilter::default()
            })
        })
        .await
        .unwrap_or_default();
    let incidents: Vec<IncidentJson> = open.iter().map(|r| incident_json(r, false, None)).collect();
    Json(Envelope::success(json!({
        "alerts": alerts,
        "incidents": incidents,
        "breakers": s.breakers,
        "budgets": s.budgets,
        "awaitingApproval": s.awaiting_approval,
        "activeSilences": silences.active(),
    })))
    .into_response()
}
