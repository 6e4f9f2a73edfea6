//! The local host, with node_exporter's metric names and labels so its dashboards and rules
//! work unchanged. Reads the same kernel files node_exporter reads (/proc/loadavg,
//! /proc/meminfo, /proc/stat, /proc/net/dev, /proc/self/mounts + statvfs), one read each per
//! round, so the figures are identical and a round stays cheap.

use std::ffi::CString;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use regex::Regex;
use serde::Deserialize;

use super::blocking::{BlockingError, InFlight, run_blocking};
use super::{BuildContext, BuildError, CollectError, Collector, Schedule};
use crate::common::Duration;
use crate::store::{Labels, Sample};

/// node_exporter's default `--collector.filesystem.mount-points-exclude`.
pub const DEFAULT_MOUNT_POINTS_EXCLUDE: &str =
    "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";
/// node_exporter's default `--collector.filesystem.fs-types-exclude`.
pub const DEFAULT_FS_TYPES_EXCLUDE: &str = "^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|erofs|sysfs|tracefs)$";

/// `type: host`: load, memory, CPU time, filesystems and network of the machine medic runs on.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// How often to collect; `global.collect_interval` when absent.
    #[serde(default)]
    pub interval: Option<Duration>,
    /// How long one round may take; `global.collect_timeout` (at most the interval) when absent.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Mount points to skip (a regex); node_exporter's default skips /dev, /proc, /sys and
    /// container storage.
    #[serde(default)]
    pub mount_points_exclude: Option<String>,
    /// Filesystem types to skip (a regex); node_exporter's default skips pseudo filesystems
    /// (proc, sysfs, cgroup, overlay, squashfs, ...).
    #[serde(default)]
    pub fs_types_exclude: Option<String>,
    /// Network devices to skip (a regex), e.g. `^(lo|veth.*)$`. None skipped by default.
    #[serde(default)]
    pub network_devices_exclude: Option<String>,
}

impl HostConfig {
    pub fn build(&self, ctx: &BuildContext<'_>) -> Result<Arc<dyn Collector>, BuildError> {
        let schedule = ctx.schedule(self.interval, self.timeout)?;
        let re = |field: &str, v: Option<&str>| -> Result<Option<Regex>, BuildError> {
            v.map(|s| {
                Regex::new(s).map_err(|e| ctx.invalid(format!("{field}: bad regex {s:?}: {e}")))
            })
            .transpose()
        };
        let filters = Filters {
            mount_points_exclude: re(
                "mount_points_exclude",
                Some(
                    self.mount_points_exclude
                        .as_deref()
                        .unwrap_or(DEFAULT_MOUNT_POINTS_EXCLUDE),
                ),
            )?,
            fs_types_exclude: re(
                "fs_types_exclude",
                Some(
                    self.fs_types_exclude
                        .as_deref()
                        .unwrap_or(DEFAULT_FS_TYPES_EXCLUDE),
                ),
            )?,
            network_devices_exclude: re(
                "network_devices_exclude",
                self.network_devices_exclude.as_deref(),
            )?,
        };
        Ok(Arc::new(HostCollector {
            name: ctx.name.to_string(),
            schedule,
            filters: Arc::new(filters),
            flight: InFlight::default(),
        }))
    }
}

#[derive(Debug)]
struct Filters {
    mount_points_exclude: Option<Regex>,
    fs_types_exclude: Option<Regex>,
    network_devices_exclude: Option<Regex>,
}

/// The running host collector.
pub struct HostCollector {
    name: String,
    schedule: Schedule,
    filters: Arc<Filters>,
    /// Busy while a round runs on a blocking thread. statvfs on a dead network mount can
    /// block for ever; the timeout abandons that thread, and this stops the next rounds
    /// from piling more threads onto the same mount.
    flight: InFlight,
}

#[async_trait]
impl Collector for HostCollector {
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
        let filters = self.filters.clone();
        let samples = run_blocking(&self.flight, self.schedule.timeout, move || {
            collect_host(&filters, now_ms)
        })
        .await
        .map_err(|e| match e {
            BlockingError::Busy => {
                CollectError::Failed(format!("{e} (a filesystem may be hanging)"))
            }
            BlockingError::TimedOut(t) => CollectError::Timeout(t),
            BlockingError::Panicked(_) => CollectError::Failed(format!("host round: {e}")),
        })??;
        out.extend(samples);
        Ok(())
    }
}

fn read(path: &str) -> Result<String, CollectError> {
    std::fs::read_to_string(path).map_err(|e| CollectError::Failed(format!("{path}: {e}")))
}

