//! The `exec` actuator: runs a plugin executable with the exec plugin protocol v1.
//!
//! medic starts the program itself (argv from the config, no shell), in a new process group,
//! writes the [`ActionRequest`] as one JSON object to its stdin and reads one JSON object
//! `{"status":"ok"|"failed"|"noop","message":..,"data":..}` from its stdout. Exit 0 without
//! JSON is `ok`; a non-zero exit is `failed`. `kill_grace` before the deadline the whole
//! process group gets SIGTERM, at the deadline SIGKILL, so a plugin's children cannot
//! outlive it; nor can they outlive medic (see `reaper.rs`). Alert data reaches the plugin
//! only on stdin, never on its command line or in its environment.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, timeout, timeout_at};

use crate::common::Duration;
use crate::remedy::actuator::{ActionOutcome, ActionRequest, ActionStatus, Actuator, RemedyError};

fn default_max_stdout_bytes() -> usize {
    64 * 1024
}
fn default_stderr_tail_bytes() -> usize {
    4096
}
fn default_kill_grace() -> Duration {
    Duration::from_secs(3)
}

/// The only variables of medic's environment a plugin inherits.
const PASSED_ENV: &[&str] = &[
    "PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "TMPDIR",
];

/// An exec plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecConfig {
    /// The program and its arguments, run directly without a shell: the first element is
    /// the executable (a path, relative to the config file's folder when it contains a `/`,
    /// or a name looked up in `PATH`). Alert data is never put here; the plugin reads it
    /// from stdin.
    #[serde(deserialize_with = "deserialize_command")]
    pub command: Vec<String>,
    /// How long the plugin may run before medic kills its whole process group. A step's
    /// `timeout` overrides it; `remedy.default_timeout` applies when both are absent.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Environment variables for the plugin (fixed values from this file only). Of medic's
    /// own environment the plugin sees only PATH, HOME, LANG, LC_ALL, TZ, USER, LOGNAME and
    /// TMPDIR, so secrets medic reads from its environment never reach a plugin.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory of the plugin, relative to the config file's folder (medic's own
    /// when absent).
    #[serde(
        default,
        deserialize_with = "crate::common::yaml::deserialize_opt_path"
    )]
    pub working_dir: Option<PathBuf>,
    /// The plugin honours `"dry_run": true` (it reports what it would do and changes
    /// nothing), so in dry-run mode medic calls it instead of only logging.
    #[serde(default)]
    pub supports_dry_run: bool,
    /// This many bytes from the end of stdout are kept (the reply is the whole of stdout
    /// or its last line); what comes before is read and discarded, so a plugin may log
    /// any amount before its answer.
    #[serde(default = "default_max_stdout_bytes")]
    pub max_stdout_bytes: usize,
    /// This many bytes from the end of stderr are kept for the log and the journal.
    #[serde(default = "default_stderr_tail_bytes")]
    pub stderr_tail_bytes: usize,
    /// How long before its deadline the plugin's process group gets SIGTERM, to clean up;
    /// at the deadline it gets SIGKILL. At most half the action's timeout is used.
    #[serde(default = "default_kill_grace")]
    pub kill_grace: Duration,
}

/// `command`, with a relative program path (`plugins/x`) resolved like other config paths.
fn deserialize_command<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let mut argv = Vec::<String>::deserialize(d)?;
    if let Some(first) = argv.first_mut()
        && first.contains('/')
    {
        *first = crate::common::yaml::resolve(PathBuf::from(&*first))
            .display()
            .to_string();
    }
    Ok(argv)
}

/// A running `exec` actuator.
pub struct ExecActuator {
    name: String,
    cfg: ExecConfig,
}

impl ExecActuator {
    pub fn build(name: &str, cfg: &ExecConfig) -> Result<Self, RemedyError> {
        let Some(program) = cfg.command.first().filter(|p| !p.is_empty()) else {
            return Err(RemedyError::EmptyCommand {
                name: name.to_string(),
            });
        };
        // found now rather than when an incident needs it
        check_program(program).map_err(|reason| RemedyError::Config {
            name: name.to_string(),
            reason,
        })?;
        if cfg.timeout.is_some_and(|t| t.0.is_zero()) {
            return Err(RemedyError::Config {
                name: name.to_string(),
                reason: "`timeout` must be greater than 0".into(),
            });
        }
        Ok(ExecActuator {
            name: name.to_string(),
            cfg: cfg.clone(),
        })
    }
}

/// The program must be an executable file: a path (with a `/`) as given, else a name found
/// in `PATH`, as `execvp` would look it up.
fn check_program(program: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = std::path::Path::new(program);
        return match std::fs::metadata(p) {
            Err(e) => Err(format!("command {program:?}: {e}")),
            Ok(m) if !m.is_file() => Err(format!("command {program:?} is not a file")),
            Ok(_) if !executable(p) => Err(format!(
                "command {program:?} is not executable (chmod +x it)"
            )),
            Ok(_) => Ok(()),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|d| executable(&d.join(program))) {
        Ok(())
    } else {
        Err(format!("command {program:?} is not an executable in PATH"))
    }
}

