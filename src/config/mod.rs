//! `medic.yaml`: the schema (serde structs; the doc comment on each field is its documentation),
//! loading and validation. Each component owns its own config struct in its own module; this
//! module composes them.

pub mod check;
pub mod validate;

pub use validate::{Issue, Severity};

use crate::collect::{BuildContext, BuildError, Collector};
use crate::common::yaml as load;
use crate::common::{Duration, LoadError, Secret, YamlError};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    /// Allow a reload that leaves no collector or no rule (by default such a reload is
    /// refused and the running config kept: an emptied file or a glob that lost its
    /// files would otherwise stop all monitoring).
    #[serde(default)]
    pub allow_empty: bool,
    /// The file this config was read from (empty when built in code).
    #[serde(skip)]
    pub path: PathBuf,
    /// The file held nothing but comments and blank lines (an error: see `validate`).
    #[serde(skip)]
    pub empty_file: bool,
}

/// Every schema error of `text`, as far as the YAML library allows: it stops at the first,
/// so each top-level section, and in a failing section each of its entries (collectors,
/// actuators, ... by name), is parsed on its own with the other lines blanked, so lines and
/// columns stay those of the file. Empty when no part fails alone.
pub fn schema_errors(path: &Path, text: &str) -> Vec<YamlError> {
    let lines: Vec<&str> = text.split('\n').collect();
    let content = |l: &str| {
        let t = l.trim_start();
        !t.is_empty() && !t.starts_with('#')
    };
    let indent = |l: &str| l.len() - l.trim_start_matches(' ').len();
    // [start, end) ranges of lines whose first line sits at `col`, within [from, to)
    let ranges = |from: usize, to: usize, col: usize| -> Vec<(usize, usize)> {
        let starts: Vec<usize> = (from..to)
            .filter(|&i| content(lines[i]) && indent(lines[i]) == col)
            .filter(|&i| !matches!(lines[i].trim(), "---" | "..."))
            .collect();
        starts
            .iter()
            .enumerate()
            .map(|(k, &s)| (s, starts.get(k + 1).copied().unwrap_or(to)))
            .collect()
    };
    let only = |keep: &[(usize, usize)]| -> String {
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                if keep.iter().any(|(s, e)| (*s..*e).contains(&i)) {
                    *l
                } else {
                    ""
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let parse = |keep: &[(usize, usize)]| Config::parse_str(path, &only(keep)).err();
    let mut out: Vec<YamlError> = Vec::new();
    let sections = ranges(0, lines.len(), 0);
    if sections.len() < 2 && sections.iter().all(|(s, e)| e - s < 2) {
        return out;
    }
    for &(s, e) in &sections {
        let Some(err) = parse(&[(s, e)]) else {
            continue;
        };
        let col = (s + 1..e)
            .filter(|&i| content(lines[i]))
            .map(|i| indent(lines[i]))
            .min();
        let entries = col.map(|c| ranges(s + 1, e, c)).unwrap_or_default();
        let mut found = Vec::new();
        if entries.len() >= 2 {
            for &(cs, ce) in &entries {
                found.extend(parse(&[(s, s + 1), (cs, ce)]));
            }
        }
        if found.is_empty() {
            found.push(err);
        }
        out.extend(found);
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|e| seen.insert(e.to_string()));
    out
}

/// Whether YAML text holds no content: only blank lines, comments, document markers or a
/// lone null.
fn is_blank_yaml(text: &str) -> bool {
    text.lines()
        .map(|l| l.split_once('#').map_or(l, |(before, _)| before).trim())
        .all(|l| matches!(l, "" | "---" | "..." | "~" | "null"))
}

/// Settings that apply to every component.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalConfig {
    /// How often collectors run unless they set their own `interval`.
    #[serde(default = "default_interval")]
    pub collect_interval: Duration,
    /// How long a collector may take unless it sets its own `timeout`. Capped at the
    /// collector's interval when that is shorter.
    #[serde(default = "default_timeout")]
    pub collect_timeout: Duration,
    /// How often rule groups are evaluated unless a group sets its own `interval`.
    #[serde(default = "default_interval")]
    pub evaluation_interval: Duration,
    /// Labels added to every alert sent to a notifier.
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// Address (`host:port`) of the HTTP API and `/metrics`. Loopback by default.
    #[serde(default = "default_listen")]
    pub listen_address: String,
    /// Where the journal and spools live; relative to the config file's folder. Default:
    /// `$STATE_DIRECTORY` when set (systemd's `StateDirectory=`), else `/var/lib/medic` for
    /// root, else `$XDG_STATE_HOME/medic` (`~/.local/state/medic`).
    #[serde(
        default = "default_state_dir",
        deserialize_with = "load::deserialize_path"
    )]
    pub state_dir: PathBuf,
    /// Bearer token required by state-changing API calls (`{file: ...}` or `{env: ...}`).
    /// None: those calls are refused.
    #[serde(default)]
    pub api_token: Option<Secret>,
    /// Also expose the collected series on `/metrics` (medic's own metrics are always there).
    #[serde(default)]
    pub export_collected: bool,
    /// Most series the in-memory store holds, from every collector, rule and detector
    /// together; it bounds medic's memory (about 1 KiB a series with 15 s samples and
    /// 10 minutes' retention). Samples of further new series are dropped, counted in
    /// `medic_store_series_dropped_total` and logged; series already held carry on.
    /// 0 means no cap. Default 100000.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
    /// Limits on the API's connections: `header_timeout`, `idle_timeout`, `max_connections`.
    #[serde(default)]
    pub http: crate::api::server::HttpConfig,
    /// Minimum time between two announcements of a firing or resolved alert to the
    /// notifiers (Prometheus' `--rules.alert.resend-delay`).
    #[serde(default = "default_resend_delay")]
    pub alert_resend_delay: Duration,
    /// Alert state (`activeAt`, firing) saved in the journal is restored at start when
    /// medic was down for at most this long (Prometheus'
    /// `--rules.alert.for-outage-tolerance`); after a longer outage alerts start afresh.
    #[serde(default = "default_outage_tolerance")]
    pub alert_for_outage_tolerance: Duration,
    /// A pending alert restored at start fires no sooner than this after the start,
    /// unless its `for` is shorter (Prometheus' `--rules.alert.for-grace-period`).
    #[serde(default = "default_for_grace_period")]
    pub alert_for_grace_period: Duration,
}