fn collect_host(filters: &Filters, now_ms: i64) -> Result<Vec<Sample>, CollectError> {
    let mut out = Vec::with_capacity(256);
    let mut push = |labels: Labels, v: f64| out.push(Sample::new(labels, now_ms, v));
    parse_loadavg(&read("/proc/loadavg")?, &mut push)?;
    parse_meminfo(&read("/proc/meminfo")?, &mut push);
    parse_stat(&read("/proc/stat")?, clock_ticks_per_second(), &mut push);
    parse_net_dev(
        &read("/proc/net/dev")?,
        filters.network_devices_exclude.as_ref(),
        &mut push,
    );
    for m in parse_mounts(&read("/proc/self/mounts")?) {
        if filters
            .mount_points_exclude
            .as_ref()
            .is_some_and(|r| r.is_match(&m.mountpoint))
            || filters
                .fs_types_exclude
                .as_ref()
                .is_some_and(|r| r.is_match(&m.fstype))
        {
            continue;
        }
        filesystem_samples(&m, statvfs(Path::new(&m.mountpoint)).ok(), &mut push);
    }
    Ok(out)
}

fn named(name: &str) -> Labels {
    Labels::from_name(name)
}

/// `/proc/loadavg` → node_load1, node_load5, node_load15.
pub fn parse_loadavg(text: &str, push: &mut impl FnMut(Labels, f64)) -> Result<(), CollectError> {
    let mut it = text.split_whitespace();
    for name in ["node_load1", "node_load5", "node_load15"] {
        let v = it
            .next()
            .and_then(|s| s.parse::<f64>().ok())
            .ok_or_else(|| CollectError::Failed(format!("/proc/loadavg: unexpected {text:?}")))?;
        push(named(name), v);
    }
    Ok(())
}

/// `/proc/meminfo` → node_memory_<Field>_bytes for `kB` fields (node_memory_<Field> for
/// counts such as HugePages_Total), with node_exporter's renaming of `Active(anon)` to
/// `Active_anon`.
pub fn parse_meminfo(text: &str, push: &mut impl FnMut(Labels, f64)) {
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let Some(v) = parts.next().and_then(|s| s.parse::<f64>().ok()) else {
            continue;
        };
        let key = key.replace('(', "_").replace(')', "");
        match parts.next() {
            Some("kB") => push(named(&format!("node_memory_{key}_bytes")), v * 1024.0),
            _ => push(named(&format!("node_memory_{key}")), v),
        }
    }
}

/// Clock ticks per second (USER_HZ), the unit of /proc/stat's CPU times.
fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions; a non-positive answer means unknown.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

const CPU_MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// `/proc/stat` → node_cpu_seconds_total{cpu,mode}, node_boot_time_seconds,
/// node_context_switches_total, node_forks_total, node_procs_running, node_procs_blocked.
pub fn parse_stat(text: &str, ticks: f64, push: &mut impl FnMut(Labels, f64)) {
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let Some(key) = it.next() else { continue };
        if let Some(cpu) = key.strip_prefix("cpu") {
            // The aggregate "cpu" line is left out, as node_exporter does.
            if cpu.is_empty() {
                continue;
            }
            for (mode, v) in CPU_MODES.iter().zip(it) {
                if let Ok(v) = v.parse::<f64>() {
                    push(
                        Labels::new([
                            ("__name__", "node_cpu_seconds_total"),
                            ("cpu", cpu),
                            ("mode", mode),
                        ]),
                        v / ticks,
                    );
                }
            }
            continue;
        }
        let name = match key {
            "btime" => "node_boot_time_seconds",
            "ctxt" => "node_context_switches_total",
            "processes" => "node_forks_total",
            "procs_running" => "node_procs_running",
            "procs_blocked" => "node_procs_blocked",
            _ => continue,
        };
        if let Some(v) = it.next().and_then(|s| s.parse::<f64>().ok()) {
            push(named(name), v);
        }
    }
}

/// The /proc/net/dev columns medic keeps: (column index, metric name).
const NET_COLUMNS: [(usize, &str); 8] = [
    (0, "node_network_receive_bytes_total"),
    (1, "node_network_receive_packets_total"),
    (2, "node_network_receive_errs_total"),
    (3, "node_network_receive_drop_total"),
    (8, "node_network_transmit_bytes_total"),
    (9, "node_network_transmit_packets_total"),
    (10, "node_network_transmit_errs_total"),
    (11, "node_network_transmit_drop_total"),
];

/// `/proc/net/dev` → node_network_{receive,transmit}_{bytes,packets,errs,drop}_total{device}.
pub fn parse_net_dev(text: &str, exclude: Option<&Regex>, push: &mut impl FnMut(Labels, f64)) {
    for line in text.lines().skip(2) {
        let Some((dev, rest)) = line.split_once(':') else {
            continue;
        };
        let dev = dev.trim();
        if exclude.is_some_and(|r| r.is_match(dev)) {
            continue;
        }
        let cols: Vec<&str> = rest.split_whitespace().collect();
        for (i, name) in NET_COLUMNS {
            if let Some(v) = cols.get(i).and_then(|s| s.parse::<f64>().ok()) {
                push(Labels::new([("__name__", name), ("device", dev)]), v);
            }
        }
    }
}

/// One line of /proc/self/mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub device: String,
    pub mountpoint: String,
    pub fstype: String,
    pub options: String,
}

