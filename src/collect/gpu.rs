//! GPU collector: per NVIDIA GPU, dcgm-exporter's names, units and labels, read through NVML
//! (nvml-wrapper). The NVML calls sit behind [`GpuBackend`]/[`GpuDevice`] so the mapping is
//! tested with a fake device here; the real NVML backend is what `build()` uses.
//!
//! On a host without the NVIDIA driver, NVML's library cannot be loaded: medic says so once
//! ("GPU collection off: NVIDIA driver library not found"), writes `medic_gpu_up 0` and carries
//! on. A driver that is installed but not loaded, or a permission problem, get their own
//! messages, also once.
//!
//! Every NVML call (opening it included) runs on a blocking thread, one round at a time: a
//! wedged GPU can hang NVML, and a hung round must not stack a new thread every interval.
//! One GPU that cannot be read (fallen off the bus, XID 79) loses only its own series.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use std::time::Duration as StdDuration;

use async_trait::async_trait;
use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::{Clock, EccCounter, MemoryError, TemperatureSensor};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use serde::Deserialize;

use super::blocking::{InFlight, run_blocking};
use super::target::{OutageLog, round_budget};
use super::{BuildContext, BuildError, CollectError, Collector, Schedule};
use crate::common::Duration;
use crate::store::{Labels, METRIC_NAME, Sample};

fn default_true() -> bool {
    true
}

/// `type: gpu`: every NVIDIA GPU of this host, through NVML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuConfig {
    /// Also write each process's GPU memory (`medic_gpu_process_memory_used_bytes{pid}`).
    /// Default true.
    #[serde(default = "default_true")]
    pub processes: bool,
    /// The `Hostname` label. Default: this host's name.
    #[serde(default)]
    pub hostname: Option<String>,
    /// How often to collect. Default: `global.collect_interval`.
    #[serde(default)]
    pub interval: Option<Duration>,
    /// How long one round may take. Default: `global.collect_timeout`, at most the interval.
    #[serde(default)]
    pub timeout: Option<Duration>,
}

impl GpuConfig {
    /// Makes the collector. Does not touch the GPU (NVML is opened on the first round).
    pub fn build(&self, ctx: &BuildContext<'_>) -> Result<Arc<dyn Collector>, BuildError> {
        let schedule = ctx.schedule(self.interval, self.timeout)?;
        Ok(Arc::new(GpuCollector::new(
            ctx.name,
            schedule,
            self,
            Box::new(|| open_nvml().map(|b| b as Arc<dyn GpuBackend>)),
        )))
    }
}

/// Why GPU collection is off.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuInitError {
    #[error("GPU collection off: NVIDIA driver library not found (libnvidia-ml.so.1)")]
    NoDriverLibrary,
    #[error(
        "GPU collection off: the NVIDIA driver is installed but not loaded (is the nvidia kernel module loaded?)"
    )]
    DriverNotLoaded,
    #[error("GPU collection off: no permission to use NVML (check access to /dev/nvidia*)")]
    NoPermission,
    #[error("GPU collection off: NVML failed to start: {0}")]
    Other(String),
}

impl From<NvmlError> for GpuInitError {
    fn from(e: NvmlError) -> Self {
        match e {
            NvmlError::LibloadingError(_) => GpuInitError::NoDriverLibrary,
            NvmlError::DriverNotLoaded => GpuInitError::DriverNotLoaded,
            NvmlError::NoPermission => GpuInitError::NoPermission,
            other => GpuInitError::Other(other.to_string()),
        }
    }
}

/// A reading that failed; `NotSupported` ones are skipped silently (older GPUs lack some).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuError {
    #[error("not supported")]
    NotSupported,
    #[error("{0}")]
    Failed(String),
}

impl From<NvmlError> for GpuError {
    fn from(e: NvmlError) -> Self {
        match e {
            NvmlError::NotSupported => GpuError::NotSupported,
            other => GpuError::Failed(other.to_string()),
        }
    }
}

/// What identifies a GPU (the labels of its series).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuIdentity {
    pub index: u32,
    pub uuid: String,
    pub model: String,
    pub pci_bus_id: String,
}

