//! Alertmanager's silence API (v2), so `amtool` and Grafana can manage medic's silences:
//! `GET /api/v2/silences` (optional `filter=` matchers), `POST /api/v2/silences` (create or
//! update; answers `{"silenceID": ...}`), `GET /api/v2/silence/{id}`,
//! `DELETE /api/v2/silence/{id}` (expire). Creating and expiring need the bearer token.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::access::ApiAccess;
use crate::silence::{Matcher, PostableSilence, SilenceError, SilenceStore};

pub fn routes<S: ApiAccess>() -> Router<Arc<S>> {
    Router::new()
        .route("/api/v2/silences", get(list::<S>).post(create::<S>))
        .route("/api/v2/silence/{id}", get(one::<S>).delete(expire::<S>))
}

/// Alertmanager answers errors as a JSON string.
fn error(code: StatusCode, msg: impl std::fmt::Display) -> Response {
    (code, Json(json!(msg.to_string()))).into_response()
}

fn store(st: &impl ApiAccess) -> Result<Arc<SilenceStore>, Box<Response>> {
    st.remedy().map(|(_, s)| s).ok_or_else(|| {
        Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "silences are not available",
        ))
    })
}

fn status_of(e: &SilenceError) -> StatusCode {
    match e {
        SilenceError::NotFound(_) => StatusCode::NOT_FOUND,
        SilenceError::Journal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

async fn list<S: ApiAccess>(State(st): State<Arc<S>>, RawQuery(q): RawQuery) -> Response {
    let s = match store(&*st) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    // `filter=` matchers (repeatable, amtool sends them): keep silences that have each one
    let mut filters = Vec::new();
    for pair in q.as_deref().unwrap_or("").split('&') {
        let Some(v) = pair.strip_prefix("filter=") else {
            continue;
        };
        let v = percent_decode(v);
        let v = v.trim_start_matches('{').trim_end_matches('}');
        for part in v.split(',').filter(|p| !p.trim().is_empty()) {
            match Matcher::parse(part.trim()) {
                Ok(m) => filters.push(m),
                Err(e) => return error(StatusCode::BAD_REQUEST, e),
            }
        }
    }
    let all: Vec<_> = s
        .list()
        .into_iter()
        .filter(|sil| filters.iter().all(|f| sil.matchers.contains(f)))
        .collect();
    Json(all).into_response()
}

async fn create<S: ApiAccess>(
    State(st): State<Arc<S>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = st.authorize(&headers) {
        return *r;
    }
    let s = match store(&*st) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let p: PostableSilence = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid silence: {e}")),
    };
    match s.upsert(p) {
        Ok(id) => {
            tracing::info!(silence = %id, "silence created or updated");
            Json(json!({"silenceID": id})).into_response()
        }
        Err(e) => error(status_of(&e), e),
    }
}

async fn one<S: ApiAccess>(State(st): State<Arc<S>>, Path(id): Path<String>) -> Response {
    let s = match store(&*st) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match s.get(&id) {
        Some(sil) => Json(sil).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("silence {id} not found")),
    }
}

async fn expire<S: ApiAccess>(
    State(st): State<Arc<S>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = st.authorize(&headers) {
        return *r;
    }
    let s = match store(&*st) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match s.expire(&id) {
        Ok(()) => {
            tracing::info!(silence = %id, "silence expired");
            StatusCode::OK.into_response()
        }
        Err(e) => error(status_of(&e), e),
    }
}

/// `%XX` and `+` decoding of a query value.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(x) => {
                        out.push(x);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            x => out.push(x),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
