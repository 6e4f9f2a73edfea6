//! `medic.yaml`: the schema (serde structs; the doc comment on each field is its documentation),
//! loading and validation. Each component owns its own config struct in its own module; this
//! module composes them.

pub mod duration;

pub use duration::Duration;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// The whole `medic.yaml`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Settings that apply to every component.
    #[serde(default)]
    pub global: GlobalConfig,
    /// Collectors by name; the name becomes the `collector` label of medic's self-metrics.
    #[serde(default)]
    pub collectors: BTreeMap<String, crate::collect::CollectorConfig>,
    /// Rule files to load (globs, relative to the config file's folder).
    #[serde(default)]
    pub rule_files: Vec<String>,
    /// Actuator instances by name; `remediate:` entries name them as `target`.
    #[serde(default)]
    pub actuators: BTreeMap<String, crate::remedy::ActuatorConfig>,
    /// Notifiers by name; every alert transition goes to each of them.
    #[serde(default)]
    pub notifiers: BTreeMap<String, crate::alert::NotifierConfig>,
    /// Global limits and switches for remediation.
    #[serde(default)]
    pub remedy: crate::remedy::RemedyConfig,
    /// Anomaly detectors by name (the `detector` label).
    #[serde(default)]
    pub anomaly_detectors: BTreeMap<String, crate::detect::AnomalyConfig>,
    /// SLOs by name (the `slo` label).
    #[serde(default)]
    pub slos: BTreeMap<String, crate::detect::SloConfig>,
}

/// Settings that apply to every component.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalConfig {
    /// How often collectors run unless they set their own `interval`.
    #[serde(default = "default_interval")]
    pub collect_interval: Duration,
    /// How long a collector may take unless it sets its own `timeout`.
    #[serde(default = "default_timeout")]
    pub collect_timeout: Duration,
    /// How often rule groups are evaluated unless a group sets its own `interval`.
    #[serde(default = "default_interval")]
    pub evaluation_interval: Duration,
    /// Labels added to every alert sent to a notifier.
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// Address of the HTTP API and `/metrics`. Loopback by default.
    #[serde(default = "default_listen")]
    pub listen_address: String,
    /// Where the journal and spools live.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// File holding the bearer token required by state-changing API calls.
    #[serde(default)]
    pub api_token_file: Option<PathBuf>,
    /// Also expose the collected series on `/metrics` (medic's own metrics are always there).
    #[serde(default)]
    pub export_collected: bool,
}

fn default_interval() -> Duration {
    Duration::from_secs(15)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_listen() -> String {
    "127.0.0.1:9464".to_string()
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/medic")
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            collect_interval: default_interval(),
            collect_timeout: default_timeout(),
            evaluation_interval: default_interval(),
            external_labels: BTreeMap::new(),
            listen_address: default_listen(),
            state_dir: default_state_dir(),
            api_token_file: None,
            export_collected: false,
        }
    }
}
