//! Process collector: one watched service process, found by name, command line, pidfile or
//! systemd unit, read from /proc (CPU seconds, resident memory, open fds, threads, start time)
//! plus the restarts medic saw (its PID changed). With `systemd_unit`, the unit's state comes
//! from `systemctl show` (no D-Bus), with node_exporter's systemd names; where systemd is not
//! running, that is said once and `medic_systemd_available 0` is written instead.
//!
//! The /proc walk runs on a blocking thread, one round at a time (see [`super::blocking`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use async_trait::async_trait;
use serde::Deserialize;

use super::blocking::{InFlight, run_blocking};
use super::target::{OutageLog, round_budget};
use super::{BuildContext, BuildError, CollectError, Collector, Schedule};
use crate::common::Duration;
use crate::store::{Labels, METRIC_NAME, Sample};

/// `type: process`: one service process (or a group of processes sharing a name).
/// Give exactly one of `name`, `cmdline`, `pidfile` or `systemd_unit`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessConfig {
    /// Match processes whose name (`/proc/PID/comm`, or the base name of their executable)
    /// equals this, e.g. `vllm` or `redis-server`. Figures are summed over all matches.
    #[serde(default)]
    pub name: Option<String>,
    /// Match processes whose full command line (arguments joined by spaces) matches this
    /// regular expression, e.g. `python.* -m vllm.entrypoints`.
    #[serde(default)]
    pub cmdline: Option<String>,
    /// Read the PID from this file (as written by the service).
    #[serde(
        default,
        deserialize_with = "crate::common::yaml::deserialize_opt_path"
    )]
    pub pidfile: Option<PathBuf>,
    /// A systemd unit, e.g. `inference.service`: its state from `systemctl show`, and its
    /// `MainPID` as the process.
    #[serde(default)]
    pub systemd_unit: Option<String>,
    /// The `process` label. Default: the collector's name.
    #[serde(default)]
    pub label: Option<String>,
    /// The `systemctl` to run. Default: `systemctl` on `PATH`. A path with a `/` is relative
    /// to the config file's folder; a bare name is looked up on `PATH`.
    #[serde(default, deserialize_with = "deserialize_opt_program")]
    pub systemctl: Option<PathBuf>,
    /// How often to collect. Default: `global.collect_interval`.
    #[serde(default)]
    pub interval: Option<Duration>,
    /// How long one round may take. Default: `global.collect_timeout`, at most the interval.
    #[serde(default)]
    pub timeout: Option<Duration>,
}

/// A program: a path (with a `/`) is resolved like other paths of the config; a bare name is
/// kept for a `PATH` lookup.
fn deserialize_opt_program<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<PathBuf>, D::Error> {
    Ok(Option::<PathBuf>::deserialize(d)?.map(|p| {
        if p.components().count() > 1 {
            crate::common::yaml::resolve(p)
        } else {
            p
        }
    }))
}

#[derive(Debug, Clone)]
enum Selector {
    Name(String),
    Cmdline(regex::Regex),
    Pidfile(PathBuf),
    Unit(String),
}

impl ProcessConfig {
    /// Makes the collector; reads nothing yet.
    pub fn build(&self, ctx: &BuildContext<'_>) -> Result<Arc<dyn Collector>, BuildError> {
        Ok(Arc::new(ProcessCollector::new(self, ctx)?))
    }
}

/// Figures of the matched processes, summed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcStats {
    pub count: usize,
    /// The oldest matched process (the one whose change counts as a restart).
    pub main_pid: Option<u32>,
    pub cpu_user_seconds: f64,
    pub cpu_system_seconds: f64,
    pub resident_bytes: f64,
    pub virtual_bytes: f64,
    pub threads: f64,
    /// None when some process's fd folder could not be read (another user's process).
    pub open_fds: Option<f64>,
    /// Start time of the main process, seconds since the epoch.
    pub start_time_seconds: f64,
}

