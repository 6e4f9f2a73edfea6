//! `type: release_drift`: hashes the live release's files against the manifest deployed
//! with it and counts the files that differ, are missing or were added, so a rule can alert
//! on (or roll back) a tree changed by hand.
//!
//! The manifest is `sha256sum` output (`HASH  PATH` per line, `HASH *PATH` in binary mode,
//! a leading `\` where the path has an escaped `\\` or `\n`), paths relative to the release
//! folder, made at deploy time with
//! `cd releases/v42 && find . -type f ! -name MANIFEST.sha256 -print0 | sort -z | xargs -0 sha256sum > MANIFEST.sha256`
//! (and checkable with `sha256sum -c MANIFEST.sha256`). Hashing is bounded in files and
//! bytes and runs on a blocking thread, one round at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::blocking::{BlockingError, InFlight, run_blocking};
use super::{BuildContext, BuildError, CollectError, Collector, Schedule};
use crate::common::Duration;
use crate::store::{Labels, Sample};

fn default_manifest() -> String {
    "MANIFEST.sha256".to_string()
}
fn default_max_files() -> usize {
    10_000
}
fn default_max_bytes() -> u64 {
    1 << 30
}

/// The kinds of drift, the `kind` label of `medic_release_drift_files`.
pub const KINDS: [&str; 3] = ["modified", "missing", "extra"];

/// A deployed release checked against its manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftConfig {
    /// How often to check; `global.collect_interval` when absent.
    #[serde(default)]
    pub interval: Option<Duration>,
    /// How long one check may take; `global.collect_timeout` (at most the interval) when
    /// absent.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// The live release folder, usually the `current` symlink (followed), relative to the
    /// config file's folder.
    #[serde(deserialize_with = "crate::common::yaml::deserialize_path")]
    pub path: PathBuf,
    /// The manifest's file name inside the release folder (not itself hashed).
    #[serde(default = "default_manifest")]
    pub manifest: String,
    /// The `deploy` label of the series; the collector's name when absent.
    #[serde(default)]
    pub label: Option<String>,
    /// Most files a release (and its manifest) may hold; a bigger one fails the round.
    #[serde(default = "default_max_files")]
    pub max_files: usize,
    /// Most bytes hashed in one round; a release whose listed files are bigger fails it.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
}

impl DriftConfig {
    pub fn build(&self, ctx: &BuildContext<'_>) -> Result<Arc<dyn Collector>, BuildError> {
        let schedule = ctx.schedule(self.interval, self.timeout)?;
        let m = Path::new(&self.manifest);
        if self.manifest.is_empty() || m.components().count() != 1 || m.file_name().is_none() {
            return Err(ctx.invalid(format!(
                "manifest {:?}: expected a file name inside the release folder",
                self.manifest
            )));
        }
        if self.max_files == 0 || self.max_bytes == 0 {
            return Err(ctx.invalid("max_files and max_bytes must be greater than 0"));
        }
        Ok(Arc::new(DriftCollector {
            name: ctx.name.to_string(),
            schedule,
            check: Arc::new(Check {
                path: self.path.clone(),
                manifest: self.manifest.clone(),
                deploy: self.label.clone().unwrap_or_else(|| ctx.name.to_string()),
                max_files: self.max_files,
                max_bytes: self.max_bytes,
            }),
            flight: InFlight::default(),
        }))
    }
}

#[derive(Debug)]
struct Check {
    path: PathBuf,
    manifest: String,
    deploy: String,
    max_files: usize,
    max_bytes: u64,
}

/// The running drift collector.
pub struct DriftCollector {
    name: String,
    schedule: Schedule,
    check: Arc<Check>,
    /// Busy while a round hashes on a blocking thread.
    flight: InFlight,
}

/// One round's findings.
#[derive(Debug, Default, PartialEq)]
pub struct Drift {
    /// The release folder's name (`v42`).
    pub release: String,
    pub listed: usize,
    pub modified: Vec<PathBuf>,
    pub missing: Vec<PathBuf>,
    pub extra: Vec<PathBuf>,
    pub hashed_bytes: u64,
    /// When `path` itself (the symlink) last changed, seconds since the epoch.
    pub changed_at: f64,
}

