//! medic: a self-healing production monitoring daemon.
//!
//! Data flows one way (DESIGN.md has the picture): collectors and detectors write samples
//! into the store; the rule engine evaluates PromQL over it and emits alert transitions; the
//! remedy planner and the notifiers act on them.
//!
//! # Layers
//!
//! Each folder is a stage; imports point down this list, never up or sideways against it
//! (`tests/layering.rs` reads this table and checks the code against it, and that no files
//! of one folder import each other in a circle):
//!
//! | layer | may use | what it is |
//! |---|---|---|
//! | `common` | (nothing) | value types: durations, secrets, URL redaction, YAML loading with located errors, time, names, TLS, Redis connection settings, log throttling, the self-metrics registry |
//! | `store` | common | labels, samples, the in-memory series store |
//! | `journal` | common | the SQLite ledger |
//! | `promql` | common, store | the PromQL evaluator over the store |
//! | `collect` | common, store | collectors and their scheduler |
//! | `rules` | common, store, promql | rule files, the alert state machine, templates, `medic test` |
//! | `detect` | common, store, journal, promql, rules | anomaly detectors, SLOs (their burn-rate alerts are rule groups) |
//! | `silence` | common, store, journal, rules | silences and maintenance windows (Alertmanager's matchers), shared by remedy and alert |
//! | `remedy` | common, store, journal, promql, rules, silence | the planner (incidents, budgets, breakers) and the actuators |
//! | `alert` | common, store, journal, promql, rules, silence, remedy | notifiers (an escalation is a remedy value they deliver) |
//! | `api` | common, store, journal, promql, rules, detect, silence, remedy, alert | the HTTP server and its client (the CLI's) |
//! | `config` | common, store, journal, promql, collect, rules, detect, silence, remedy, alert, api | `medic.yaml`: composes each component's own config struct |
//! | `daemon` | common, store, journal, promql, collect, rules, detect, silence, remedy, alert, api, config | starts the tasks, wires the channels, reloads |
//!
//! A component takes only its own config and a small build context (defaults from
//! `global:`); `config` is the one place that knows the whole file.

pub mod alert;
pub mod api;
pub mod collect;
pub mod common;
pub mod config;
pub mod daemon;
pub mod detect;
pub mod journal;
pub mod promql;
pub mod remedy;
pub mod rules;
pub mod silence;
pub mod store;