/// `systemctl show` answers for a unit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UnitState {
    /// `loaded`, or `not-found` for a unit systemd does not know (a typo, or not installed).
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    pub n_restarts: Option<f64>,
    pub main_pid: Option<u32>,
}

/// Parses `systemctl show --property=...` output (`Key=Value` lines).
pub fn parse_unit_show(text: &str) -> UnitState {
    let mut u = UnitState::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k {
            "LoadState" => u.load_state = v.to_string(),
            "ActiveState" => u.active_state = v.to_string(),
            "SubState" => u.sub_state = v.to_string(),
            "NRestarts" => u.n_restarts = v.parse().ok(),
            "MainPID" => u.main_pid = v.parse().ok().filter(|p| *p != 0),
            _ => {}
        }
    }
    u
}

#[derive(Default)]
struct State {
    last_pid: Option<u32>,
    restarts: u64,
    /// Whether "systemd not available" was logged already.
    said_no_systemd: bool,
    /// Whether "unit not found" was logged already.
    said_not_found: bool,
    /// The last `medic_systemd_available` known (a timeout leaves it as it was).
    systemd_available: Option<bool>,
    /// The unit's MainPID at the last answer, read while systemctl does not answer.
    unit_pid: Option<u32>,
    /// systemctl runs that timed out or failed to run.
    systemd_errors: u64,
}

/// The running process collector.
pub struct ProcessCollector {
    name: String,
    schedule: Schedule,
    selector: Arc<Selector>,
    label: String,
    systemctl: PathBuf,
    /// Check that systemd runs before asking the default systemctl (a configured one, e.g.
    /// a wrapper, is always asked).
    check_booted: bool,
    state: Mutex<State>,
    /// The /proc walk of the running round (one at a time: /proc reads can block).
    flight: InFlight,
    /// systemctl timing out: logged once, and its end once.
    systemctl_outage: OutageLog,
}

/// The unit states node_exporter reports, one series each.
const UNIT_STATES: [&str; 5] = ["activating", "active", "deactivating", "failed", "inactive"];

#[derive(Debug, thiserror::Error)]
enum UnitError {
    /// No systemd here (a container), or no systemctl: `medic_systemd_available 0`.
    #[error("systemd is not available: {0}")]
    Unavailable(String),
    /// systemctl did not answer in time: an error, availability unknown.
    #[error("systemctl timed out after {0:?}")]
    Timeout(StdDuration),
}

