//! `medic check -c FILE`: the config, every rule file it names, and the rules' `remediate:`
//! ladders against the config's actuators. Prints every finding, promtool-style.

use std::io::{self, Write};
use std::path::Path;

use super::{Config, Issue};
use crate::rules::GroupOptions;
use crate::rules::file::load_files;
use crate::rules::group::Rule;
use crate::store::Labels;

/// Checks `path` and the rule files it names, writing `Checking FILE`, then `SUCCESS` or
/// `FAILED` and every error and warning. Returns whether there was no error (warnings pass).
pub fn check_config(path: &Path, out: &mut dyn Write) -> io::Result<bool> {
    writeln!(out, "Checking {}", path.display())?;
    let config = match Config::read(path) {
        Ok(c) => c,
        Err(e) => {
            writeln!(out, "  FAILED:")?;
            writeln!(out, "{e}")?;
            writeln!(out)?;
            return Ok(false);
        }
    };
    let mut issues = config.validate();
    issues.extend(detector_issues(&config));
    let rule_paths = config.rule_file_paths().unwrap_or_default();
    report(out, &issues, || {
        format!(
            "{} collectors, {} rule files",
            config.collectors.len(),
            rule_paths.len()
        )
    })?;
    let mut ok = !issues.iter().any(Issue::is_error);

    let opts = GroupOptions {
        default_interval: config.global.evaluation_interval,
        external_labels: Labels::new(config.global.external_labels.clone()),
        ..GroupOptions::default()
    };
    for rule_path in &rule_paths {
        writeln!(out, "Checking {}", rule_path.display())?;
        match load_files(std::slice::from_ref(rule_path), &opts) {
            Err(errs) => {
                ok = false;
                writeln!(out, "  FAILED:")?;
                for e in errs.0 {
                    writeln!(out, "{e}")?;
                }
                writeln!(out)?;
            }
            Ok(groups) => {
                let mut issues = Vec::new();
                let mut count = 0;
                for g in &groups {
                    for rule in g.rules() {
                        count += 1;
                        if let Rule::Alerting(a) = rule {
                            for mut i in config.check_remediation(a.name(), &a.remediate) {
                                i.at = format!(
                                    "{}: group {:?}: {}",
                                    rule_path.display(),
                                    g.name(),
                                    i.at
                                );
                                issues.push(i);
                            }
                        }
                    }
                }
                ok &= !issues.iter().any(Issue::is_error);
                report(out, &issues, || format!("{count} rules found"))?;
            }
        }
    }
    Ok(ok)
}

/// Builds the anomaly detectors and SLOs (without a journal: nothing is opened) as
/// `medic run` would, and their generated burn-rate rules, so check rejects what run rejects.
fn detector_issues(config: &Config) -> Vec<Issue> {
    match config.build_detectors(None) {
        Err(errs) => errs
            .0
            .iter()
            .map(|e| {
                let at = e.config_path().unwrap_or_else(|| "detectors".into());
                Issue::error(at, e.to_string())
            })
            .collect(),
        Ok(det) => {
            let Some(yaml) = det.slo_rule_file() else {
                return Vec::new();
            };
            let opts = GroupOptions {
                default_interval: config.global.evaluation_interval,
                ..GroupOptions::default()
            };
            match crate::rules::file::parse_rule_file(Path::new("<slos>"), &yaml, &opts) {
                Ok(groups) => groups
                    .iter()
                    .flat_map(|g| g.rules())
                    .filter_map(|r| match r {
                        Rule::Alerting(a) => Some(a),
                        _ => None,
                    })
                    .flat_map(|a| config.check_remediation(a.name(), &a.remediate))
                    .collect(),
                Err(e) => vec![Issue::error("slos", e.to_string())],
            }
        }
    }
}

fn report(
    out: &mut dyn Write,
    issues: &[Issue],
    success: impl FnOnce() -> String,
) -> io::Result<()> {
    if issues.iter().any(Issue::is_error) {
        writeln!(out, "  FAILED:")?;
    } else {
        writeln!(out, "  SUCCESS: {}", success())?;
    }
    for i in issues {
        writeln!(out, "  {i}")?;
    }
    writeln!(out)
}