/// The plugin's answer on stdout.
#[derive(Deserialize)]
struct Reply {
    status: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    data: serde_json::Value,
}

/// Kills the process group when dropped while armed, so a cancelled action (shutdown, the
/// planner's backstop timeout) cannot leave the plugin running; while armed the reaper
/// also kills it if medic dies.
struct GroupGuard {
    pgid: Option<i32>,
}

impl GroupGuard {
    fn new(pgid: Option<i32>) -> Self {
        if let Some(g) = pgid {
            super::reaper::watch(g);
        }
        GroupGuard { pgid }
    }
    /// Asks the group to stop (the plugin may clean up); the guard stays armed.
    fn terminate(&self) {
        if let Some(pgid) = self.pgid {
            // SAFETY: as in `kill`.
            unsafe {
                libc::killpg(pgid, libc::SIGTERM);
            }
        }
    }
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // SAFETY: killpg has no memory-safety preconditions; pgid > 0 was checked at
            // creation, so this never signals our own group or every process.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
            super::reaper::forget(pgid);
        }
    }
    fn disarm(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            super::reaper::forget(pgid);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

type Buf = Arc<Mutex<Vec<u8>>>;

/// Reads `r` to EOF, keeping the last `max` bytes (what comes before is drained and
/// dropped, so the writer never blocks on a full pipe; stdout and stderr are read at once).
async fn read_tail(mut r: impl AsyncRead + Unpin, max: usize, buf: Buf) {
    let mut chunk = [0u8; 8192];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut b = buf.lock().unwrap_or_else(|e| e.into_inner());
                b.extend_from_slice(&chunk[..n]);
                // trim in batches so the copy cost stays linear
                if b.len() > 2 * max.max(4096) {
                    let cut = b.len() - max;
                    b.drain(..cut);
                }
            }
        }
    }
}

fn take_tail(buf: &Buf, max: usize) -> String {
    let b = buf.lock().unwrap_or_else(|e| e.into_inner());
    let start = b.len().saturating_sub(max);
    String::from_utf8_lossy(&b[start..]).into_owned()
}

/// The reply object: the whole of stdout, or else its last non-empty line (so a plugin
/// may log to stdout before answering).
fn parse_reply(stdout: &str) -> Option<Reply> {
    let s = stdout.trim();
    if s.is_empty() {
        return None;
    }
    serde_json::from_str(s).ok().or_else(|| {
        s.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .and_then(|l| serde_json::from_str(l.trim()).ok())
    })
}

fn describe_exit(st: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "exited".to_string(),
    }
}