/// The GPUs of a host.
pub trait GpuBackend: Send + Sync {
    /// How many GPUs the driver knows of (an error here fails the whole round).
    fn device_count(&self) -> Result<u32, GpuError>;
    /// GPU `index`; an error loses only this GPU's series for the round.
    fn device(&self, index: u32) -> Result<Box<dyn GpuDevice + '_>, GpuError>;
    /// Starts watching GPU `index` for critical XID errors. An error means its XIDs cannot be
    /// seen (its `DCGM_FI_DEV_XID_ERRORS` is then left out, not written as 0).
    fn watch_xids(&self, index: u32) -> Result<(), GpuError> {
        let _ = index;
        Err(GpuError::NotSupported)
    }
    /// The XID errors (GPU UUID, XID) of watched GPUs since the last call, oldest first.
    fn xid_events(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
}

/// One GPU's readings, in NVML's units.
pub trait GpuDevice {
    fn identity(&self) -> Result<GpuIdentity, GpuError>;
    /// (GPU, memory copy) utilisation in percent.
    fn utilization(&self) -> Result<(u32, u32), GpuError>;
    /// (used, free) framebuffer bytes.
    fn memory(&self) -> Result<(u64, u64), GpuError>;
    fn temperature_c(&self) -> Result<u32, GpuError>;
    fn power_mw(&self) -> Result<u32, GpuError>;
    fn sm_clock_mhz(&self) -> Result<u32, GpuError>;
    fn mem_clock_mhz(&self) -> Result<u32, GpuError>;
    /// Volatile (single bit corrected, double bit uncorrected) ECC error counts.
    fn ecc_volatile(&self) -> Result<(u64, u64), GpuError>;
    /// NVML's clock throttle reasons bitmask.
    fn throttle_reasons(&self) -> Result<u64, GpuError>;
    /// (pid, used GPU memory bytes) of compute processes.
    fn processes(&self) -> Result<Vec<(u32, u64)>, GpuError>;
}

// ------------------------------------------------------------------ NVML backend

static NVML: OnceLock<Nvml> = OnceLock::new();

/// NVML, initialised once per process (NVML counts its own inits; one is enough).
fn nvml() -> Result<&'static Nvml, GpuInitError> {
    if let Some(n) = NVML.get() {
        return Ok(n);
    }
    let n = Nvml::init()?;
    Ok(NVML.get_or_init(|| n))
}

/// The real backend.
pub struct NvmlBackend {
    nvml: &'static Nvml,
    /// One event set per watched GPU: nvml-wrapper frees a set on any registration error, so
    /// a shared set would lose every GPU's XIDs to one GPU that cannot report them.
    xid_sets: Mutex<Vec<nvml_wrapper::EventSet<'static>>>,
}

/// Opens NVML (the default backend). Blocks; call it off the async runtime.
pub fn open_nvml() -> Result<Arc<NvmlBackend>, GpuInitError> {
    Ok(Arc::new(NvmlBackend {
        nvml: nvml()?,
        xid_sets: Mutex::new(Vec::new()),
    }))
}

struct NvmlDevice<'a>(nvml_wrapper::Device<'a>);

impl GpuBackend for NvmlBackend {
    fn device_count(&self) -> Result<u32, GpuError> {
        Ok(self.nvml.device_count()?)
    }

    fn device(&self, index: u32) -> Result<Box<dyn GpuDevice + '_>, GpuError> {
        Ok(Box::new(NvmlDevice(self.nvml.device_by_index(index)?)))
    }

    fn watch_xids(&self, index: u32) -> Result<(), GpuError> {
        use nvml_wrapper::bitmasks::event::EventTypes;
        let dev = self.nvml.device_by_index(index)?;
        if !dev
            .supported_event_types()?
            .contains(EventTypes::CRITICAL_XID_ERROR)
        {
            return Err(GpuError::NotSupported);
        }
        let set = self.nvml.create_event_set()?;
        let set = dev
            .register_events(EventTypes::CRITICAL_XID_ERROR, set)
            .map_err(|e| GpuError::from(e.error))?;
        self.xid_sets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(set);
        Ok(())
    }

    fn xid_events(&self) -> Vec<(String, u64)> {
        let mut v = Vec::new();
        for set in self
            .xid_sets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            // drain what has queued up since the last round, without waiting
            for _ in 0..256 {
                let Ok(ev) = set.wait(0) else { break };
                if let (Ok(uuid), Some(nvml_wrapper::enums::event::XidError::Value(x))) =
                    (ev.device.uuid(), ev.event_data)
                {
                    v.push((uuid, x));
                }
            }
        }
        v
    }
}

