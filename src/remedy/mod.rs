//! Remediation: the planner decides whether and when a `remediate:` step runs (cooldown,
//! rate limits, timeouts, dry-run); actuators carry it out.
//!
//! Actuators never read the store: the planner hands them an [`ActionRequest`] carrying
//! everything they need (the exec plugin protocol v1 object) and gets an [`ActionOutcome`]
//! back. `actuator.rs` is that contract; `actuators/` holds one file per kind and composes
//! them; `planner.rs` is the state machine that uses them.

pub mod actuator;
pub mod actuators;
pub mod planner;

pub use actuator::{
    ActionAlert, ActionOutcome, ActionRequest, ActionStatus, Actuator, Actuators, RemedyError,
};
pub use actuators::{ActuatorConfig, StepError, build, validate_ladder, validate_step};
pub use planner::{ActionRecord, Planner, PlannerHandle, RemedyConfig};
