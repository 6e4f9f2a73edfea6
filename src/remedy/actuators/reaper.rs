//! The reaper: kills the process groups of running plugins when medic dies, however it
//! dies (kill -9 included), so no plugin outlives medic.
//!
//! A dying process cannot clean up after itself, and `PR_SET_PDEATHSIG` reaches only one
//! process (the group leader, not what it started) and fires when the spawning *thread*
//! ends, not the process. So a tiny watcher process (`/bin/sh`, started on first use, in
//! its own process group, ignoring job-control and stop signals) reads the ids of the
//! running plugin groups on its stdin. medic holds the only write end of that pipe
//! (close-on-exec), so the watcher reads end-of-file exactly when medic is gone, and then
//! kills every group still listed. Only numbers medic writes reach the script.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

/// `+PGID` adds a group, `-PGID` removes it; at end of input every listed group is killed.
const SCRIPT: &str = r#"trap '' INT TERM HUP QUIT
groups=' '
while read -r op g; do
  case "$g" in ''|*[!0-9]*) continue ;; esac
  case "$op" in
    +) groups="$groups$g " ;;
    -) case "$groups" in *" $g "*) groups="${groups%% $g *} ${groups#* $g }" ;; esac ;;
  esac
done
for g in $groups; do kill -9 -"$g" 2>/dev/null; done
"#;

struct Watcher {
    child: Child,
    stdin: ChildStdin,
}

struct Reaper {
    watcher: Option<Watcher>,
    /// The groups running now, re-sent to a new watcher if the old one died.
    live: BTreeSet<i32>,
}

static REAPER: Mutex<Reaper> = Mutex::new(Reaper {
    watcher: None,
    live: BTreeSet::new(),
});

fn start_watcher() -> std::io::Result<Watcher> {
    let mut child = Command::new("/bin/sh")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // its own group: a terminal's Ctrl-C or a group kill aimed at medic misses it
        .process_group(0)
        .spawn()?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("no stdin pipe"))?;
    Ok(Watcher { child, stdin })
}

impl Reaper {
    /// Sends `line`, (re)starting the watcher when there is none or it died; a new watcher
    /// first learns every live group.
    fn send(&mut self, line: &str) {
        for _ in 0..2 {
            if let Some(w) = &mut self.watcher {
                let alive = matches!(w.child.try_wait(), Ok(None));
                if alive && w.stdin.write_all(line.as_bytes()).is_ok() {
                    return;
                }
                if let Some(mut w) = self.watcher.take() {
                    let _ = w.child.kill();
                    let _ = w.child.wait();
                }
            }
            match start_watcher() {
                Ok(mut w) => {
                    let all: String = self.live.iter().map(|g| format!("+ {g}\n")).collect();
                    if w.stdin.write_all(all.as_bytes()).is_ok() {
                        self.watcher = Some(w);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the plugin reaper; plugins may outlive a crash of medic");
                    return;
                }
            }
        }
    }
}

fn reaper() -> std::sync::MutexGuard<'static, Reaper> {
    // the state is a set and a pipe: usable even after a panic elsewhere
    REAPER.lock().unwrap_or_else(|e| e.into_inner())
}

/// Registers a running plugin's process group (killed if medic dies before [`forget`]).
pub fn watch(pgid: i32) {
    if pgid <= 0 {
        return;
    }
    let mut r = reaper();
    if r.live.insert(pgid) {
        // a fresh watcher is sent the whole set, `pgid` included
        r.send(&format!("+ {pgid}\n"));
    }
}

/// The group is finished (its processes killed or exited): no longer medic's to kill.
pub fn forget(pgid: i32) {
    let mut r = reaper();
    if r.live.remove(&pgid) && r.watcher.is_some() {
        r.send(&format!("- {pgid}\n"));
    }
}

#[cfg(test)]
mod tests {
    /// The script's list handling, run by the real shell: adds, removes, ignores junk, and
    /// kills what is left at end of input.
    #[test]
    fn script_kills_the_groups_still_listed_at_eof() {
        use std::io::Write;
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        let spawn_group = || {
            Command::new("sleep")
                .arg("600")
                .process_group(0)
                .spawn()
                .unwrap()
        };
        let (mut a, mut b) = (spawn_group(), spawn_group());
        let (pa, pb) = (a.id(), b.id());
        let mut sh = Command::new("/bin/sh")
            .args(["-c", super::SCRIPT])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = sh.stdin.take().unwrap();
        write!(input, "+ {pa}\n+ {pb}\n+ 1x\n- {pb}\n").unwrap();
        drop(input);
        sh.wait().unwrap();
        // a was listed: killed; b was removed: still running
        let sa = a.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(sa.signal(), Some(libc::SIGKILL));
        assert!(b.try_wait().unwrap().is_none());
        b.kill().unwrap();
        b.wait().unwrap();
    }
}
