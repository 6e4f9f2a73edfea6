//! Watches the config file and the rule files (inotify through notify) and reports a change
//! once the writes have settled.
//!
//! Editors replace files by renaming a temp file over them, which drops a watch on the file
//! itself, so the folders are watched and events are filtered by path. A rule-file glob also
//! matches files created after the start.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Quiet time after the last event before a change is reported: one save can be several
/// events (truncate, write, rename).
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// What to watch: exact files and glob patterns (absolute).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WatchSet {
    pub files: BTreeSet<PathBuf>,
    pub patterns: Vec<String>,
}

impl WatchSet {
    fn dirs(&self) -> BTreeSet<PathBuf> {
        let mut dirs: BTreeSet<PathBuf> = self
            .files
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        for p in &self.patterns {
            // The folder part before the first glob character (rule_files rarely glob
            // folders; when they do, the fixed prefix is watched, not recursively).
            let fixed: PathBuf = Path::new(p)
                .components()
                .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[']))
                .collect();
            let dir = if fixed.as_os_str() == p.as_str() {
                fixed.parent().map(Path::to_path_buf).unwrap_or(fixed)
            } else {
                fixed
            };
            dirs.insert(dir);
        }
        dirs.retain(|d| !d.as_os_str().is_empty());
        dirs
    }

    fn matches(&self, path: &Path) -> bool {
        self.files.contains(path)
            || self.patterns.iter().any(|p| {
                glob::Pattern::new(p)
                    .map(|g| g.matches_path(path))
                    .unwrap_or(false)
            })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("watching {path}: {source}")]
pub struct WatchError {
    path: String,
    source: notify::Error,
}

/// A live watch; dropping it stops watching.
pub struct FileWatcher {
    watcher: notify::RecommendedWatcher,
    rx: mpsc::UnboundedReceiver<PathBuf>,
    set: std::sync::Arc<std::sync::RwLock<WatchSet>>,
    dirs: BTreeSet<PathBuf>,
}

impl FileWatcher {
    pub fn new() -> Result<Self, WatchError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let set = std::sync::Arc::new(std::sync::RwLock::new(WatchSet::default()));
        let filter = set.clone();
        // Runs on notify's own thread: only filter and forward.
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(ev) = res else { return };
            if matches!(ev.kind, EventKind::Access(_)) {
                return;
            }
            let set = filter.read().unwrap_or_else(|e| e.into_inner());
            for p in ev.paths {
                if set.matches(&p) {
                    let _ = tx.send(p);
                }
            }
        })
        .map_err(|source| WatchError {
            path: String::new(),
            source,
        })?;
        Ok(FileWatcher {
            watcher,
            rx,
            set,
            dirs: BTreeSet::new(),
        })
    }

    /// Watches exactly `set` from now on (called after each good (re)load, as the rule
    /// files may have changed). A folder that cannot be watched is reported and skipped.
    pub fn update(&mut self, set: WatchSet) -> Vec<WatchError> {
        let dirs = set.dirs();
        *self.set.write().unwrap_or_else(|e| e.into_inner()) = set;
        let mut errors = Vec::new();
        for gone in self.dirs.difference(&dirs) {
            let _ = self.watcher.unwatch(gone);
        }
        for new in dirs.difference(&self.dirs) {
            if let Err(source) = self.watcher.watch(new, RecursiveMode::NonRecursive) {
                errors.push(WatchError {
                    path: new.display().to_string(),
                    source,
                });
            }
        }
        self.dirs = dirs;
        errors
    }

    /// Waits for a change, then for [`DEBOUNCE`] of quiet; returns the changed paths.
    pub async fn changed(&mut self) -> BTreeSet<PathBuf> {
        let mut paths = BTreeSet::new();
        match self.rx.recv().await {
            Some(p) => paths.insert(p),
            // The sender lives in the watcher we own, so this does not end; wait forever
            // rather than spin if it ever did.
            None => return std::future::pending().await,
        };
        loop {
            match tokio::time::timeout(DEBOUNCE, self.rx.recv()).await {
                Ok(Some(p)) => {
                    paths.insert(p);
                }
                Ok(None) | Err(_) => return paths,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirs_and_matching() {
        let set = WatchSet {
            files: ["/etc/medic/medic.yaml".into()].into(),
            patterns: vec!["/etc/medic/rules.d/*.yaml".into()],
        };
        let dirs: Vec<_> = set.dirs().into_iter().collect();
        assert_eq!(
            dirs,
            vec![
                PathBuf::from("/etc/medic"),
                PathBuf::from("/etc/medic/rules.d")
            ]
        );
        assert!(set.matches(Path::new("/etc/medic/medic.yaml")));
        assert!(set.matches(Path::new("/etc/medic/rules.d/new.yaml")));
        assert!(!set.matches(Path::new("/etc/medic/medic.yaml.swp")));
        assert!(!set.matches(Path::new("/etc/medic/rules.d/x.txt")));
    }

    #[tokio::test]
    async fn reports_a_replaced_file_once_settled() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("medic.yaml");
        std::fs::write(&file, "a: 1\n").unwrap();
        let mut w = FileWatcher::new().unwrap();
        assert!(
            w.update(WatchSet {
                files: [file.clone()].into(),
                patterns: vec![],
            })
            .is_empty()
        );
        // an editor-style save: write a temp file, rename it over the original
        let tmp = dir.path().join(".medic.yaml.tmp");
        std::fs::write(&tmp, "a: 2\n").unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        std::fs::write(dir.path().join("unrelated.txt"), "x").unwrap();
        let changed = tokio::time::timeout(Duration::from_secs(20), w.changed())
            .await
            .expect("no change reported");
        assert_eq!(changed, [file].into());
    }
}