impl GpuDevice for NvmlDevice<'_> {
    fn identity(&self) -> Result<GpuIdentity, GpuError> {
        Ok(GpuIdentity {
            index: self.0.index()?,
            uuid: self.0.uuid()?,
            model: self.0.name()?,
            pci_bus_id: self.0.pci_info().map(|p| p.bus_id).unwrap_or_default(),
        })
    }
    fn utilization(&self) -> Result<(u32, u32), GpuError> {
        let u = self.0.utilization_rates()?;
        Ok((u.gpu, u.memory))
    }
    fn memory(&self) -> Result<(u64, u64), GpuError> {
        let m = self.0.memory_info()?;
        Ok((m.used, m.free))
    }
    fn temperature_c(&self) -> Result<u32, GpuError> {
        Ok(self.0.temperature(TemperatureSensor::Gpu)?)
    }
    fn power_mw(&self) -> Result<u32, GpuError> {
        Ok(self.0.power_usage()?)
    }
    fn sm_clock_mhz(&self) -> Result<u32, GpuError> {
        Ok(self.0.clock_info(Clock::SM)?)
    }
    fn mem_clock_mhz(&self) -> Result<u32, GpuError> {
        Ok(self.0.clock_info(Clock::Memory)?)
    }
    fn ecc_volatile(&self) -> Result<(u64, u64), GpuError> {
        Ok((
            self.0
                .total_ecc_errors(MemoryError::Corrected, EccCounter::Volatile)?,
            self.0
                .total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)?,
        ))
    }
    fn throttle_reasons(&self) -> Result<u64, GpuError> {
        Ok(self.0.current_throttle_reasons()?.bits())
    }
    fn processes(&self) -> Result<Vec<(u32, u64)>, GpuError> {
        Ok(self
            .0
            .running_compute_processes()?
            .into_iter()
            .filter_map(|p| match p.used_gpu_memory {
                UsedGpuMemory::Used(b) => Some((p.pid, b)),
                UsedGpuMemory::Unavailable => None,
            })
            .collect())
    }
}

// ------------------------------------------------------------------ mapping

const MIB: f64 = 1024.0 * 1024.0;

/// What is known of one GPU's XIDs: the last one (0: none yet) and how many were seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XidSeen {
    pub last: u64,
    pub count: u64,
}

/// Maps one GPU's readings to dcgm-exporter's series. Readings a GPU does not support are
/// left out; other failed readings are returned as messages. `xid` is None when the GPU's
/// XIDs are not watched (then they are left out too).
pub fn device_samples(
    dev: &dyn GpuDevice,
    id: &GpuIdentity,
    hostname: &str,
    processes: bool,
    xid: Option<XidSeen>,
    now_ms: i64,
    out: &mut Vec<Sample>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let gpu = id.index.to_string();
    let device = format!("nvidia{}", id.index);
    let base = [
        ("gpu", gpu.as_str()),
        ("UUID", id.uuid.as_str()),
        ("device", device.as_str()),
        ("modelName", id.model.as_str()),
        ("pci_bus_id", id.pci_bus_id.as_str()),
        ("Hostname", hostname),
    ];
    let labels = |name: &str| Labels::new(std::iter::once((METRIC_NAME, name)).chain(base));
    let mut put = |name: &str, v: f64| out.push(Sample::new(labels(name), now_ms, v));
    let mut check = |what: &str, r: Result<(), GpuError>| match r {
        Ok(()) | Err(GpuError::NotSupported) => {}
        Err(e) => problems.push(format!("GPU {} {what}: {e}", id.index)),
    };
    let r = dev.utilization().map(|(g, m)| {
        put("DCGM_FI_DEV_GPU_UTIL", g as f64);
        put("DCGM_FI_DEV_MEM_COPY_UTIL", m as f64);
    });
    check("utilization", r);
    let r = dev.memory().map(|(used, free)| {
        // dcgm-exporter reports framebuffer in MiB
        put("DCGM_FI_DEV_FB_USED", (used as f64 / MIB).floor());
        put("DCGM_FI_DEV_FB_FREE", (free as f64 / MIB).floor());
    });
    check("memory", r);
    let r = dev
        .temperature_c()
        .map(|t| put("DCGM_FI_DEV_GPU_TEMP", t as f64));
    check("temperature", r);
    let r = dev
        .power_mw()
        .map(|p| put("DCGM_FI_DEV_POWER_USAGE", p as f64 / 1000.0));
    check("power", r);
    let r = dev
        .sm_clock_mhz()
        .map(|c| put("DCGM_FI_DEV_SM_CLOCK", c as f64));
    check("SM clock", r);
    let r = dev
        .mem_clock_mhz()
        .map(|c| put("DCGM_FI_DEV_MEM_CLOCK", c as f64));
    check("memory clock", r);
    let r = dev.ecc_volatile().map(|(sbe, dbe)| {
        put("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", sbe as f64);
        put("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", dbe as f64);
    });
    check("ECC", r);
    let r = dev
        .throttle_reasons()
        .map(|t| put("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", t as f64));
    check("throttle reasons", r);
    if let Some(x) = xid {
        put("DCGM_FI_DEV_XID_ERRORS", x.last as f64);
        // the last XID alone cannot show the same XID twice; the count can
        put("medic_gpu_xid_errors_total", x.count as f64);
    }
    if processes {
        match dev.processes() {
            Ok(ps) => {
                for (pid, bytes) in ps {
                    let pid = pid.to_string();
                    out.push(Sample::new(
                        Labels::new(
                            [
                                (METRIC_NAME, "medic_gpu_process_memory_used_bytes"),
                                ("pid", pid.as_str()),
                            ]
                            .into_iter()
                            .chain(base),
                        ),
                        now_ms,
                        bytes as f64,
                    ));
                }
            }
            Err(GpuError::NotSupported) => {}
            Err(e) => problems.push(format!("GPU {} processes: {e}", id.index)),
        }
    }
    problems
}

