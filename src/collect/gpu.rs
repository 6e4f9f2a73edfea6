//! GPU collector: per NVIDIA GPU, dcgm-exporter's names, units and labels, read through NVML
//! (nvml-wrapper). The NVML calls sit behind [`GpuBackend`]/[`GpuDevice`] so the mapping is
//! tested with a fake device here; the real NVML backend is what `build()` uses.
//!
//! On a host without the NVIDIA driver, NVML's library cannot be loaded: medic says so once
//! ("GPU collection off: NVIDIA driver library not found"), writes `medic_gpu_up 0` and carries
//! on. A driver that is installed but not loaded, or a permission problem, get their own
//! messages, also once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::{Clock, EccCounter, MemoryError, TemperatureSensor};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use serde::Deserialize;

use super::target::round_budget;
use super::{BuildContext, BuildError, CollectError, Collector, Schedule};
use crate::config::Duration;
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
    fn devices(&self) -> Result<Vec<Box<dyn GpuDevice + '_>>, GpuError>;
    /// The last XID error per GPU UUID since the backend opened (0 when none).
    fn last_xids(&self) -> HashMap<String, u64> {
        HashMap::new()
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
    /// Critical XID events, registered on every GPU that supports them.
    xid_events: Mutex<Option<nvml_wrapper::EventSet<'static>>>,
    last_xid: Mutex<HashMap<String, u64>>,
}

/// Opens NVML (the default backend).
pub fn open_nvml() -> Result<Arc<NvmlBackend>, GpuInitError> {
    let nvml = nvml()?;
    let mut set = nvml.create_event_set().ok();
    if let Ok(n) = nvml.device_count() {
        for i in 0..n {
            let (Ok(dev), Some(s)) = (nvml.device_by_index(i), set.take()) else {
                continue;
            };
            // a GPU that cannot report XIDs leaves the set unusable; go on without
            set = dev
                .register_events(
                    nvml_wrapper::bitmasks::event::EventTypes::CRITICAL_XID_ERROR,
                    s,
                )
                .ok();
        }
    }
    Ok(Arc::new(NvmlBackend {
        nvml,
        xid_events: Mutex::new(set),
        last_xid: Mutex::new(HashMap::new()),
    }))
}

struct NvmlDevice<'a>(nvml_wrapper::Device<'a>);

impl GpuBackend for NvmlBackend {
    fn devices(&self) -> Result<Vec<Box<dyn GpuDevice + '_>>, GpuError> {
        let n = self.nvml.device_count()?;
        let mut v: Vec<Box<dyn GpuDevice + '_>> = Vec::with_capacity(n as usize);
        for i in 0..n {
            v.push(Box::new(NvmlDevice(self.nvml.device_by_index(i)?)));
        }
        Ok(v)
    }

    fn last_xids(&self) -> HashMap<String, u64> {
        let mut last = self.last_xid.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = self
            .xid_events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            // drain what has queued up since the last round, without waiting
            for _ in 0..256 {
                let Ok(ev) = set.wait(0) else { break };
                if let (Ok(uuid), Some(nvml_wrapper::enums::event::XidError::Value(x))) =
                    (ev.device.uuid(), ev.event_data)
                {
                    last.insert(uuid, x);
                }
            }
        }
        last.clone()
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

/// Maps one backend's readings to dcgm-exporter's series. Readings a GPU does not support
/// are left out; other failed readings are returned as messages.
pub fn read_samples(
    backend: &dyn GpuBackend,
    hostname: &str,
    processes: bool,
    now_ms: i64,
    out: &mut Vec<Sample>,
) -> Result<Vec<String>, GpuError> {
    let mut problems = Vec::new();
    let devices = backend.devices()?;
    let xids = backend.last_xids();
    for dev in &devices {
        let id = match dev.identity() {
            Ok(id) => id,
            Err(e) => {
                problems.push(format!("GPU identity: {e}"));
                continue;
            }
        };
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
        put(
            "DCGM_FI_DEV_XID_ERRORS",
            xids.get(&id.uuid).copied().unwrap_or(0) as f64,
        );
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
    }
    out.push(Sample::new(
        Labels::new([(METRIC_NAME, "medic_gpu_count"), ("Hostname", hostname)]),
        now_ms,
        devices.len() as f64,
    ));
    Ok(problems)
}

// ------------------------------------------------------------------ collector

type Opener = Box<dyn Fn() -> Result<Arc<dyn GpuBackend>, GpuInitError> + Send + Sync>;

struct State {
    backend: Option<Arc<dyn GpuBackend>>,
    /// The last "collection off" reason logged, so each is logged once.
    said: Option<GpuInitError>,
}

/// The running GPU collector.
pub struct GpuCollector {
    name: String,
    schedule: Schedule,
    hostname: String,
    processes: bool,
    open: Opener,
    state: Mutex<State>,
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
            name: name.to_string(),
            schedule,
            hostname: cfg.hostname.clone().unwrap_or_else(host_name),
            processes: cfg.processes,
            open,
            state: Mutex::new(State {
                backend: None,
                said: None,
            }),
        }
    }

    /// Why collection is off, if it is.
    pub fn off_reason(&self) -> Option<GpuInitError> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .said
            .clone()
    }

    fn backend(&self) -> Option<Arc<dyn GpuBackend>> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = &st.backend {
            return Some(b.clone());
        }
        match (self.open)() {
            Ok(b) => {
                if st.said.take().is_some() {
                    tracing::info!(collector = %self.name, "GPU collection on: NVML opened");
                }
                st.backend = Some(b.clone());
                Some(b)
            }
            Err(e) => {
                if st.said.as_ref() != Some(&e) {
                    tracing::warn!(collector = %self.name, "{e}");
                    st.said = Some(e);
                }
                None
            }
        }
    }
}

#[async_trait]
impl Collector for GpuCollector {
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
        let up_labels = Labels::new([(METRIC_NAME, "medic_gpu_up"), ("Hostname", &self.hostname)]);
        let Some(backend) = self.backend() else {
            out.push(Sample::new(up_labels, now_ms, 0.0));
            return Ok(());
        };
        // NVML calls block (and can take long on a wedged GPU): run them off the runtime
        let hostname = self.hostname.clone();
        let processes = self.processes;
        let budget = round_budget(self.schedule.timeout);
        let job = tokio::task::spawn_blocking(move || {
            let mut v = Vec::new();
            read_samples(backend.as_ref(), &hostname, processes, now_ms, &mut v).map(|p| (v, p))
        });
        let up = match tokio::time::timeout(budget, job).await {
            Ok(Ok(Ok((samples, problems)))) => {
                out.extend(samples);
                for p in problems {
                    tracing::debug!(collector = %self.name, "{p}");
                }
                1.0
            }
            Ok(Ok(Err(e))) => {
                tracing::warn!(collector = %self.name, "reading GPUs failed: {e}");
                0.0
            }
            Ok(Err(e)) => {
                tracing::warn!(collector = %self.name, "GPU reader panicked: {e}");
                0.0
            }
            Err(_) => {
                tracing::warn!(collector = %self.name, "reading GPUs timed out after {budget:?}");
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
