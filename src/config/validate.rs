//! Checks beyond the schema: values that parse but cannot work (an address that is not an
//! address, a zero interval, a `remediate:` target no actuator has), and risky ones (warnings).

use std::collections::BTreeMap;
use std::fmt;

use super::Config;
use crate::common::names::is_legacy_label_name;
use crate::rules::RemediateStep;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One finding, located by its key path in the config (`collectors.web.url`) or by rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    /// Where: a dotted key path, or `rule NAME` for findings about rules.
    pub at: String,
    pub message: String,
}

impl Issue {
    pub fn error(at: impl Into<String>, message: impl Into<String>) -> Self {
        Issue {
            severity: Severity::Error,
            at: at.into(),
            message: message.into(),
        }
    }

    pub fn warning(at: impl Into<String>, message: impl Into<String>) -> Self {
        Issue {
            severity: Severity::Warning,
            at: at.into(),
            message: message.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: {}: {}", self.at, self.message)
    }
}

impl Config {
    /// Every problem this config has on its own (rule files are checked by
    /// [`Config::check_remediation`] once loaded). Collectors are built (not started) to check
    /// them, so a bad URL or an unreadable secret file shows up here.
    pub fn validate(&self) -> Vec<Issue> {
        let mut out = Vec::new();
        if self.empty_file {
            out.push(Issue::error(
                self.path.display().to_string(),
                "the file is empty (nothing but comments and blank lines): refusing to run \
                 without collectors, rules and notifiers; write `{}` to mean an empty config",
            ));
        }
        let g = &self.global;
        for (key, d) in [
            ("global.collect_interval", g.collect_interval),
            ("global.collect_timeout", g.collect_timeout),
            ("global.evaluation_interval", g.evaluation_interval),
        ] {
            if d.0.is_zero() {
                out.push(Issue::error(key, "must be greater than 0"));
            }
        }
        if let Err(e) = g.listen_address.parse::<std::net::SocketAddr>() {
            out.push(Issue::error(
                "global.listen_address",
                format!(
                    "{:?} is not an address: {e}; expected IP:PORT such as 127.0.0.1:9464 or [::1]:9464",
                    g.listen_address
                ),
            ));
        }
        if let Some(secret) = &g.api_token {
            match secret.read() {
                Err(e) => out.push(Issue::error("global.api_token", e.to_string())),
                Ok(t) if t.expose().trim().is_empty() => {
                    out.push(Issue::error("global.api_token", "the token is empty"))
                }
                Ok(_) => {}
            }
        }
        // the journal lives there: a file in its place (or above it) fails at start
        let mut dir = Some(g.state_dir.as_path());
        while let Some(d) = dir {
            if let Ok(m) = std::fs::metadata(d) {
                if !m.is_dir() {
                    out.push(Issue::error(
                        "global.state_dir",
                        format!("{} is not a folder", d.display()),
                    ));
                }
                break;
            }
            dir = d.parent();
        }
        if self.remedy.default_timeout.0.is_zero() {
            out.push(Issue::error(
                "remedy.default_timeout",
                "must be greater than 0",
            ));
        }
        for name in g.external_labels.keys() {
            if name == "alertname" {
                out.push(Issue::error(
                    format!("global.external_labels.{name}"),
                    "`alertname` is every alert's own label and cannot be an external label",
                ));
            }
            if !is_legacy_label_name(name) {
                out.push(Issue::error(
                    format!("global.external_labels.{name}"),
                    "not a valid label name (expected [a-zA-Z_][a-zA-Z0-9_]*)",
                ));
            }
        }
        for (name, c) in &self.collectors {
            let at = format!("collectors.{name}");
            if name.is_empty() {
                out.push(Issue::error(at, "collector names must not be empty"));
                continue;
            }
            if let crate::collect::CollectorConfig::Scrape(s) = c
                && s.body_size_limit.0 == 0
            {
                out.push(Issue::error(
                    format!("{at}.body_size_limit"),
                    "must be greater than 0B (every scrape would fail)",
                ));
            }
            if let Err(e) = c.build(&self.collector_context(name)) {
                out.push(Issue::error(at, e.message));
            }
        }
        // Each built on its own (not started) to catch what only building finds, for every
        // one of them: unreadable secrets, bad URLs, a plugin that is missing or not
        // executable, a zero timeout.
        for (name, a) in &self.actuators {
            let mut one = BTreeMap::from([(name.clone(), a.clone())]);
            // a rollback restarts through another actuator of the file: built with it
            if let crate::remedy::ActuatorConfig::Rollback(r) = a
                && let Some(dep) = self.actuators.get(&r.restart)
            {
                one.insert(r.restart.clone(), dep.clone());
            }
            if let Err(e) = crate::remedy::build(&one) {
                out.push(Issue::error(format!("actuators.{name}"), e.to_string()));
            }
            if let crate::remedy::ActuatorConfig::Http(h) = a
                && h.timeout.is_some_and(|t| t.0.is_zero())
            {
                out.push(Issue::error(
                    format!("actuators.{name}.timeout"),
                    "must be greater than 0",
                ));
            }
        }
        for (name, n) in &self.notifiers {
            let at = format!("notifiers.{name}");
            let crate::alert::NotifierConfig::Webhook(w) = n;
            if w.timeout.0.is_zero() {
                out.push(Issue::error(
                    format!("{at}.timeout"),
                    "must be greater than 0",
                ));
            }
            if w.max_backoff < w.initial_backoff {
                out.push(Issue::error(
                    format!("{at}.max_backoff"),
                    format!(
                        "{} is shorter than initial_backoff {}",
                        w.max_backoff, w.initial_backoff
                    ),
                ));
            }
            let one = BTreeMap::from([(name.clone(), n.clone())]);
            if let Err(e) = crate::alert::build(&one) {
                out.push(Issue::error(at, e.to_string()));
            }
        }
        if let Err(issues) = self.rule_file_paths() {
            out.extend(issues);
        }
        out
    }

    /// Problems with one alerting rule's `remediate:` ladder: a target that names no actuator
    /// able to perform the action is an error; a step without `cooldown` is a warning (it may
    /// run at every evaluation).
    pub fn check_remediation(&self, rule: &str, steps: &[RemediateStep]) -> Vec<Issue> {
        let mut out = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let at = format!("rule {rule}: remediate[{i}] ({})", step.action);
            if let Err(e) = crate::remedy::validate_step(&self.actuators, step) {
                out.push(Issue::error(&at, e.to_string()));
            }
            for (field, d) in [
                ("timeout", step.timeout),
                ("verify_within", step.verify_within),
            ] {
                if d.is_some_and(|d| d.0.is_zero()) {
                    out.push(Issue::error(&at, format!("{field} must be greater than 0")));
                }
            }
            match step.cooldown {
                None => out.push(Issue::warning(
                    &at,
                    "risky: no cooldown, so the action runs again each time the alert flaps (fires, resolves, fires)",
                )),
                Some(d) if d.0.is_zero() => out.push(Issue::warning(
                    &at,
                    "risky: cooldown 0s, so the action runs again each time the alert flaps (fires, resolves, fires)",
                )),
                _ => {}
            }
        }
        out
    }
}
