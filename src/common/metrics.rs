//! medic's own metrics (prometheus-client). Components get an `Arc<SelfMetrics>` and update
//! the families they own; `/metrics` encodes the registry.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label pairs of one child of a family, e.g. `[("collector", "host")]`.
pub type LabelPairs = Vec<(String, String)>;

type HistogramFamily = Family<LabelPairs, Histogram, fn() -> Histogram>;

fn verify_histogram() -> Histogram {
    // 1 s .. ~9 h
    Histogram::new(exponential_buckets(1.0, 2.0, 16))
}

fn duration_histogram() -> Histogram {
    // 1 ms .. ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every self-metric family, registered once.
pub struct SelfMetrics {
    pub registry: Registry,
    /// `medic_collector_duration_seconds{collector}`: duration of the last round.
    pub collector_duration: Family<LabelPairs, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// `medic_collector_errors_total{collector}`.
    pub collector_errors: Family<LabelPairs, Counter>,
    /// `medic_rule_group_last_duration_seconds{rule_group}`.
    pub rule_group_duration: Family<LabelPairs, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// `medic_rule_evaluation_failures_total{rule_group}`.
    pub rule_eval_failures: Family<LabelPairs, Counter>,
    /// `medic_actions_total{rule,action,outcome}`.
    pub actions_total: Family<LabelPairs, Counter>,
    /// `medic_action_duration_seconds{rule,action}`.
    pub action_duration: HistogramFamily,
    /// `medic_notifications_total{notifier,outcome}`.
    pub notifications_total: Family<LabelPairs, Counter>,
    /// `medic_config_last_reload_successful`.
    pub config_last_reload_successful: Gauge,
    /// `medic_config_last_reload_success_timestamp_seconds`.
    pub config_last_reload_success_timestamp: Gauge,
    /// `medic_config_rule_files_matched{pattern}`: files each `rule_files` glob matched at
    /// the last good (re)load.
    pub config_rule_files_matched: Family<LabelPairs, Gauge>,
    /// `medic_config_rule_patterns_emptied_total`: reloads at which a `rule_files` glob
    /// that matched files before matched none.
    pub config_rule_patterns_emptied: Counter,
    /// `medic_rule_evaluations_total{rule_group}`: evaluations of the group, failed or not.
    pub rule_evaluations: Family<LabelPairs, Counter>,
    /// `medic_rule_group_last_evaluation_timestamp_seconds{rule_group}`.
    pub rule_group_last_evaluation: Family<LabelPairs, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// `medic_store_series`: series held in the in-memory store.
    pub store_series: Gauge,
    /// `medic_store_series_limit`: `global.max_series` (0: no cap).
    pub store_series_limit: Gauge,
    /// `medic_store_series_dropped_total`: samples of new series dropped, store full.
    pub store_series_dropped: Counter,
    /// `medic_collector_new_series_dropped_total{collector,reason}`: samples of new series
    /// of a collector dropped (`reason`: `max_series` or `new_series_limit`).
    pub collector_series_dropped: Family<LabelPairs, Counter>,
    /// `medic_build_info{version}`: always 1.
    pub build_info: Family<LabelPairs, Gauge>,
    /// `medic_start_time_seconds`: when the process started (Unix time).
    pub start_time: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// `medic_incidents_total{rule,outcome}`: closed incidents by how they ended.
    pub incidents_total: Family<LabelPairs, Counter>,
    /// `medic_incidents_open`: incidents not closed.
    pub incidents_open: Gauge,
    /// `medic_incident_time_to_verified_seconds{rule}`: from firing to a verified action.
    pub incident_time_to_verified: HistogramFamily,
    /// `medic_escalations_total{rule,reason}`.
    pub escalations_total: Family<LabelPairs, Counter>,
    /// `medic_breaker_state{target}`: 0 closed, 1 half-open, 2 open.
    pub breaker_state: Family<LabelPairs, Gauge>,
    /// `medic_budget_remaining{scope,name}`: tokens left in each remediation budget.
    pub budget_remaining: Family<LabelPairs, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// `medic_actions_awaiting_approval`.
    pub actions_awaiting_approval: Gauge,
}

/// Shorthand for building a label set: `labels(&[("collector", name)])`.
pub fn labels(pairs: &[(&str, &str)]) -> LabelPairs {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Default for SelfMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("medic");
        let collector_duration = Family::default();
        registry.register(
            "collector_duration_seconds",
            "Duration of the collector's last round",
            collector_duration.clone(),
        );
        let collector_errors = Family::default();
        registry.register(
            "collector_errors",
            "Collector rounds that failed or timed out",
            collector_errors.clone(),
        );
        let rule_group_duration = Family::default();
        registry.register(
            "rule_group_last_duration_seconds",
            "Duration of the rule group's last evaluation",
            rule_group_duration.clone(),
        );
        let rule_eval_failures = Family::default();
        registry.register(
            "rule_evaluation_failures",
            "Rule evaluations that failed",
            rule_eval_failures.clone(),
        );
        let actions_total = Family::default();
        registry.register(
            "actions",
            "Remediation actions by outcome",
            actions_total.clone(),
        );
        let action_duration: HistogramFamily = Family::new_with_constructor(duration_histogram);
        registry.register(
            "action_duration_seconds",
            "Duration of remediation actions",
            action_duration.clone(),
        );
        let notifications_total = Family::default();
        registry.register(
            "notifications",
            "Notifications sent by outcome",
            notifications_total.clone(),
        );
        let config_last_reload_successful = Gauge::default();
        registry.register(
            "config_last_reload_successful",
            "Whether the last configuration reload succeeded",
            config_last_reload_successful.clone(),
        );
        let config_last_reload_success_timestamp = Gauge::default();
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "Time of the last successful configuration reload",
            config_last_reload_success_timestamp.clone(),
        );
        let config_rule_files_matched: Family<LabelPairs, Gauge> = Family::default();
        registry.register(
            "config_rule_files_matched",
            "Files each rule_files glob matched at the last good (re)load",
            config_rule_files_matched.clone(),
        );
        let config_rule_patterns_emptied = Counter::default();
        registry.register(
            "config_rule_patterns_emptied",
            "Times a rule_files glob that matched files before matched none at a reload",
            config_rule_patterns_emptied.clone(),
        );
        let rule_evaluations = Family::default();
        registry.register(
            "rule_evaluations",
            "Evaluations of the rule group",
            rule_evaluations.clone(),
        );
        let rule_group_last_evaluation = Family::default();
        registry.register(
            "rule_group_last_evaluation_timestamp_seconds",
            "When the rule group was last evaluated",
            rule_group_last_evaluation.clone(),
        );
        let store_series = Gauge::default();
        registry.register(
            "store_series",
            "Series held in the in-memory store",
            store_series.clone(),
        );
        let store_series_limit = Gauge::default();
        registry.register(
            "store_series_limit",
            "Most series the store holds (global.max_series; 0: no cap)",
            store_series_limit.clone(),
        );
        let store_series_dropped = Counter::default();
        registry.register(
            "store_series_dropped",
            "Samples of new series dropped because the store held global.max_series series",
            store_series_dropped.clone(),
        );
        let collector_series_dropped = Family::default();
        registry.register(
            "collector_new_series_dropped",
            "Samples of a collector's new series dropped, by reason (max_series, new_series_limit)",
            collector_series_dropped.clone(),
        );
        let build_info: Family<LabelPairs, Gauge> = Family::default();
        build_info
            .get_or_create(&labels(&[("version", env!("CARGO_PKG_VERSION"))]))
            .set(1);
        registry.register("build_info", "medic's version", build_info.clone());
        let start_time = Gauge::default();
        start_time.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        );
        registry.register(
            "start_time_seconds",
            "When the process started (Unix time)",
            start_time.clone(),
        );
        let incidents_total = Family::default();
        registry.register(
            "incidents",
            "Closed incidents by rule and outcome",
            incidents_total.clone(),
        );
        let incidents_open = Gauge::default();
        registry.register(
            "incidents_open",
            "Incidents not closed",
            incidents_open.clone(),
        );
        let incident_time_to_verified: HistogramFamily =
            Family::new_with_constructor(verify_histogram);
        registry.register(
            "incident_time_to_verified_seconds",
            "Time from an alert firing to a verified remediation",
            incident_time_to_verified.clone(),
        );
        let escalations_total = Family::default();
        registry.register(
            "escalations",
            "Incidents escalated to a person, by reason",
            escalations_total.clone(),
        );
        let breaker_state = Family::default();
        registry.register(
            "breaker_state",
            "Circuit breaker per target: 0 closed, 1 half-open, 2 open",
            breaker_state.clone(),
        );
        let budget_remaining = Family::default();
        registry.register(
            "budget_remaining",
            "Tokens left in each remediation budget",
            budget_remaining.clone(),
        );
        let actions_awaiting_approval = Gauge::default();
        registry.register(
            "actions_awaiting_approval",
            "Remediation steps waiting for a person's approval",
            actions_awaiting_approval.clone(),
        );
        SelfMetrics {
            registry,
            incidents_total,
            incidents_open,
            incident_time_to_verified,
            escalations_total,
            breaker_state,
            budget_remaining,
            actions_awaiting_approval,
            collector_duration,
            collector_errors,
            rule_group_duration,
            rule_eval_failures,
            actions_total,
            action_duration,
            notifications_total,
            config_last_reload_successful,
            config_last_reload_success_timestamp,
            config_rule_files_matched,
            config_rule_patterns_emptied,
            rule_evaluations,
            rule_group_last_evaluation,
            store_series,
            store_series_limit,
            store_series_dropped,
            collector_series_dropped,
            build_info,
            start_time,
        }
    }
}