fn default_max_series() -> usize {
    100_000
}
fn default_resend_delay() -> Duration {
    Duration::from_secs(60)
}
fn default_outage_tolerance() -> Duration {
    Duration::from_secs(3600)
}
fn default_for_grace_period() -> Duration {
    Duration::from_secs(600)
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

/// See [`GlobalConfig::state_dir`].
pub fn default_state_dir() -> PathBuf {
    fn env_path(name: &str) -> Option<PathBuf> {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    }
    if let Some(dir) = std::env::var("STATE_DIRECTORY")
        .ok()
        .and_then(|v| v.split(':').next().map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty())
    {
        return dir;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/medic");
    }
    if let Some(x) = env_path("XDG_STATE_HOME") {
        return x.join("medic");
    }
    if let Some(home) = env_path("HOME") {
        return home.join(".local/state/medic");
    }
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
            api_token: None,
            export_collected: false,
            max_series: default_max_series(),
            http: Default::default(),
            alert_resend_delay: default_resend_delay(),
            alert_for_outage_tolerance: default_outage_tolerance(),
            alert_for_grace_period: default_for_grace_period(),
        }
    }
}

/// A config that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Every schema error found (see [`schema_errors`]).
    #[error("{}", errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Schema { errors: Vec<YamlError> },
    #[error("{}: invalid configuration:\n{}", path.display(), issues.iter().map(|i| format!("  {i}")).collect::<Vec<_>>().join("\n"))]
    Invalid { path: PathBuf, issues: Vec<Issue> },
}

