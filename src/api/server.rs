//! The axum server: routes, shared state, bearer-token guard for state-changing calls, and
//! the connection limits that keep slow or idle clients from holding medic's descriptors.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::common::Duration as ConfigDuration;

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

/// `global.http`: limits on the API's connections, so slow or idle clients can neither hold
/// connections for ever nor take the descriptors that collectors and actions need. Read at
/// start (like `listen_address`); a reload does not change them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Time a client has to send a request's headers, counted from when it connects and
    /// again from each response sent: so also how long an idle keep-alive connection stays
    /// open. Then the connection is closed. Default 10s.
    #[serde(default = "default_header_timeout")]
    pub header_timeout: ConfigDuration,
    /// Longest a connection may go without a byte moving either way while a request is
    /// under way (a stalled upload, a client that stops reading its response); then it is
    /// closed. Keep it above the slowest endpoint (`POST /-/reload` waits up to 60s).
    /// Default 120s.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: ConfigDuration,
    /// Most connections served at once; further clients wait in the kernel's accept queue
    /// (holding no descriptor of medic's) until one closes. Capped at a quarter of the
    /// process' open-file limit, so collectors and actions always have descriptors left.
    /// Default 256.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

fn default_header_timeout() -> ConfigDuration {
    ConfigDuration::from_secs(10)
}
fn default_idle_timeout() -> ConfigDuration {
    ConfigDuration::from_secs(120)
}
fn default_max_connections() -> usize {
    256
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_timeout: default_header_timeout(),
            idle_timeout: default_idle_timeout(),
            max_connections: default_max_connections(),
        }
    }
}

impl HttpConfig {
    /// `max_connections`, capped at a quarter of the open-file limit (`RLIMIT_NOFILE`).
    pub fn connection_limit(&self) -> usize {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct it is given and has no other effect.
        let files = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
        } else {
            1024
        };
        self.max_connections.clamp(1, (files / 4).max(1))
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

/// How long shutdown waits for in-flight requests.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// Serves with the default [`HttpConfig`] until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ApiState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, HttpConfig::default(), shutdown).await
}

/// Serves until `shutdown` completes, then lets in-flight requests finish (for a few
/// seconds). Each connection gets hyper's header read timeout and a stall timeout, and at
/// most `connection_limit()` are served at once.
pub async fn serve_with(
    listener: TcpListener,
    state: Arc<ApiState>,
    limits: HttpConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let app = router(state);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.connection_limit()));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout.std());
    let idle = limits.idle_timeout.std();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // a slot first: while every slot is taken, new clients wait in the accept queue
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // closed: never happens, the semaphore lives here
            },
        };
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning
                    tracing::warn!(error = %e, "API: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn = http.serve_connection(TokioIo::new(Stall::new(stream, idle)), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // errors are the client's (timeouts, resets): nothing to report
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_WAIT, graceful.shutdown()).await;
    Ok(())
}

/// A connection that fails once no byte has moved for `limit` while hyper waits on it, so
/// a client that stalls mid-request or stops reading its response is cut.
struct Stall<T> {
    io: T,
    limit: Duration,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl<T> Stall<T> {
    fn new(io: T, limit: Duration) -> Self {
        Stall {
            io,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }

    fn progress(&mut self) {
        let at = tokio::time::Instant::now() + self.limit;
        self.deadline.as_mut().reset(at);
    }

    /// On a pending read or write: an error once the deadline has passed.
    fn check(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Error> {
        self.deadline
            .as_mut()
            .poll(cx)
            .map(|()| std::io::Error::new(std::io::ErrorKind::TimedOut, "connection stalled"))
    }
}

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

impl<T: AsyncRead + Unpin> AsyncRead for Stall<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.progress();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.check(cx).map(Err),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Stall<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, data) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    self.progress();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.check(cx).map(Err),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Pending => self.check(cx).map(Err),
            r => r,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

async fn metrics_handler(State(st): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    st.metrics.store_series.set(st.store.series_count() as i64);
    st.metrics
        .store_series_dropped
        .inc_by(st.store.take_dropped());
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
    fn connection_limit_leaves_three_quarters_of_the_files() {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        let files = lim.rlim_cur as usize;
        let huge = HttpConfig {
            max_connections: usize::MAX,
            ..HttpConfig::default()
        };
        assert_eq!(huge.connection_limit(), (files / 4).max(1));
        let small = HttpConfig {
            max_connections: 3,
            ..HttpConfig::default()
        };
        assert_eq!(small.connection_limit(), 3.min(files / 4).max(1));
    }

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