impl ProcessCollector {
    pub fn new(cfg: &ProcessConfig, ctx: &BuildContext<'_>) -> Result<Self, BuildError> {
        let schedule = ctx.schedule(cfg.interval, cfg.timeout)?;
        let mut chosen = Vec::new();
        if let Some(n) = &cfg.name {
            chosen.push(Selector::Name(n.clone()));
        }
        if let Some(re) = &cfg.cmdline {
            let re = regex::Regex::new(re)
                .map_err(|e| ctx.invalid(format!("cmdline: invalid regular expression: {e}")))?;
            chosen.push(Selector::Cmdline(re));
        }
        if let Some(p) = &cfg.pidfile {
            chosen.push(Selector::Pidfile(p.clone()));
        }
        if let Some(u) = &cfg.systemd_unit {
            // the unit goes to systemctl as one argument after `--`; refuse anything that
            // is not a plain unit name anyway
            if u.is_empty()
                || u.starts_with('-')
                || u.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(ctx.invalid(format!(
                    "systemd_unit {u:?}: expected a unit name such as inference.service"
                )));
            }
            chosen.push(Selector::Unit(u.clone()));
        }
        if chosen.len() != 1 {
            return Err(
                ctx.invalid("give exactly one of `name`, `cmdline`, `pidfile` or `systemd_unit`")
            );
        }
        let selector = Arc::new(chosen.remove(0));
        Ok(ProcessCollector {
            name: ctx.name.to_string(),
            schedule,
            selector,
            label: cfg.label.clone().unwrap_or_else(|| ctx.name.to_string()),
            systemctl: cfg
                .systemctl
                .clone()
                .unwrap_or_else(|| PathBuf::from("systemctl")),
            check_booted: cfg.systemctl.is_none(),
            state: Mutex::new(State::default()),
            flight: InFlight::default(),
            systemctl_outage: OutageLog::default(),
        })
    }

    fn series(&self, name: &str, extra: &[(&str, &str)]) -> Labels {
        Labels::new(
            [(METRIC_NAME, name), ("process", self.label.as_str())]
                .into_iter()
                .chain(extra.iter().copied()),
        )
    }

    async fn unit_state(&self, unit: &str, budget: StdDuration) -> Result<UnitState, UnitError> {
        // The default systemctl would only say "System has not been booted with systemd"
        // after a fork and exec each round; sd_booted(3)'s test says the same for free.
        if self.check_booted && !Path::new("/run/systemd/system").is_dir() {
            return Err(UnitError::Unavailable(
                "this system was not booted with systemd (no /run/systemd/system)".into(),
            ));
        }
        let mut cmd = tokio::process::Command::new(&self.systemctl);
        cmd.args([
            "show",
            "--property=LoadState,ActiveState,SubState,NRestarts,MainPID",
            "--",
            unit,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| {
            UnitError::Unavailable(format!("cannot run {}: {e}", self.systemctl.display()))
        })?;
        let out = tokio::time::timeout(budget, child.wait_with_output())
            .await
            .map_err(|_| UnitError::Timeout(budget))?
            .map_err(|e| UnitError::Unavailable(e.to_string()))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(UnitError::Unavailable(
                err.lines()
                    .next()
                    .unwrap_or("systemctl failed")
                    .trim()
                    .to_string(),
            ));
        }
        Ok(parse_unit_show(&String::from_utf8_lossy(&out.stdout)))
    }

    /// The unit's series from a `systemctl show` result; returns the PIDs to read (its
    /// MainPID), or None when there is no unit answer to go by.
    fn unit_samples(
        &self,
        unit: &str,
        result: Result<UnitState, UnitError>,
        now_ms: i64,
        out: &mut Vec<Sample>,
    ) -> Option<Vec<u32>> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let unit_series =
            |name: &str, extra: &[(&str, &str)]| self.series(name, extra).without(&["process"]);
        let pids = match result {
            Ok(u) => {
                self.systemctl_outage.ok_as(&self.name, "systemctl");
                st.said_no_systemd = false;
                st.systemd_available = Some(true);
                if u.load_state == "not-found" {
                    if !st.said_not_found {
                        tracing::warn!(
                            collector = %self.name,
                            "systemd unit {unit:?} not found (LoadState=not-found): check the unit name"
                        );
                        st.said_not_found = true;
                    }
                } else {
                    st.said_not_found = false;
                }
                for s in UNIT_STATES {
                    out.push(Sample::new(
                        unit_series("node_systemd_unit_state", &[("name", unit), ("state", s)]),
                        now_ms,
                        if u.active_state == s { 1.0 } else { 0.0 },
                    ));
                }
                out.push(Sample::new(
                    unit_series(
                        "medic_systemd_unit_info",
                        &[
                            ("name", unit),
                            ("sub_state", &u.sub_state),
                            ("load_state", &u.load_state),
                        ],
                    ),
                    now_ms,
                    1.0,
                ));
                if let Some(n) = u.n_restarts {
                    out.push(Sample::new(
                        unit_series("node_systemd_service_restart_total", &[("name", unit)]),
                        now_ms,
                        n,
                    ));
                }
                st.unit_pid = u.main_pid;
                Some(u.main_pid.into_iter().collect())
            }
            Err(UnitError::Unavailable(e)) => {
                if !st.said_no_systemd {
                    tracing::warn!(collector = %self.name, unit = %unit, "unit state not available: systemd is not available: {e}");
                    st.said_no_systemd = true;
                }
                st.systemd_available = Some(false);
                st.unit_pid = None;
                Some(Vec::new())
            }
            Err(e @ UnitError::Timeout(_)) => {
                // not "no systemd": an error, and the last known state stands
                st.systemd_errors += 1;
                self.systemctl_outage.failed_as(&self.name, "systemctl", &e);
                Some(st.unit_pid.into_iter().collect())
            }
        };
        if let Some(a) = st.systemd_available {
            out.push(Sample::new(
                self.series("medic_systemd_available", &[]),
                now_ms,
                if a { 1.0 } else { 0.0 },
            ));
        }
        out.push(Sample::new(
            self.series("medic_systemd_errors_total", &[]),
            now_ms,
            st.systemd_errors as f64,
        ));
        pids
    }
}

