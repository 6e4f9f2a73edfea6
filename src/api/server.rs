//! The axum server: routes, shared state, bearer-token guard for state-changing calls.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::exposition::{self, Format};
use super::prom::{AlertsData, Envelope, RuleGroupView, RuleJson, RulesData};
use crate::common::metrics::SelfMetrics;
use crate::common::time::now_ms;
use crate::remedy::PlannerControl;
use crate::rules::AlertState;
use crate::silence::SilenceStore;
use crate::store::Store;

/// How long `POST /-/reload` waits for the daemon to finish the reload.
const RELOAD_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("listen address {addr:?}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

/// What the API needs from the configuration; replaced on every good reload.
#[derive(Clone, Default)]
pub struct ApiSettings {
    /// Expose collected series on `/metrics`.
    pub export_collected: bool,
    /// Bearer token for state-changing calls; `None` disables them.
    token: Option<String>,
}

// The token is a secret: never print it.
impl std::fmt::Debug for ApiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSettings")
            .field("export_collected", &self.export_collected)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ApiSettings {
    /// `token`: the bearer token state-changing calls must carry; `None` disables them.
    pub fn new(export_collected: bool, token: Option<String>) -> Self {
        ApiSettings {
            export_collected,
            token,
        }
    }
}

/// A request from the API to the daemon.
#[derive(Debug)]
pub enum ControlRequest {
    /// Reload the configuration; the answer is the error text of a rejected config.
    Reload(oneshot::Sender<Result<(), String>>),
}

/// State shared by every handler.
pub struct ApiState {
    pub metrics: Arc<SelfMetrics>,
    pub store: Arc<Store>,
    settings: RwLock<ApiSettings>,
    groups: RwLock<Vec<Arc<dyn RuleGroupView>>>,
    control: mpsc::Sender<ControlRequest>,
    /// The planner and the silences (set once the daemon started them).
    remedy: RwLock<Option<(PlannerControl, Arc<SilenceStore>)>>,
}

impl ApiState {
    pub fn new(
        metrics: Arc<SelfMetrics>,
        store: Arc<Store>,
        settings: ApiSettings,
        control: mpsc::Sender<ControlRequest>,
    ) -> Self {
        ApiState {
            metrics,
            store,
            settings: RwLock::new(settings),
            groups: RwLock::new(Vec::new()),
            control,
            remedy: RwLock::new(None),
        }
    }

    /// Hands the API the planner (incidents, approvals, breakers, budgets) and the silences.
    pub fn set_remedy(&self, planner: PlannerControl, silences: Arc<SilenceStore>) {
        *self.remedy.write().unwrap_or_else(|e| e.into_inner()) = Some((planner, silences));
    }
}

impl super::access::ApiAccess for ApiState {
    fn remedy(&self) -> Option<(PlannerControl, Arc<SilenceStore>)> {
        self.remedy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), Box<Response>> {
        authorize(self, headers)
    }

    fn alerts(&self) -> Vec<super::prom::AlertJson> {
        self.group_snapshots()
            .into_iter()
            .flat_map(|g| g.rules)
            .filter_map(|r| match r {
                RuleJson::Alerting(a) => Some(a.alerts),
                RuleJson::Recording(_) => None,
            })
            .flatten()
            .filter(|a| a.state != AlertState::Inactive)
            .collect()
    }
}

impl ApiState {
    pub fn set_settings(&self, s: ApiSettings) {
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = s;
    }

    /// Replaces the rule groups the API describes (after a (re)load).
    pub fn set_groups(&self, groups: Vec<Arc<dyn RuleGroupView>>) {
        *self.groups.write().unwrap_or_else(|e| e.into_inner()) = groups;
    }

    fn settings(&self) -> ApiSettings {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn group_snapshots(&self) -> Vec<super::prom::GroupJson> {
        let groups = self
            .groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        groups.iter().map(|g| g.snapshot()).collect()
    }
}

/// Binds the listener (separately from serving, so a bad address fails startup clearly).
pub async fn bind(addr: &str) -> Result<TcpListener, ApiError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ApiError::Bind {
            addr: addr.to_string(),
            source,
        })
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/v1/alerts", get(alerts_handler))
        .route("/api/v1/rules", get(rules_handler))
        .route("/-/reload", post(reload_handler))
        .merge(super::incidents::routes::<ApiState>())
        .merge(super::silences::routes::<ApiState>())
        .with_state(state)
}

