//! The HTTP API (axum): `/metrics`, `/healthz`, `/api/v1/...`.

pub mod metrics;