impl Config {
    /// What collector `name`'s `build()` gets: the defaults of `global:`.
    pub fn collector_context<'a>(&self, name: &'a str) -> BuildContext<'a> {
        BuildContext {
            name,
            default_interval: self.global.collect_interval,
            default_timeout: self.global.collect_timeout,
        }
    }

    /// Builds every collector (only those named in `only`, when it is not empty); every
    /// error, not just the first.
    pub fn build_collectors(
        &self,
        only: &[String],
    ) -> Result<Vec<Arc<dyn Collector>>, Vec<BuildError>> {
        let mut ok = Vec::new();
        let mut errs = Vec::new();
        for name in only {
            if !self.collectors.contains_key(name) {
                errs.push(BuildError {
                    collector: name.clone(),
                    message: "no collector of that name in the config".into(),
                });
            }
        }
        for (name, c) in &self.collectors {
            if !only.is_empty() && !only.contains(name) {
                continue;
            }
            match c.build(&self.collector_context(name)) {
                Ok(c) => ok.push(c),
                Err(e) => errs.push(e),
            }
        }
        if errs.is_empty() { Ok(ok) } else { Err(errs) }
    }

    /// Builds the anomaly detectors and SLOs (SLO buckets in `journal` when given); every
    /// error, not just the first.
    pub fn build_detectors(
        &self,
        journal: Option<&crate::journal::Journal>,
    ) -> Result<crate::detect::Detectors, crate::detect::DetectErrors> {
        crate::detect::Detectors::build(
            &self.anomaly_detectors,
            &self.slos,
            self.global.evaluation_interval,
            journal,
        )
    }

    /// Reads, parses and validates a config file (the config itself, not the rule files it
    /// names: see [`validate::check`] for those). Warnings are returned, errors fail.
    pub fn load(path: &Path) -> Result<(Config, Vec<Issue>), ConfigError> {
        let config = Config::read(path)?;
        let issues = config.validate();
        if issues.iter().any(|i| i.severity == Severity::Error) {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                issues,
            });
        }
        Ok((config, issues))
    }

    /// Reads and parses a config file without validating it; a file that does not match
    /// the schema is reported with every schema error found, not only the first.
    pub fn read(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse_str(path, &text).map_err(|first| {
            let mut errors = schema_errors(path, &text);
            if errors.is_empty() {
                errors.push(first);
            }
            ConfigError::Schema { errors }
        })
    }

    /// Reads and parses a config file without validating it.
    pub fn parse_file(path: &Path) -> Result<Config, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Config::parse_str(path, &text)?)
    }

    /// Parses config text as if read from `path` (used by tests and `medic check`).
    pub fn parse_str(path: &Path, text: &str) -> Result<Config, YamlError> {
        let mut config: Config = load::parse_yaml(path, text)?;
        config.path = path.to_path_buf();
        config.empty_file = is_blank_yaml(text);
        Ok(config)
    }

    /// The folder relative paths and `rule_files` globs resolve against.
    pub fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// How many files each glob of `rule_files` matches now (plain paths left out).
    pub fn rule_glob_matches(&self) -> Vec<(String, usize)> {
        let dir = self.dir();
        self.rule_files
            .iter()
            .filter(|p| p.contains(['*', '?', '[']))
            .map(|p| {
                let full = dir.join(p).to_string_lossy().into_owned();
                let n = glob::glob(&full)
                    .map(|it| it.filter_map(Result::ok).filter(|f| f.is_file()).count())
                    .unwrap_or(0);
                (p.clone(), n)
            })
            .collect()
    }

    /// The rule files `rule_files` names, sorted within each pattern, without duplicates.
    /// A pattern without glob characters must name an existing file; a glob may match none.
    pub fn rule_file_paths(&self) -> Result<Vec<PathBuf>, Vec<Issue>> {
        let dir = self.dir();
        let mut out: Vec<PathBuf> = Vec::new();
        let mut issues = Vec::new();
        for (i, pattern) in self.rule_files.iter().enumerate() {
            let key = format!("rule_files[{i}]");
            let full = if Path::new(pattern).is_absolute() {
                PathBuf::from(pattern)
            } else {
                dir.join(pattern)
            };
            let full_s = full.to_string_lossy().to_string();
            let is_glob = pattern.contains(['*', '?', '[']);
            if !is_glob {
                if full.is_file() {
                    if !out.contains(&full) {
                        out.push(full);
                    }
                } else {
                    issues.push(Issue::error(
                        key,
                        format!("rule file {full_s} does not exist"),
                    ));
                }
                continue;
            }
            match glob::glob(&full_s) {
                Err(e) => issues.push(Issue::error(key, format!("bad glob {pattern:?}: {e}"))),
                Ok(paths) => {
                    let mut found: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
                    found.sort();
                    for p in found {
                        if p.is_file() && !out.contains(&p) {
                            out.push(p);
                        }
                    }
                }
            }
        }
        if issues.is_empty() {
            Ok(out)
        } else {
            Err(issues)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::CollectorConfig;

    fn parse(text: &str) -> Result<Config, YamlError> {
        Config::parse_str(Path::new("/etc/medic/medic.yaml"), text)
    }

    #[test]
    fn defaults_and_durations() {
        let c = parse("global:\n  collect_interval: 500ms\ncollectors:\n  host: {type: host}\n")
            .unwrap();
        assert_eq!(c.global.collect_interval, Duration::from_millis(500));
        assert_eq!(c.global.listen_address, "127.0.0.1:9464");
        assert!(matches!(c.collectors["host"], CollectorConfig::Host(_)));
        assert!(c.validate().is_empty(), "{:?}", c.validate());
    }

    #[test]
    fn unknown_top_level_key_names_file_line_column() {
        let e = parse("global:\n  collect_interval: 5s\n  colect_timeout: 1s\n").unwrap_err();
        assert_eq!((e.line, e.column), (Some(3), Some(3)), "{e}");
        let s = e.to_string();
        assert!(s.contains("/etc/medic/medic.yaml:3:3"), "{s}");
        assert!(s.contains("colect_timeout"), "{s}");
    }

    #[test]
    fn unknown_key_in_tagged_collector_is_rejected_with_location() {
        let e = parse(
            "collectors:\n  web:\n    type: http_probe\n    url: http://x\n    tiemout: 1s\n",
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(s.contains("tiemout"), "{s}");
        assert!(s.contains("/etc/medic/medic.yaml"), "{s}");
        assert_eq!((e.line, e.column), (Some(5), Some(5)), "{s}");
        assert!(s.contains("/etc/medic/medic.yaml:5:5"), "{s}");
        // also inside a flow mapping
        let e = parse("collectors:\n  web: {type: http_probe, url: 'http://x', tiemout: 1s}\n")
            .unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.to_string().contains("tiemout"), "{e}");
    }

    #[test]
    fn unknown_collector_type_and_bad_duration() {
        let e = parse("collectors:\n  x: {type: nope}\n").unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        let e = parse("global:\n  collect_interval: 5 minutes\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(
            e.to_string()
                .contains("expected a number followed by a unit"),
            "{e}"
        );
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let c = parse("global:\n  state_dir: state\n  api_token: {file: token}\n").unwrap();
        assert_eq!(c.global.state_dir, PathBuf::from("/etc/medic/state"));
        assert_eq!(
            c.global.api_token,
            Some(Secret::File(PathBuf::from("/etc/medic/token")))
        );
        assert_eq!(c.dir(), PathBuf::from("/etc/medic"));
    }

    #[test]
    fn validation_finds_semantic_errors() {
        let c = parse(
            "global:\n  listen_address: localhost\n  evaluation_interval: 0s\n  external_labels: {9bad: x}\ncollectors:\n  web: {type: http_probe, url: 'ftp://x', interval: 1s, timeout: 2s}\n  web2: {type: http_probe, url: 'ftp://x'}\nrule_files: [missing.yaml, 'rules.d/*.yaml']\n",
        )
        .unwrap();
        let issues = c.validate();
        let text: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
        let has = |s: &str| text.iter().any(|t| t.contains(s));
        assert!(has("global.listen_address"), "{text:?}");
        assert!(has("global.evaluation_interval"), "{text:?}");
        assert!(has("global.external_labels.9bad"), "{text:?}");
        assert!(has("timeout 2s is longer than the interval 1s"), "{text:?}");
        assert!(has("expected an http:// or https:// URL"), "{text:?}");
        assert!(has("missing.yaml does not exist"), "{text:?}");
        // a glob that matches nothing is fine
        assert!(!has("rules.d"), "{text:?}");
        assert!(issues.iter().all(Issue::is_error));
    }

    #[test]
    fn shipped_config_loads_clean() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/medic.yaml");
        let (c, warnings) = Config::load(&path).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(matches!(c.collectors["host"], CollectorConfig::Host(_)));
        let rules = c.rule_file_paths().unwrap();
        assert_eq!(rules.len(), 1);
        assert!(rules[0].ends_with("rules/host.yaml") && rules[0].is_file());
    }

    #[test]
    fn remediation_targets_and_cooldowns() {
        let c = parse("{}").unwrap();
        let step: crate::rules::RemediateStep =
            load::parse_yaml(Path::new("r.yaml"), "action: exec\ntarget: rollback\n").unwrap();
        let issues = c.check_remediation("Down", &[step]);
        assert_eq!(issues.len(), 2, "{issues:?}");
        assert!(issues[0].is_error() && issues[0].message.contains("`rollback`"));
        assert!(!issues[1].is_error() && issues[1].message.contains("no cooldown"));
    }
}
