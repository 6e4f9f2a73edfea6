//! The HTTP API (axum): `/metrics`, `/healthz`, `/api/v1/alerts`, `/api/v1/rules`,
//! `POST /-/reload` (bearer token).

pub mod exposition;
pub mod prom;
pub mod server;

pub use server::{ApiSettings, ApiState, ControlRequest};