/// Reads the matching processes from /proc.
fn read_pids(selector: &Selector) -> Vec<u32> {
    match selector {
        Selector::Pidfile(p) => std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .filter(|pid| Path::new(&format!("/proc/{pid}")).exists())
            .into_iter()
            .collect(),
        Selector::Name(_) | Selector::Cmdline(_) => {
            let Ok(dir) = std::fs::read_dir("/proc") else {
                return Vec::new();
            };
            let me = std::process::id();
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| *pid != me && matches(selector, *pid))
                .collect()
        }
        Selector::Unit(_) => Vec::new(),
    }
}

fn matches(selector: &Selector, pid: u32) -> bool {
    match selector {
        Selector::Name(name) => {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim_end() == name {
                return true;
            }
            // comm is cut at 15 bytes; the executable's base name is not
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or(&[]);
            let base = argv0.rsplit(|b| *b == b'/').next().unwrap_or(&[]);
            !base.is_empty() && base == name.as_bytes()
        }
        Selector::Cmdline(re) => {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if raw.is_empty() {
                return false; // kernel threads and zombies
            }
            let joined: Vec<u8> = raw
                .strip_suffix(&[0])
                .unwrap_or(&raw)
                .iter()
                .map(|b| if *b == 0 { b' ' } else { *b })
                .collect();
            re.is_match(&String::from_utf8_lossy(&joined))
        }
        _ => false,
    }
}

/// System constants needed to turn /proc figures into base units.
struct Sys {
    ticks: f64,
    page: f64,
    boot_time: f64,
}

fn sys() -> Sys {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    Sys {
        ticks: if ticks > 0 { ticks as f64 } else { 100.0 },
        page: if page > 0 { page as f64 } else { 4096.0 },
        boot_time,
    }
}

/// Sums /proc figures over `pids`. Processes that vanish meanwhile are skipped.
pub fn proc_stats(pids: &[u32]) -> ProcStats {
    let sys = sys();
    let mut st = ProcStats {
        open_fds: Some(0.0),
        ..ProcStats::default()
    };
    let mut oldest: Option<(f64, u32)> = None;
    for &pid in pids {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // the name field is in parentheses and may hold spaces or ')': cut at the last ')'
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // field indexes are from proc(5), minus the 3 before and including the name
        let start = sys.boot_time + num(19) / sys.ticks;
        st.count += 1;
        st.cpu_user_seconds += num(11) / sys.ticks;
        st.cpu_system_seconds += num(12) / sys.ticks;
        st.virtual_bytes += num(20);
        // status has the exact resident size; stat's rss lags (per-thread counter caching)
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |key: &str| {
            status.lines().find_map(|l| {
                l.strip_prefix(key)?
                    .split_whitespace()
                    .next()?
                    .parse::<f64>()
                    .ok()
            })
        };
        st.resident_bytes += field("VmRSS:").map_or(num(21) * sys.page, |kib| kib * 1024.0);
        st.threads += field("Threads:").unwrap_or(num(17));
        match std::fs::read_dir(format!("/proc/{pid}/fd")) {
            Ok(d) => {
                if let Some(n) = st.open_fds.as_mut() {
                    *n += d.count() as f64;
                }
            }
            Err(_) => st.open_fds = None,
        }
        if oldest.is_none_or(|(t, p)| (start, pid) < (t, p)) {
            oldest = Some((start, pid));
        }
    }
    if let Some((t, p)) = oldest {
        st.start_time_seconds = t;
        st.main_pid = Some(p);
    }
    if st.count == 0 {
        st.open_fds = None;
    }
    st
}

