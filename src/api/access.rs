//! What the planner's and the silences' handlers need from the server's state, as a trait,
//! so their files do not import the server (which imports them to register their routes).

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::response::Response;

use super::prom::AlertJson;
use crate::remedy::PlannerControl;
use crate::silence::SilenceStore;

pub trait ApiAccess: Send + Sync + 'static {
    /// The planner and the silences, once the daemon started them.
    fn remedy(&self) -> Option<(PlannerControl, Arc<SilenceStore>)>;
    /// Checks the bearer token of a state-changing call; `Err` is the response to send.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), Box<Response>>;
    /// Pending and firing alerts.
    fn alerts(&self) -> Vec<AlertJson>;
}
