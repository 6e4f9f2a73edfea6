//! Remediation: the planner decides whether and when a `remediate:` step runs (incidents,
//! verification, escalation, reverts, budgets, breakers, modes, silences); actuators carry
//! it out. `policy.rs` is `remedy:` in medic.yaml, `budget.rs` and `breaker.rs` the two
//! small mechanisms the planner checks, `escalation.rs` what it hands the notifiers.
//!
//! Actuators never read the store: the planner hands them an [`ActionRequest`] carrying
//! everything they need (the exec plugin protocol v1 object) and gets an [`ActionOutcome`]
//! back. `actuator.rs` is that contract; `actuators/` holds one file per kind and composes
//! them; `planner.rs` is the state machine that uses them.

pub mod actuator;
pub mod actuators;
pub mod breaker;
pub mod budget;
pub mod escalation;
pub mod planner;
pub mod policy;

pub use actuator::{
    ActionAlert, ActionOutcome, ActionRequest, ActionStatus, Actuator, Actuators, RemedyError,
};
pub use actuators::{ActuatorConfig, StepError, build, validate_ladder, validate_step};
pub use escalation::{Escalation, Event};
pub use planner::{
    ActionRecord, Incident, Phase, Planner, PlannerControl, PlannerDeps, PlannerHandle,
    PlannerStatus, StepState,
};
pub use policy::{Budget, RemedyConfig};