/// Undoes the kernel's octal escapes in mount fields (`\040` is a space).
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `/proc/self/mounts`, deduplicated by (device, mountpoint, fstype).
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(dev), Some(mp), Some(fs), Some(opts)) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            continue;
        };
        let m = Mount {
            device: unescape_mount(dev),
            mountpoint: unescape_mount(mp),
            fstype: fs.to_string(),
            options: opts.to_string(),
        };
        if !out
            .iter()
            .any(|o| o.device == m.device && o.mountpoint == m.mountpoint && o.fstype == m.fstype)
        {
            out.push(m);
        }
    }
    out
}

/// The statvfs figures node_exporter exports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FsStat {
    pub size: f64,
    pub free: f64,
    pub avail: f64,
    pub files: f64,
    pub files_free: f64,
    pub readonly: bool,
}

/// statvfs(2) on `path`.
pub fn statvfs(path: &Path) -> std::io::Result<FsStat> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    let mut st = MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is NUL-terminated and outlives the call; `st` is a valid out-pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    let unit = st.f_frsize as f64;
    Ok(FsStat {
        size: st.f_blocks as f64 * unit,
        free: st.f_bfree as f64 * unit,
        avail: st.f_bavail as f64 * unit,
        files: st.f_files as f64,
        files_free: st.f_ffree as f64,
        readonly: st.f_flag & libc::ST_RDONLY != 0,
    })
}

/// node_filesystem_{size,free,avail}_bytes, _files, _files_free, _readonly and _device_error
/// {device, fstype, mountpoint}; only _device_error (1) when statvfs failed.
pub fn filesystem_samples(m: &Mount, st: Option<FsStat>, push: &mut impl FnMut(Labels, f64)) {
    let l = |name: &str| {
        Labels::new([
            ("__name__", name),
            ("device", m.device.as_str()),
            ("fstype", m.fstype.as_str()),
            ("mountpoint", m.mountpoint.as_str()),
        ])
    };
    let Some(st) = st else {
        push(l("node_filesystem_device_error"), 1.0);
        return;
    };
    push(l("node_filesystem_device_error"), 0.0);
    push(l("node_filesystem_size_bytes"), st.size);
    push(l("node_filesystem_free_bytes"), st.free);
    push(l("node_filesystem_avail_bytes"), st.avail);
    push(l("node_filesystem_files"), st.files);
    push(l("node_filesystem_files_free"), st.files_free);
    push(
        l("node_filesystem_readonly"),
        if st.readonly { 1.0 } else { 0.0 },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect_into(f: impl FnOnce(&mut dyn FnMut(Labels, f64))) -> Vec<(String, f64)> {
        let mut v = Vec::new();
        f(&mut |l: Labels, x| v.push((l.to_string(), x)));
        v
    }

    #[test]
    fn meminfo_names_like_node_exporter() {
        let text =
            "MemTotal:       16314896 kB\nActive(anon):     100 kB\nHugePages_Total:       0\n";
        let got = collect_into(|p| parse_meminfo(text, &mut |l, x| p(l, x)));
        assert_eq!(
            got,
            vec![
                (
                    "node_memory_MemTotal_bytes{}".to_string(),
                    16314896.0 * 1024.0
                ),
                ("node_memory_Active_anon_bytes{}".to_string(), 102400.0),
                ("node_memory_HugePages_Total{}".to_string(), 0.0),
            ]
        );
    }

    #[test]
    fn stat_skips_aggregate_and_scales_ticks() {
        let text = "cpu  10 0 0 0 0 0 0 0 0 0\ncpu1 200 0 50 1000 0 0 0 7 0 0\nbtime 1700000000\nctxt 42\n";
        let got = collect_into(|p| parse_stat(text, 100.0, &mut |l, x| p(l, x)));
        assert_eq!(got.len(), 8 + 2);
        assert!(got.contains(&(
            "node_cpu_seconds_total{cpu=\"1\", mode=\"user\"}".to_string(),
            2.0
        )));
        assert!(got.contains(&(
            "node_cpu_seconds_total{cpu=\"1\", mode=\"steal\"}".to_string(),
            0.07
        )));
        assert!(got.contains(&("node_boot_time_seconds{}".to_string(), 1.7e9)));
    }

    #[test]
    fn mounts_unescape_and_dedupe() {
        let text =
            "/dev/sda1 /mnt/my\\040disk ext4 rw 0 0\n/dev/sda1 /mnt/my\\040disk ext4 rw 0 0\n";
        let m = parse_mounts(text);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].mountpoint, "/mnt/my disk");
    }

    #[test]
    fn net_dev_columns() {
        let text = "Inter-|   Receive\n face |bytes\n  eth0: 143 7 1 2 0 0 0 0 497 5 3 4 0 0 0 0\n    lo: 1 1 0 0 0 0 0 0 1 1 0 0 0 0 0 0\n";
        let re = Regex::new("^lo$").unwrap();
        let got = collect_into(|p| parse_net_dev(text, Some(&re), &mut |l, x| p(l, x)));
        assert_eq!(got.len(), 8);
        assert!(got.contains(&(
            "node_network_transmit_bytes_total{device=\"eth0\"}".to_string(),
            497.0
        )));
        assert!(got.contains(&(
            "node_network_receive_drop_total{device=\"eth0\"}".to_string(),
            2.0
        )));
    }
}
