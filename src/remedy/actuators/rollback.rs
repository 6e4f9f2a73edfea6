//! The `rollback` actuator: a releases directory (`releases/<version>/`) with a `current`
//! symlink. A rollback re-points `current` to the release before it, atomically (a new
//! symlink beside it, renamed over it), then restarts the service through a configured
//! `systemd` actuator.
//!
//! Releases are ordered by their names, compared as versions: runs of digits as numbers,
//! everything else as text (`v2 < v10`, `1.9.3 < 1.10.0`, `20240101T1200 < 20240102T0900`).
//! Deploy tools name releases by version or by timestamp, so this needs no record of its
//! own. No path comes from the alert: versions are read from the directory.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;

use crate::common::Duration;
use crate::remedy::actuator::{
    ActionOutcome, ActionRequest, ActionStatus, Actuator, Actuators, RemedyError,
};

fn default_max_steps() -> u32 {
    1
}

/// Most entries of the releases directory read.
const MAX_RELEASES: usize = 10_000;

/// Roll back a release-directory deploy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackConfig {
    /// The folder holding one subfolder per release (`releases/v41/`, `releases/v42/`),
    /// relative to the config file's folder.
    #[serde(deserialize_with = "crate::common::yaml::deserialize_path")]
    pub releases_dir: PathBuf,
    /// The symlink naming the live release (`current -> releases/v42`), relative to the
    /// config file's folder. It must point at a direct subfolder of `releases_dir`.
    #[serde(deserialize_with = "crate::common::yaml::deserialize_path")]
    pub current: PathBuf,
    /// The `systemd` actuator (a key of `actuators:`) whose `unit` is restarted after the
    /// symlink moved.
    pub restart: String,
    /// How many releases below the newest one medic may go back to (1: only to the one
    /// before the newest). A rollback further back is refused.
    #[serde(default = "default_max_steps")]
    pub max_steps: u32,
    /// How long one rollback (re-point and restart) may take. A step's `timeout` overrides
    /// it; `remedy.default_timeout` applies when both are absent.
    #[serde(default)]
    pub timeout: Option<Duration>,
}

/// A running `rollback` actuator.
pub struct RollbackActuator {
    name: String,
    cfg: RollbackConfig,
    restart: Arc<dyn Actuator>,
    /// The last rollback done: a repeat of the same request (same idempotency key) is not
    /// a second rollback, only a second try of a restart that did not succeed.
    last: Mutex<Option<Done>>,
}

/// Compares release names as versions: digit runs numerically, the rest byte-wise.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> impl Iterator<Item = (bool, &str)> {
        let mut rest = s;
        std::iter::from_fn(move || {
            let first = rest.chars().next()?;
            let digit = first.is_ascii_digit();
            let end = rest
                .find(|c: char| c.is_ascii_digit() != digit)
                .unwrap_or(rest.len());
            let (head, tail) = rest.split_at(end);
            rest = tail;
            Some((digit, head))
        })
    }
    let mut x = chunks(a);
    let mut y = chunks(b);
    loop {
        let ord = match (x.next(), y.next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some((true, p)), Some((true, q))) => {
                let (p, q) = (p.trim_start_matches('0'), q.trim_start_matches('0'));
                p.len().cmp(&q.len()).then_with(|| p.cmp(q))
            }
            (Some((_, p)), Some((_, q))) => p.cmp(q),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
}

/// What the releases directory and the symlink say.
#[derive(Debug)]
struct Releases {
    /// Release names, oldest first.
    all: Vec<String>,
    /// The one `current` points at.
    current: String,
    /// The symlink's target as written (to keep its form: relative or absolute).
    link: PathBuf,
}

#[derive(Debug, Clone)]
struct Done {
    key: String,
    from: String,
    to: String,
    restarted: bool,
}

/// A usable release name: a plain folder name, not hidden.
fn is_release_name(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('.') && !s.chars().any(|c| c == '/' || c.is_control())
}

fn inspect(releases_dir: &Path, current: &Path) -> Result<Releases, String> {
    let link = std::fs::read_link(current)
        .map_err(|e| format!("{}: not a readable symlink: {e}", current.display()))?;
    let base = current.parent().unwrap_or(Path::new("."));
    let target = if link.is_absolute() {
        link.clone()
    } else {
        base.join(&link)
    };
    let canon = |p: &Path| std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()));
    let dir = canon(releases_dir)?;
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| is_release_name(n))
        .ok_or_else(|| {
            format!(
                "{} points at {}, not at a release folder",
                current.display(),
                link.display()
            )
        })?
        .to_string();
    let parent = target.parent().map(canon).transpose()?;
    if parent.as_deref() != Some(dir.as_path()) {
        return Err(format!(
            "{} points at {}, outside {}",
            current.display(),
            link.display(),
            releases_dir.display()
        ));
    }
    let mut all = Vec::new();
    let entries =
        std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", releases_dir.display()))?;
    for e in entries.take(MAX_RELEASES) {
        let e = e.map_err(|e| format!("{}: {e}", releases_dir.display()))?;
        let Some(n) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if is_release_name(&n) && e.path().is_dir() {
            all.push(n);
        }
    }
    all.sort_by(|a, b| compare_versions(a, b));
    if !all.contains(&name) {
        return Err(format!(
            "{} points at {name}, which is not a folder of {}",
            current.display(),
            releases_dir.display()
        ));
    }
    Ok(Releases {
        all,
        current: name,
        link,
    })
}