// ------------------------------------------------------------------ collector

type Opener = Box<dyn Fn() -> Result<Arc<dyn GpuBackend>, GpuInitError> + Send + Sync>;

/// Whether a GPU's XIDs are watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum XidWatch {
    Watched,
    /// Registration failed (logged once); not retried.
    Unavailable,
}

/// What the rounds remember, touched only on the blocking thread of the running round.
#[derive(Default)]
struct State {
    backend: Option<Arc<dyn GpuBackend>>,
    /// GPUs that could not be read last time (logged once), by index.
    failed: HashMap<u32, String>,
    xid_watch: HashMap<u32, XidWatch>,
    /// Per GPU UUID.
    xids: HashMap<String, XidSeen>,
}

/// A log line made on the blocking thread, written by `collect` (on the caller's thread, so
/// it reaches the caller's subscriber).
type Note = (tracing::Level, String);

struct Inner {
    name: String,
    hostname: String,
    processes: bool,
    open: Opener,
    state: Mutex<State>,
    /// The last "collection off" reason logged, so each is logged once.
    said: Mutex<Option<GpuInitError>>,
    notes: Mutex<Vec<Note>>,
}

/// The running GPU collector.
pub struct GpuCollector {
    inner: Arc<Inner>,
    schedule: Schedule,
    flight: InFlight,
    /// Rounds that fail (device count unreadable, timed out, hung): logged once each way.
    outage: OutageLog,
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl GpuCollector {
    /// A collector over the backend `open` returns (NVML in production, a fake in tests).
    pub fn new(name: &str, schedule: Schedule, cfg: &GpuConfig, open: Opener) -> Self {
        GpuCollector {
            inner: Arc::new(Inner {
                name: name.to_string(),
                hostname: cfg.hostname.clone().unwrap_or_else(host_name),
                processes: cfg.processes,
                open,
                state: Mutex::new(State::default()),
                said: Mutex::new(None),
                notes: Mutex::new(Vec::new()),
            }),
            schedule,
            flight: InFlight::default(),
            outage: OutageLog::default(),
        }
    }

    /// Why collection is off, if it is.
    pub fn off_reason(&self) -> Option<GpuInitError> {
        self.inner
            .said
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn flush_notes(&self) {
        let notes =
            std::mem::take(&mut *self.inner.notes.lock().unwrap_or_else(|e| e.into_inner()));
        let collector = self.inner.name.as_str();
        for (level, msg) in notes {
            match level {
                tracing::Level::WARN => tracing::warn!(collector, "{msg}"),
                tracing::Level::INFO => tracing::info!(collector, "{msg}"),
                _ => tracing::debug!(collector, "{msg}"),
            }
        }
    }
}

impl Inner {
    fn note(&self, level: tracing::Level, msg: String) {
        self.notes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((level, msg));
    }

    /// The backend, opening it if needed; None (said once) while it cannot be opened.
    fn backend(&self, st: &mut State) -> Option<Arc<dyn GpuBackend>> {
        if let Some(b) = &st.backend {
            return Some(b.clone());
        }
        let opened = (self.open)();
        let mut said = self.said.lock().unwrap_or_else(|e| e.into_inner());
        match opened {
            Ok(b) => {
                if said.take().is_some() {
                    self.note(
                        tracing::Level::INFO,
                        "GPU collection on: NVML opened".into(),
                    );
                }
                st.backend = Some(b.clone());
                Some(b)
            }
            Err(e) => {
                if said.as_ref() != Some(&e) {
                    self.note(tracing::Level::WARN, e.to_string());
                    *said = Some(e);
                }
                None
            }
        }
    }

    /// One round, on a blocking thread: Ok(None) while NVML is off.
    fn round(&self, now_ms: i64) -> Result<Option<Vec<Sample>>, GpuError> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(backend) = self.backend(&mut st) else {
            return Ok(None);
        };
        let n = backend.device_count()?;
        for (uuid, x) in backend.xid_events() {
            let seen = st.xids.entry(uuid).or_default();
            seen.last = x;
            seen.count += 1;
        }
        let host = self.hostname.as_str();
        let mut out = Vec::new();
        for i in 0..n {
            let read = backend
                .device(i)
                .and_then(|d| d.identity().map(|id| (d, id)));
            let gpu = i.to_string();
            let up = Labels::new([
                (METRIC_NAME, "medic_gpu_device_up"),
                ("gpu", gpu.as_str()),
                ("Hostname", host),
            ]);
            let (dev, id) = match read {
                Ok(v) => v,
                Err(e) => {
                    let e = e.to_string();
                    if st.failed.insert(i, e.clone()).is_none() {
                        self.note(
                            tracing::Level::WARN,
                            format!("GPU {i} cannot be read, its series are left out: {e}"),
                        );
                    }
                    out.push(Sample::new(up, now_ms, 0.0));
                    continue;
                }
            };
            if st.failed.remove(&i).is_some() {
                self.note(tracing::Level::INFO, format!("GPU {i} can be read again"));
            }
            out.push(Sample::new(up, now_ms, 1.0));
            let watch = *st.xid_watch.entry(i).or_insert_with(|| match backend.watch_xids(i) {
                Ok(()) => XidWatch::Watched,
                Err(e) => {
                    self.note(
                        tracing::Level::WARN,
                        format!(
                            "GPU {i} ({}): XID errors cannot be watched ({e}); DCGM_FI_DEV_XID_ERRORS left out",
                            id.uuid
                        ),
                    );
                    XidWatch::Unavailable
                }
            });
            let xid = (watch == XidWatch::Watched)
                .then(|| st.xids.get(&id.uuid).copied().unwrap_or_default());
            for p in device_samples(
                dev.as_ref(),
                &id,
                host,
                self.processes,
                xid,
                now_ms,
                &mut out,
            ) {
                self.note(tracing::Level::DEBUG, p);
            }
        }
        out.push(Sample::new(
            Labels::new([(METRIC_NAME, "medic_gpu_count"), ("Hostname", host)]),
            now_ms,
            n as f64,
        ));
        Ok(Some(out))
    }
}

#[async_trait]
impl Collector for GpuCollector {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn interval(&self) -> StdDuration {
        self.schedule.interval
    }