#[async_trait]
impl Collector for ProcessCollector {
    fn name(&self) -> &str {
        &self.name
    }

    fn interval(&self) -> StdDuration {
        self.schedule.interval
    }

    fn timeout(&self) -> StdDuration {
        self.schedule.timeout
    }

    async fn collect(&self, now_ms: i64, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        let started = Instant::now();
        let budget = round_budget(self.schedule.timeout);
        let pids = match &*self.selector {
            Selector::Unit(unit) => {
                // systemctl gets 3/4 of the budget: a hung one still leaves the /proc read
                // of the last MainPID time to run
                let unit_result = self.unit_state(unit, budget.mul_f64(0.75)).await;
                self.unit_samples(unit, unit_result, now_ms, out)
            }
            _ => None,
        };
        // the /proc walk: a blocking thread, within what is left of the budget
        let selector = self.selector.clone();
        let left = budget.saturating_sub(started.elapsed());
        let stats = run_blocking(&self.flight, left, move || {
            let pids = pids.unwrap_or_else(|| read_pids(&selector));
            proc_stats(&pids)
        })
        .await
        .map_err(|e| CollectError::Failed(format!("reading /proc: {e}")))?;
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pid) = stats.main_pid {
            if st.last_pid.is_some_and(|last| last != pid) {
                st.restarts += 1;
            }
            st.last_pid = Some(pid);
        }
        let up = stats.count > 0;
        out.push(Sample::new(
            self.series("medic_process_up", &[]),
            now_ms,
            if up { 1.0 } else { 0.0 },
        ));
        out.push(Sample::new(
            self.series("medic_process_count", &[]),
            now_ms,
            stats.count as f64,
        ));
        out.push(Sample::new(
            self.series("medic_process_restarts_total", &[]),
            now_ms,
            st.restarts as f64,
        ));
        if up {
            let mut put = |name: &str, extra: &[(&str, &str)], v: f64| {
                out.push(Sample::new(self.series(name, extra), now_ms, v));
            };
            put(
                "medic_process_cpu_seconds_total",
                &[("mode", "user")],
                stats.cpu_user_seconds,
            );
            put(
                "medic_process_cpu_seconds_total",
                &[("mode", "system")],
                stats.cpu_system_seconds,
            );
            put(
                "medic_process_resident_memory_bytes",
                &[],
                stats.resident_bytes,
            );
            put(
                "medic_process_virtual_memory_bytes",
                &[],
                stats.virtual_bytes,
            );
            put("medic_process_threads", &[], stats.threads);
            put(
                "medic_process_start_time_seconds",
                &[],
                stats.start_time_seconds,
            );
            if let Some(fds) = stats.open_fds {
                put("medic_process_open_fds", &[], fds);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_show_parsing() {
        let u =
            parse_unit_show("ActiveState=active\nSubState=running\nNRestarts=3\nMainPID=1234\n");
        assert_eq!(u.active_state, "active");
        assert_eq!(u.sub_state, "running");
        assert_eq!(u.n_restarts, Some(3.0));
        assert_eq!(u.main_pid, Some(1234));
        let u = parse_unit_show("ActiveState=inactive\nSubState=dead\nNRestarts=0\nMainPID=0\n");
        assert_eq!(u.main_pid, None);
    }

    #[test]
    fn own_process_stats() {
        let me = std::process::id();
        let s = proc_stats(&[me]);
        assert_eq!(s.count, 1);
        assert_eq!(s.main_pid, Some(me));
        assert!(s.resident_bytes > 0.0 && s.threads >= 1.0);
        assert!(s.open_fds.unwrap() >= 3.0);
        assert!(s.start_time_seconds > 1.0e9);
        assert_eq!(proc_stats(&[]).count, 0);
    }
}