/// Re-points `current` at `link` atomically: a new symlink beside it, renamed over it.
fn repoint(current: &Path, link: &Path) -> Result<(), String> {
    let file = current
        .file_name()
        .ok_or_else(|| format!("{}: no file name", current.display()))?;
    let tmp = current.with_file_name(format!(
        ".{}.medic-{}",
        file.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(link, &tmp)
        .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, current).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!(
            "cannot rename {} over {}: {e}",
            tmp.display(),
            current.display()
        )
    })
}

/// Runs a filesystem step on the blocking pool, bounded by `deadline`.
async fn blocking<T: Send + 'static>(
    deadline: Instant,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, ActionOutcome> {
    match tokio::time::timeout_at(deadline, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(Ok(v))) => Ok(v),
        Ok(Ok(Err(e))) => Err(ActionOutcome::new(ActionStatus::Failed, e)),
        Ok(Err(e)) => Err(ActionOutcome::new(ActionStatus::Failed, e.to_string())),
        Err(_) => Err(ActionOutcome::new(
            ActionStatus::Timeout,
            "the releases folder did not answer in time",
        )),
    }
}

impl RollbackActuator {
    /// `built` holds the actuators built so far; the `restart` one must be among them.
    pub fn build(name: &str, cfg: &RollbackConfig, built: &Actuators) -> Result<Self, RemedyError> {
        let invalid = |reason: String| RemedyError::Config {
            name: name.to_string(),
            reason,
        };
        if cfg.max_steps == 0 {
            return Err(invalid("max_steps must be at least 1".into()));
        }
        if cfg.timeout.is_some_and(|t| t.0.is_zero()) {
            return Err(invalid("timeout must be greater than 0".into()));
        }
        if cfg.current.file_name().is_none() {
            return Err(invalid(format!(
                "current {:?}: expected the path of a symlink",
                cfg.current
            )));
        }
        let restart = built.get(&cfg.restart).cloned().ok_or_else(|| {
            invalid(format!(
                "restart: `{}` is not an actuator in `actuators:`",
                cfg.restart
            ))
        })?;
        if restart.kind() != "systemd" {
            return Err(invalid(format!(
                "restart: `{}` is a `{}` actuator; name a `systemd` one",
                cfg.restart,
                restart.kind()
            )));
        }
        Ok(RollbackActuator {
            name: name.to_string(),
            cfg: cfg.clone(),
            restart,
            last: Mutex::new(None),
        })
    }

    fn refuse(&self, why: String, from: &str) -> ActionOutcome {
        let mut o = ActionOutcome::new(
            ActionStatus::Failed,
            format!("actuator `{}`: refused: {why}", self.name),
        )
        .changed(json!({"release": from}), json!({"release": from}));
        o.data = json!({"refused": why, "from": from});
        o
    }
}

