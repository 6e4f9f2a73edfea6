//! `medic check`: validates rule files and reports, promtool-style, every error found.

use std::io::{self, Write};
use std::path::PathBuf;

use super::file::check_files;

/// Checks each file, writing `Checking FILE` then `  SUCCESS: N rules found` or
/// `  FAILED:` and every error (`file:line:col: message`). Returns whether all passed.
pub fn check_rule_files(paths: &[PathBuf], out: &mut dyn Write) -> io::Result<bool> {
    let mut ok = true;
    for path in paths {
        writeln!(out, "Checking {}", path.display())?;
        match check_files(std::slice::from_ref(path)) {
            Ok(n) => writeln!(out, "  SUCCESS: {n} rules found")?,
            Err(errs) => {
                ok = false;
                writeln!(out, "  FAILED:")?;
                for e in errs.0 {
                    writeln!(out, "{e}")?;
                }
            }
        }
        writeln!(out)?;
    }
    Ok(ok)
}