#[async_trait]
impl Actuator for ExecActuator {
    fn kind(&self) -> &'static str {
        "exec"
    }

    fn timeout(&self) -> Option<StdDuration> {
        self.cfg.timeout.map(|d| d.std())
    }

    fn supports_dry_run(&self) -> bool {
        self.cfg.supports_dry_run
    }

    async fn act(&self, req: &ActionRequest) -> ActionOutcome {
        let deadline = Instant::now() + req.timeout;
        let input = match serde_json::to_vec(req) {
            Ok(v) => v,
            Err(e) => {
                return ActionOutcome::new(
                    ActionStatus::Failed,
                    format!("cannot encode request: {e}"),
                );
            }
        };
        let argv = &self.cfg.command;
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env_clear()
            .envs(
                PASSED_ENV
                    .iter()
                    .filter_map(|k| std::env::var_os(k).map(|v| (k, v))),
            )
            .envs(&self.cfg.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // its own group, so the timeout can kill everything it started
            .process_group(0)
            .kill_on_drop(true);
        if let Some(d) = &self.cfg.working_dir {
            cmd.current_dir(d);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return ActionOutcome::new(
                    ActionStatus::Failed,
                    format!("actuator `{}`: cannot start {:?}: {e}", self.name, argv[0]),
                );
            }
        };
        // Invariant: a freshly spawned, unreaped child always has a pid; with
        // process_group(0) it is also the group id.
        let pgid = child.id().map(|p| p as i32).filter(|p| *p > 0);
        let mut guard = GroupGuard::new(pgid);
        // SIGTERM this long before the deadline, SIGKILL at it
        let grace = self.cfg.kill_grace.std().min(req.timeout / 2);
        let term_at = deadline - grace;

        let stdin = child.stdin.take();
        let writer = tokio::spawn(async move {
            if let Some(mut s) = stdin {
                // a plugin that does not read stdin is fine: ignore broken pipes
                let _ = s.write_all(&input).await;
                let _ = s.shutdown().await;
            }
        });
        let out_buf: Buf = Arc::default();
        let err_buf: Buf = Arc::default();
        let mut readers = Vec::new();
        if let Some(o) = child.stdout.take() {
            readers.push(tokio::spawn(read_tail(
                o,
                self.cfg.max_stdout_bytes,
                out_buf.clone(),
            )));
        }
        if let Some(e) = child.stderr.take() {
            readers.push(tokio::spawn(read_tail(
                e,
                self.cfg.stderr_tail_bytes,
                err_buf.clone(),
            )));
        }
        let drain = |readers: Vec<tokio::task::JoinHandle<()>>| async move {
            for r in readers {
                let _ = r.await;
            }
        };

        let waited = timeout_at(term_at, child.wait()).await;
        let mut note = String::new();
        let exit = match waited {
            Ok(Ok(st)) => {
                // The plugin exited; its pipes close when every process holding them has.
                let aborts: Vec<_> = readers.iter().map(|r| r.abort_handle()).collect();
                if timeout_at(deadline, drain(readers)).await.is_err() {
                    guard.kill();
                    aborts.iter().for_each(|a| a.abort());
                    note = "; processes it left behind were killed at the timeout".into();
                }
                guard.disarm();
                Ok(st)
            }
            Ok(Err(e)) => {
                guard.kill();
                Err(ActionOutcome::new(
                    ActionStatus::Failed,
                    format!("waiting for the plugin failed: {e}"),
                ))
            }
            Err(_) => {
                guard.terminate();
                let stopped = timeout_at(deadline, child.wait()).await.is_ok();
                // what is left of the group (the leader too, if it ignored SIGTERM)
                guard.kill();
                // reap the leader; SIGKILL makes this prompt
                let _ = timeout(StdDuration::from_secs(5), child.wait()).await;
                let aborts: Vec<_> = readers.iter().map(|r| r.abort_handle()).collect();
                if timeout(StdDuration::from_secs(1), drain(readers))
                    .await
                    .is_err()
                {
                    // something escaped the group (setsid) and holds the pipes
                    aborts.iter().for_each(|a| a.abort());
                }
                let how = if stopped {
                    "it stopped on SIGTERM"
                } else {
                    "SIGTERM was not enough, killed its process group"
                };
                Err(ActionOutcome::new(
                    ActionStatus::Timeout,
                    format!("no answer within {:?}; {how}", req.timeout),
                ))
            }
        };
        writer.abort();
        let stderr_tail = take_tail(&err_buf, self.cfg.stderr_tail_bytes);
        let mut outcome = match exit {
            Err(o) => o,
            Ok(st) => {
                let stdout = take_tail(&out_buf, self.cfg.max_stdout_bytes);
                let reply = parse_reply(&stdout);
                let mut o = match reply {
                    Some(r) => {
                        let status = match r.status.as_str() {
                            "ok" => ActionStatus::Ok,
                            "noop" => ActionStatus::Noop,
                            "failed" => ActionStatus::Failed,
                            other => {
                                let mut o = ActionOutcome::new(
                                    ActionStatus::Failed,
                                    format!("plugin answered unknown status {other:?}"),
                                );
                                o.data = r.data;
                                return finish(o, stderr_tail);
                            }
                        };
                        let mut o = ActionOutcome::new(status, r.message.unwrap_or_default());
                        o.data = r.data;
                        o
                    }
                    None => ActionOutcome::new(ActionStatus::Ok, String::new()),
                };
                if !st.success() {
                    o.status = ActionStatus::Failed;
                }
                if o.message.is_empty() || !st.success() {
                    let exit = describe_exit(st);
                    o.message = if o.message.is_empty() {
                        format!("plugin {exit}")
                    } else {
                        format!("{} (plugin {exit})", o.message)
                    };
                }
                o.message.push_str(&note);
                o
            }
        };
        outcome.stderr_tail = stderr_tail;
        outcome
    }
}

fn finish(mut o: ActionOutcome, stderr_tail: String) -> ActionOutcome {
    o.stderr_tail = stderr_tail;
    o
}

/// Whether a plugin's stdout holds a reply medic takes: [`parse_reply`] for the fuzz driver
/// (`fuzz/main.rs`), which feeds it untrusted plugin output.
#[doc(hidden)]
pub fn reply_is_valid(stdout: &str) -> bool {
    parse_reply(stdout).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_whole_or_last_line() {
        let r = parse_reply("{\"status\":\"noop\",\"message\":\"m\"}").unwrap();
        assert_eq!(r.status, "noop");
        let r = parse_reply("starting\nworking\n{\"status\":\"ok\"}\n").unwrap();
        assert_eq!(r.status, "ok");
        assert!(parse_reply("").is_none());
        assert!(parse_reply("done").is_none());
    }

    #[test]
    fn rejects_empty_command() {
        let cfg: ExecConfig = serde_saphyr::from_str("command: []").unwrap();
        assert!(matches!(
            ExecActuator::build("x", &cfg),
            Err(RemedyError::EmptyCommand { .. })
        ));
    }
}
