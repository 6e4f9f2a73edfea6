//! `medic check`: validates rule files and reports, promtool-style, every error found.

use std::io::{self, Write};
use std::path::PathBuf;

use super::file::check_file;

/// promtool's `--lint` settings for rule files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lint {
    /// Report rules with the same name and labels (`duplicate-rules`, promtool's default).
    pub duplicate_rules: bool,
    /// A lint finding alone makes the check fail with exit code 3 (`--lint-fatal`).
    pub fatal: bool,
    /// Skip fields the rule-file schema does not know (`--ignore-unknown-fields`).
    pub ignore_unknown_fields: bool,
}

impl Default for Lint {
    fn default() -> Self {
        Lint {
            duplicate_rules: true,
            fatal: false,
            ignore_unknown_fields: false,
        }
    }
}

impl Lint {
    /// Parses `--lint` (`duplicate-rules`, `all`, `none`, comma-separated); an unknown
    /// option is a warning, as in promtool.
    pub fn parse(value: &str, fatal: bool, out: &mut dyn Write) -> io::Result<Lint> {
        let mut lint = Lint {
            duplicate_rules: false,
            fatal,
            ignore_unknown_fields: false,
        };
        for setting in value.split(',').filter(|s| !s.is_empty()) {
            match setting {
                "all" | "duplicate-rules" => lint.duplicate_rules = true,
                "none" => {}
                other => writeln!(out, "WARNING: unknown lint option: {other:?}")?,
            }
        }
        Ok(lint)
    }
}

/// Checks each file, writing `Checking FILE` then `  SUCCESS: N rules found` to `out`, or
/// `  FAILED:` and every error (`file:line:col: message`) to `err`, as promtool does.
/// Returns the exit code: 0, 1 on any error, 3 on lint findings alone with `--lint-fatal`.
pub fn check_rule_files(
    paths: &[PathBuf],
    lint: Lint,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<i32> {
    let (mut failed, mut errors) = (false, false);
    for path in paths {
        writeln!(out, "Checking {}", path.display())?;
        let c = check_file(path, lint.ignore_unknown_fields);
        out.flush()?;
        for w in &c.warnings {
            writeln!(err, "WARNING: {w}")?;
        }
        if !c.errors.is_empty() {
            (failed, errors) = (true, true);
            writeln!(err, "  FAILED:")?;
            for e in &c.errors {
                writeln!(err, "{e}")?;
            }
        } else if lint.duplicate_rules && !c.duplicates.is_empty() {
            failed = true;
            // promtool's wording, byte for byte.
            writeln!(err, "  FAILED:")?;
            writeln!(
                err,
                "lint error {} duplicate rule(s) found.",
                c.duplicates.len()
            )?;
            for (name, labels) in &c.duplicates {
                writeln!(err, "Metric: {name}\nLabel(s):")?;
                for (k, v) in labels {
                    writeln!(err, "\t{k}: {v}")?;
                }
            }
            writeln!(err, "Might cause inconsistency while recording expressions")?;
        } else {
            writeln!(out, "  SUCCESS: {} rules found", c.rules)?;
        }
        writeln!(out)?;
    }
    Ok(match (failed, errors) {
        (_, true) => 1,
        (true, false) if lint.fatal => 3,
        _ => 0,
    })
}