    fn timeout(&self) -> StdDuration {
        self.schedule.timeout
    }

    async fn collect(&self, now_ms: i64, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        let up_labels = Labels::new([
            (METRIC_NAME, "medic_gpu_up"),
            ("Hostname", &self.inner.hostname),
        ]);
        let inner = self.inner.clone();
        let budget = round_budget(self.schedule.timeout);
        let r = run_blocking(&self.flight, budget, move || inner.round(now_ms)).await;
        self.flush_notes();
        let name = self.inner.name.as_str();
        let up = match r {
            Ok(Ok(Some(samples))) => {
                self.outage.ok_as(name, "GPU reading");
                out.extend(samples);
                1.0
            }
            // NVML is off (said once by the round)
            Ok(Ok(None)) => 0.0,
            Ok(Err(e)) => {
                self.outage.failed_as(name, "GPU reading", &e);
                0.0
            }
            Err(e) => {
                self.outage.failed_as(name, "GPU reading", &e);
                0.0
            }
        };
        out.push(Sample::new(up_labels, now_ms, up));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvml_errors_map_to_clear_messages() {
        assert_eq!(
            GpuInitError::from(NvmlError::DriverNotLoaded),
            GpuInitError::DriverNotLoaded
        );
        assert_eq!(
            GpuInitError::from(NvmlError::NoPermission),
            GpuInitError::NoPermission
        );
        assert!(
            GpuInitError::NoDriverLibrary
                .to_string()
                .contains("NVIDIA driver library not found")
        );
        assert_eq!(
            GpuError::from(NvmlError::NotSupported),
            GpuError::NotSupported
        );
    }
}