/// Serves until `shutdown` completes, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ApiState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics_handler(State(st): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    st.metrics.store_series.set(st.store.series_count() as i64);
    let store = st.settings().export_collected.then_some(&st.store);
    match exposition::render(&st.metrics, store, now_ms(), format) {
        Ok(body) => ([(header::CONTENT_TYPE, format.content_type())], body).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n").into_response(),
    }
}

async fn alerts_handler(State(st): State<Arc<ApiState>>) -> Json<Envelope<AlertsData>> {
    let alerts = st
        .group_snapshots()
        .into_iter()
        .flat_map(|g| g.rules)
        .filter_map(|r| match r {
            RuleJson::Alerting(a) => Some(a.alerts),
            RuleJson::Recording(_) => None,
        })
        .flatten()
        .filter(|a| a.state != AlertState::Inactive)
        .collect();
    Json(Envelope::success(AlertsData { alerts }))
}

#[derive(Deserialize)]
struct RulesQuery {
    /// `alert` or `record`, as in Prometheus.
    #[serde(rename = "type")]
    kind: Option<String>,
}

async fn rules_handler(State(st): State<Arc<ApiState>>, Query(q): Query<RulesQuery>) -> Response {
    let kind = q.kind.as_deref().filter(|k| !k.is_empty());
    if let Some(k) = kind
        && k != "alert"
        && k != "record"
    {
        // Prometheus' answer to an unknown type
        let body = serde_json::json!({
            "status": "error",
            "errorType": "bad_data",
            "error": format!("unsupported type {k:?}"),
        });
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    let mut groups = st.group_snapshots();
    if let Some(kind) = kind {
        for g in &mut groups {
            g.rules.retain(|r| {
                matches!(
                    (kind, r),
                    ("alert", RuleJson::Alerting(_)) | ("record", RuleJson::Recording(_))
                )
            });
        }
    }
    Json(Envelope::success(RulesData { groups })).into_response()
}

/// Compares without an early exit, so response timing does not leak the token.
fn token_matches(expected: &str, got: &str) -> bool {
    let (a, b) = (expected.as_bytes(), got.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// Checks the bearer token of a state-changing call; `Err` is the response to send.
fn authorize(st: &ApiState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let Some(expected) = st.settings().token else {
        return Err(Box::new(
            (
                StatusCode::FORBIDDEN,
                "state-changing endpoints are disabled: set global.api_token\n",
            )
                .into_response(),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(t) if token_matches(&expected, t) => Ok(()),
        _ => Err(Box::new(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "missing or wrong bearer token\n",
            )
                .into_response(),
        )),
    }
}

async fn reload_handler(State(st): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    if let Err(resp) = authorize(&st, &headers) {
        return *resp;
    }
    let (tx, rx) = oneshot::channel();
    let unavailable = |msg: &str| (StatusCode::SERVICE_UNAVAILABLE, format!("{msg}\n"));
    if tokio::time::timeout(RELOAD_WAIT, st.control.send(ControlRequest::Reload(tx)))
        .await
        .map_or(true, |r| r.is_err())
    {
        return unavailable("the daemon is not accepting reloads").into_response();
    }
    match tokio::time::timeout(RELOAD_WAIT, rx).await {
        Ok(Ok(Ok(()))) => (StatusCode::OK, "reloaded\n").into_response(),
        Ok(Ok(Err(e))) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reload rejected: {e}\n"),
        )
            .into_response(),
        _ => unavailable("the reload did not finish in time").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(token_matches("s3cret", "s3cret"));
        assert!(!token_matches("s3cret", "s3cre"));
        assert!(!token_matches("s3cret", "s3cret!"));
        assert!(!token_matches("s3cret", ""));
    }

    #[test]
    fn settings_debug_hides_token() {
        let s = ApiSettings {
            export_collected: false,
            token: Some("hunter2".into()),
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