#[async_trait]
impl Actuator for RollbackActuator {
    fn kind(&self) -> &'static str {
        "rollback"
    }

    fn timeout(&self) -> Option<StdDuration> {
        self.cfg.timeout.map(|d| d.std())
    }

    fn supports_dry_run(&self) -> bool {
        true
    }

    async fn act(&self, req: &ActionRequest) -> ActionOutcome {
        let deadline = Instant::now() + req.timeout;
        if req.action != "rollback" {
            return ActionOutcome::new(
                ActionStatus::Failed,
                format!(
                    "a rollback actuator performs `rollback`, not `{}`",
                    req.action
                ),
            );
        }
        if let Some(k) = req.params.as_object().and_then(|o| o.keys().next()) {
            return ActionOutcome::new(
                ActionStatus::Failed,
                format!("rollback takes no params (got `{k}`)"),
            );
        }
        let (dir, cur) = (self.cfg.releases_dir.clone(), self.cfg.current.clone());
        let rel = match blocking(deadline, move || inspect(&dir, &cur)).await {
            Ok(r) => r,
            Err(o) => return o,
        };
        let from = rel.current.clone();
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(done) = last
            && done.key == req.idempotency_key
            && done.to == from
        {
            if done.restarted {
                return ActionOutcome::new(
                    ActionStatus::Noop,
                    format!(
                        "already rolled back from {} to {from} for this request",
                        done.from
                    ),
                )
                .changed(json!({"release": from}), json!({"release": from}));
            }
            if !req.dry_run {
                // `current` moved already; only the restart is tried again
                return self.restart_after(req, &done.from, &from, deadline).await;
            }
        }
        // Invariant: inspect() checked that `all` contains the current release.
        let at = rel.all.iter().position(|v| *v == from).unwrap_or(0);
        let newest = rel.all.len() - 1;
        if at == 0 {
            return self.refuse(format!("no release earlier than {from}"), &from);
        }
        let to = rel.all[at - 1].clone();
        let back = newest - (at - 1);
        if back > self.cfg.max_steps as usize {
            return self.refuse(
                format!(
                    "max_steps {} reached: {to} is {back} releases below the newest ({})",
                    self.cfg.max_steps, rel.all[newest]
                ),
                &from,
            );
        }
        let before = json!({"release": from});
        let after = json!({"release": to});
        if req.dry_run {
            let mut o = ActionOutcome::new(
                ActionStatus::Ok,
                format!(
                    "dry run: would re-point {} from {from} to {to} and restart through `{}`",
                    self.cfg.current.display(),
                    self.cfg.restart
                ),
            )
            .changed(before, after);
            o.data = json!({"from": from, "to": to});
            return o;
        }
        let link = rel.link.with_file_name(&to);
        let cur = self.cfg.current.clone();
        if let Err(o) = blocking(deadline, move || repoint(&cur, &link)).await {
            return o;
        }
        // recorded before the restart, so that a retry after a cancelled restart does not
        // roll back one release further
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Done {
            key: req.idempotency_key.clone(),
            from: from.clone(),
            to: to.clone(),
            restarted: false,
        });
        self.restart_after(req, &from, &to, deadline).await
    }
}

impl RollbackActuator {
    /// Restarts through the systemd actuator once `current` points at `to`.
    async fn restart_after(
        &self,
        req: &ActionRequest,
        from: &str,
        to: &str,
        deadline: Instant,
    ) -> ActionOutcome {
        let mut sub = req.clone();
        sub.action = "restart".into();
        sub.target = self.cfg.restart.clone();
        sub.params = json!({});
        sub.timeout = deadline.saturating_duration_since(Instant::now());
        let restarted = self.restart.act(&sub).await;
        let ok = restarted.status == ActionStatus::Ok;
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Done {
            key: req.idempotency_key.clone(),
            from: from.to_string(),
            to: to.to_string(),
            restarted: ok,
        });
        let mut o = ActionOutcome::new(
            if ok {
                ActionStatus::Ok
            } else {
                restarted.status
            },
            if ok {
                format!("rolled back from {from} to {to}; {}", restarted.message)
            } else {
                format!(
                    "re-pointed {} from {from} to {to}, but the restart did not succeed: {}",
                    self.cfg.current.display(),
                    restarted.message
                )
            },
        )
        .changed(json!({"release": from}), json!({"release": to}));
        o.data = json!({
            "from": from,
            "to": to,
            "restart": {
                "status": restarted.status,
                "message": restarted.message,
                "before": restarted.before,
                "after": restarted.after,
            },
        });
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_naturally() {
        let mut v = vec![
            "v10",
            "v2",
            "v1",
            "1.10.0",
            "1.9.3",
            "1.9.10",
            "20240102T0900",
            "20240101T1200",
            "v02",
            "release-b",
            "release-a",
        ];
        v.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(
            v,
            [
                "1.9.3",
                "1.9.10",
                "1.10.0",
                "20240101T1200",
                "20240102T0900",
                "release-a",
                "release-b",
                "v1",
                "v02",
                "v2",
                "v10"
            ]
        );
    }

    #[test]
    fn release_names() {
        assert!(is_release_name("v1.2"));
        for bad in ["", ".tmp", "a/b", "a\nb"] {
            assert!(!is_release_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn inspect_refuses_a_link_outside_the_releases() {
        let d = tempfile::tempdir().unwrap();
        let rel = d.path().join("releases");
        std::fs::create_dir_all(rel.join("v1")).unwrap();
        std::fs::create_dir_all(d.path().join("elsewhere/v1")).unwrap();
        let cur = d.path().join("current");
        std::os::unix::fs::symlink("elsewhere/v1", &cur).unwrap();
        let e = inspect(&rel, &cur).unwrap_err();
        assert!(e.contains("outside"), "{e}");
        std::fs::remove_file(&cur).unwrap();
        std::os::unix::fs::symlink("releases/v1", &cur).unwrap();
        let r = inspect(&rel, &cur).unwrap();
        assert_eq!((r.current.as_str(), r.all.len()), ("v1", 1));
        repoint(&cur, Path::new("releases/v1")).unwrap();
        assert_eq!(std::fs::read_link(&cur).unwrap(), Path::new("releases/v1"));
    }
}