#[async_trait]
impl Collector for DriftCollector {
    fn name(&self) -> &str {
        &self.name
    }
    fn interval(&self) -> std::time::Duration {
        self.schedule.interval
    }
    fn timeout(&self) -> std::time::Duration {
        self.schedule.timeout
    }

    async fn collect(&self, now_ms: i64, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        let check = self.check.clone();
        let drift = run_blocking(&self.flight, self.schedule.timeout, move || {
            check_release(&check)
        })
        .await
        .map_err(|e| match e {
            BlockingError::TimedOut(t) => CollectError::Timeout(t),
            e => CollectError::Failed(format!("drift round: {e}")),
        })?
        .map_err(CollectError::Failed)?;
        let c = &self.check;
        let base = |name: &str| {
            Labels::new([
                ("__name__", name),
                ("deploy", c.deploy.as_str()),
                ("release", drift.release.as_str()),
            ])
        };
        for (kind, files) in KINDS
            .iter()
            .zip([&drift.modified, &drift.missing, &drift.extra])
        {
            out.push(Sample::new(
                base("medic_release_drift_files").with("kind", kind),
                now_ms,
                files.len() as f64,
            ));
        }
        for (name, v) in [
            ("medic_release_manifest_files", drift.listed as f64),
            (
                "medic_release_drift_hashed_bytes",
                drift.hashed_bytes as f64,
            ),
            ("medic_release_current_timestamp_seconds", drift.changed_at),
        ] {
            out.push(Sample::new(base(name), now_ms, v));
        }
        Ok(())
    }
}

/// Reads a manifest in `sha256sum` format: path → hash (lower-case hex).
pub fn parse_manifest(text: &str, file: &str) -> Result<BTreeMap<PathBuf, String>, String> {
    let mut out = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let at = |what: &str| format!("{file}:{}: {what}", i + 1);
        if raw.trim().is_empty() {
            continue;
        }
        let (escaped, line) = match raw.strip_prefix('\\') {
            Some(rest) => (true, rest),
            None => (false, raw),
        };
        let (hash, rest) = line.split_at_checked(64).ok_or_else(|| {
            at("expected `SHA256  PATH` (sha256sum output: 64 hex digits, two spaces, the path)")
        })?;
        if !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(at(
                "expected 64 hex digits of SHA-256 at the start of the line",
            ));
        }
        let name = rest
            .strip_prefix("  ")
            .or_else(|| rest.strip_prefix(" *"))
            .ok_or_else(|| at("expected two spaces (or ` *`) between the hash and the path"))?;
        let name = if escaped {
            unescape(name).ok_or_else(|| at("bad escape in the path (only \\\\ and \\n)"))?
        } else {
            name.to_string()
        };
        let path = PathBuf::from(name.strip_prefix("./").unwrap_or(&name));
        let plain = !path.as_os_str().is_empty()
            && path.components().all(|c| matches!(c, Component::Normal(_)));
        if !plain {
            return Err(at(&format!(
                "path {name:?} must be relative to the release folder, without `..`"
            )));
        }
        if out.insert(path, hash.to_ascii_lowercase()).is_some() {
            return Err(at(&format!("path {name:?} is listed twice")));
        }
    }
    Ok(out)
}

fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next()? {
                '\\' => out.push('\\'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Every non-directory below `root` (symlinks not followed), relative to it; at most `max`.
fn walk(root: &Path, max: usize) -> Result<BTreeSet<PathBuf>, String> {
    let mut out = BTreeSet::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        let dir = root.join(&rel);
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for e in entries {
            let e = e.map_err(|e| format!("{}: {e}", dir.display()))?;
            let p = rel.join(e.file_name());
            let ty = e
                .file_type()
                .map_err(|err| format!("{}: {err}", e.path().display()))?;
            if ty.is_dir() {
                dirs.push(p);
            } else {
                out.insert(p);
                if out.len() > max {
                    return Err(format!(
                        "{} holds more than max_files {max} files",
                        root.display()
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// SHA-256 of a file in lower-case hex, reading at most `budget` bytes (more: an error).
fn sha256_file(path: &Path, budget: &mut u64) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        *budget = budget
            .checked_sub(n as u64)
            .ok_or_else(|| std::io::Error::other("the files listed are bigger than max_bytes"))?;
        ctx.update(&buf[..n]);
    }
    Ok(ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn check_release(c: &Check) -> Result<Drift, String> {
    let changed_at = std::fs::symlink_metadata(&c.path)
        .and_then(|m| m.modified())
        .map_err(|e| format!("{}: {e}", c.path.display()))?
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let root = std::fs::canonicalize(&c.path).map_err(|e| format!("{}: {e}", c.path.display()))?;
    let release = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let manifest_path = root.join(&c.manifest);
    let mut text = String::new();
    std::fs::File::open(&manifest_path)
        .and_then(|f| {
            // one line per file, ~100 bytes each: bound the read like the walk
            f.take(c.max_files as u64 * 4200 + 4096)
                .read_to_string(&mut text)
        })
        .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    let listed = parse_manifest(&text, &manifest_path.display().to_string())?;
    if listed.len() > c.max_files {
        return Err(format!(
            "{} lists more than max_files {} files",
            manifest_path.display(),
            c.max_files
        ));
    }
    let mut found = walk(&root, c.max_files)?;
    found.remove(Path::new(&c.manifest));
    let mut drift = Drift {
        release,
        listed: listed.len(),
        changed_at,
        ..Drift::default()
    };
    let mut budget = c.max_bytes;
    for (p, want) in &listed {
        if !found.remove(p) {
            drift.missing.push(p.clone());
            continue;
        }
        let before = budget;
        match sha256_file(&root.join(p), &mut budget) {
            Ok(h) if h == *want => {}
            Ok(_) => drift.modified.push(p.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::Other => {
                return Err(format!("{}: {e}", root.display()));
            }
            // unreadable (a symlink to a folder, no permission): not what was deployed
            Err(_) => drift.modified.push(p.clone()),
        }
        drift.hashed_bytes += before - budget;
    }
    drift.extra = found.into_iter().collect();
    Ok(drift)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_sha256sum_output() {
        let text = format!("{H}  ./a.txt\n{H} *bin/b\n\n\\{H}  odd\\nname\\\\x\n");
        let m = parse_manifest(&text, "M").unwrap();
        assert_eq!(
            m.keys().cloned().collect::<Vec<_>>(),
            [
                PathBuf::from("a.txt"),
                PathBuf::from("bin/b"),
                PathBuf::from("odd\nname\\x")
            ]
        );
        for (bad, want) in [
            ("xyz  a", "M:1: expected `SHA256  PATH`"),
            (&format!("{H} a"), "M:1: expected two spaces"),
            (&format!("{H}  ../etc/passwd"), "without `..`"),
            (&format!("{H}  /etc/passwd"), "without `..`"),
            (
                &format!("{H}  a\n{H}  ./a"),
                "M:2: path \"./a\" is listed twice",
            ),
            (&format!("\\{H}  a\\q"), "bad escape"),
        ] {
            let e = parse_manifest(bad, "M").unwrap_err();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
    }

    #[test]
    fn hashes_like_sha256sum() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x");
        std::fs::write(&f, b"").unwrap();
        let mut budget = 10;
        assert_eq!(sha256_file(&f, &mut budget).unwrap(), H);
        std::fs::write(&f, b"hello world\n").unwrap();
        let e = sha256_file(&f, &mut budget).unwrap_err();
        assert!(e.to_string().contains("max_bytes"), "{e}");
    }

    #[test]
    fn build_checks_its_bounds() {
        let ctx = BuildContext::new("d");
        let cfg = |y: &str| serde_saphyr::from_str::<DriftConfig>(y).unwrap();
        assert!(cfg("path: /srv/app/current").build(&ctx).is_ok());
        for y in [
            "{path: /x, manifest: ../M}",
            "{path: /x, manifest: ''}",
            "{path: /x, max_files: 0}",
        ] {
            assert!(cfg(y).build(&ctx).is_err(), "{y}");
        }
        assert!(serde_saphyr::from_str::<DriftConfig>("{path: /x, bogus: 1}").is_err());
    }
}
