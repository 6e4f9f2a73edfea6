//! The HTTP API (axum): `/metrics`, `/healthz`, `/api/v1/alerts`, `/api/v1/rules`,
//! `POST /-/reload` (bearer token); the planner's incidents, actions, breakers, budgets
//! (`incidents.rs`) and Alertmanager's silence API (`silences.rs`); `client.rs` is the
//! CLI's client for all of it.

pub mod access;
pub mod client;
pub mod exposition;
pub mod incidents;
pub mod prom;
pub mod server;
pub mod silences;

pub use server::{ApiSettings, ApiState, ControlRequest};
