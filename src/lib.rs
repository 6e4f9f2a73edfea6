//! medic: a self-healing production monitoring daemon.
//!
//! Data flows one way: `collect` and `detect` write samples into the `store`; `rules`
//! evaluates PromQL over it and emits alert transitions; `remedy` and `alert` act on them.
//! See DESIGN.md for the whole picture.

pub mod alert;
pub mod api;
pub mod collect;
pub mod config;
pub mod daemon;
pub mod detect;
pub mod journal;
pub mod remedy;
pub mod rules;
pub mod store;
