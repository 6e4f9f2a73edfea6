//! Scrape collector: reads a service's own Prometheus / OpenMetrics text endpoint (an inference
//! server's queue depth, batch size, latency histograms) and stores its series with `job` and
//! `instance` labels, as a Prometheus scrape job would.
//!
//! Per round it also writes Prometheus' scrape series (`up`, `scrape_duration_seconds`,
//! `scrape_samples_scraped`) and `medic_scrape_errors_total{reason}`, so a target that is down,
//! slow, malformed or too large shows as `up 0` plus a counted reason, never as a stall.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use async_trait::async_trait;
use serde::Deserialize;

use super::exposition::{self, Format, FxHashMap, ParseError};
use super::target::{OutageLog, round_budget};
use super::{BuildContext, BuildError, CollectError, Collector, Schedule};
use crate::common::{Duration, Secret, redact_url};
use crate::store::{Labels, METRIC_NAME, Sample};

/// A size in bytes, written as a number or with a unit: `512KiB`, `10MB`, `16MiB`, `1GiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| {
            format!("invalid size {s:?}: expected a number of bytes or e.g. \"10MiB\"")
        })?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" => 1000,
            "MB" => 1000 * 1000,
            "GB" => 1000 * 1000 * 1000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            u => {
                return Err(format!(
                    "invalid size unit {u:?} in {s:?}: expected B, KB, MB, GB, KiB, MiB or GiB"
                ));
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("size {s:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_sample_limit() -> usize {
    50_000
}
fn default_new_series_limit() -> u32 {
    2_000
}
fn default_body_size_limit() -> ByteSize {
    ByteSize(16 << 20)
}

/// `type: scrape`: read a Prometheus or OpenMetrics text endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    /// URL of the metrics endpoint, e.g. `http://127.0.0.1:8000/metrics` (http or https).
    pub url: String,
    /// Value of the `job` label on every series. Default: the collector's name.
    #[serde(default)]
    pub job: Option<String>,
    /// Value of the `instance` label. Default: the URL's `host:port`.
    #[serde(default)]
    pub instance: Option<String>,
    /// Extra labels added to every series of this target.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// When the exposition carries a label that medic also sets (`job`, `instance` or one of
    /// `labels`): false (default) keeps medic's value and renames the exposed one to
    /// `exported_<name>`; true keeps the exposed value, as Prometheus' `honor_labels`.
    #[serde(default)]
    pub honor_labels: bool,
    /// Use the timestamps the exposition gives its samples (default true); false stamps every
    /// sample with the time of the scrape.
    #[serde(default = "default_true")]
    pub honor_timestamps: bool,
    /// Most samples one scrape may return; a scrape with more is rejected whole (`up 0`,
    /// `medic_scrape_errors_total{reason="sample_limit"}`). 0 means no limit. Default 50000.
    #[serde(default = "default_sample_limit")]
    pub sample_limit: usize,
    /// Most new series (label sets the store does not hold yet) this target may add a
    /// minute; samples of further new series are dropped, counted in
    /// `medic_collector_new_series_dropped_total{reason="new_series_limit"}` and logged.
    /// A first scrape of up to `sample_limit` series lands whole. 0 means no limit (the
    /// store's `global.max_series` still holds). Default 2000.
    #[serde(default = "default_new_series_limit")]
    pub new_series_limit: u32,
    /// Largest body accepted, e.g. `16MiB` (the default); a larger one is rejected
    /// (`reason="body_too_large"`) without reading the rest.
    #[serde(default = "default_body_size_limit")]
    pub body_size_limit: ByteSize,
    /// A bearer token sent as `Authorization: Bearer ...`, as a secret:
    /// `{file: /etc/medic/token}`, `{env: VAR}` or `{value: ...}`. Never logged.
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    /// How often to scrape. Default: `global.collect_interval`.
    #[serde(default)]
    pub interval: Option<Duration>,
    /// How long one scrape may take, body included. Default: `global.collect_timeout`, at
    /// most the interval.
    #[serde(default)]
    pub timeout: Option<Duration>,
}

impl ScrapeConfig {
    /// Makes the collector. Fails on a bad URL or an unreadable token; connects to nothing.
    pub fn build(&self, ctx: &BuildContext<'_>) -> Result<Arc<dyn Collector>, BuildError> {
        Ok(Arc::new(ScrapeCollector::new(self, ctx)?))
    }
}

impl ScrapeCollector {
    /// Makes the collector (see [`ScrapeConfig::build`]).
    pub fn new(cfg: &ScrapeConfig, ctx: &BuildContext<'_>) -> Result<Self, BuildError> {
        let schedule = ctx.schedule(cfg.interval, cfg.timeout)?;
        let url = reqwest::Url::parse(&cfg.url)
            .map_err(|e| ctx.invalid(format!("url {:?}: {e}", redact_url(&cfg.url))))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ctx.invalid(format!(
                "url {:?}: expected an http:// or https:// URL",
                redact_url(&cfg.url)
            )));
        }
        let instance = match &cfg.instance {
            Some(i) => i.clone(),
            None => {
                let host = url.host_str().unwrap_or("");
                match url.port_or_known_default() {
                    Some(p) => format!("{host}:{p}"),
                    None => host.to_string(),
                }
            }
        };
        let job = cfg.job.clone().unwrap_or_else(|| ctx.name.to_string());
        let mut target: Vec<(String, String)> = vec![
            ("job".to_string(), job.clone()),
            ("instance".to_string(), instance.clone()),
        ];
        for (k, v) in &cfg.labels {
            target.retain(|(tk, _)| tk != k);
            target.push((k.clone(), v.clone()));
        }
        let bearer = match &cfg.bearer_token {
            Some(s) => {
                let token = s
                    .read()
                    .map_err(|e| ctx.invalid(format!("bearer_token: {e}")))?;
                let mut v =
                    reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                        .map_err(|_| ctx.invalid("bearer_token: not a valid header value"))?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let budget = round_budget(schedule.timeout);
        crate::common::tls::init_tls();
        let client = reqwest::Client::builder()
            .timeout(budget)
            .connect_timeout(budget)
            .user_agent(concat!("medic/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(5))
            // scraping is local by nature; an inherited HTTP_PROXY would only get in the way
            .no_proxy()
            .build()
            .map_err(|e| ctx.invalid(format!("http client: {e}")))?;
        // the per-round series carry the target's labels, as Prometheus' `up` does
        let base = |n: &str| {
            Labels::new(
                std::iter::once((METRIC_NAME, n))
                    .chain(target.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            )
        };
        let up_labels = base("up");
        let duration_labels = base("scrape_duration_seconds");
        let scraped_labels = base("scrape_samples_scraped");
        let error_labels = FailureReason::ALL
            .map(|r| base("medic_scrape_errors_total").with("reason", r.as_str()));
        let duplicate_labels = base("medic_scrape_errors_total").with("reason", "duplicate");
        Ok(ScrapeCollector {
            name: ctx.name.to_string(),
            shown: redact_url(url.as_str()),
            url,
            client,
            target,
            honor_labels: cfg.honor_labels,
            honor_timestamps: cfg.honor_timestamps,
            sample_limit: cfg.sample_limit,
            new_series_limit: cfg.new_series_limit,
            body_size_limit: cfg.body_size_limit.0,
            bearer,
            schedule,
            budget,
            up_labels,
            duration_labels,
            scraped_labels,
            error_labels,
            duplicate_labels,
            state: Mutex::new(State::default()),
            outage: OutageLog::default(),
        })
    }
}

/// Why a scrape failed (the `reason` label of `medic_scrape_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    Timeout,
    Connect,
    HttpStatus,
    BodyTooLarge,
    Parse,
    SampleLimit,
}

impl FailureReason {
    pub const ALL: [FailureReason; 6] = [
        FailureReason::Timeout,
        FailureReason::Connect,
        FailureReason::HttpStatus,
        FailureReason::BodyTooLarge,
        FailureReason::Parse,
        FailureReason::SampleLimit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Timeout => "timeout",
            FailureReason::Connect => "connect",
            FailureReason::HttpStatus => "http_status",
            FailureReason::BodyTooLarge => "body_too_large",
            FailureReason::Parse => "parse",
            FailureReason::SampleLimit => "sample_limit",
        }
    }
}

/// A failed scrape: the reason and a message for the log.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ScrapeFailure {
    pub reason: FailureReason,
    pub message: String,
}

impl From<ParseError> for ScrapeFailure {
    fn from(e: ParseError) -> Self {
        ScrapeFailure {
            reason: FailureReason::Parse,
            message: format!("malformed exposition: {e}"),
        }
    }
}

struct CacheEntry {
    labels: Labels,
    round: u64,
    /// Shared by every raw text of one label set (`x`, `x{a=""}`, reordered labels).
    seen: Arc<Seen>,
}

/// When a label set was last stored: the round and the sample's timestamp, so a second sample
/// of the same series and timestamp in one scrape is found as a duplicate.
#[derive(Default)]
struct Seen {
    round: std::sync::atomic::AtomicU64,
    ts: std::sync::atomic::AtomicI64,
}

#[derive(Default)]
struct State {
    /// Label sets built on first sight, keyed by the series' raw text, so a steady target
    /// costs no label building after its first scrape.
    cache: FxHashMap<Box<str>, CacheEntry>,
    /// One [`Seen`] per label set of `cache`, to share it between its raw texts.
    seen: FxHashMap<Labels, Arc<Seen>>,
    round: u64,
    errors: [u64; 6],
    /// Samples dropped as duplicates (the first of a series wins, as in Prometheus).
    duplicates: u64,
    last_error: Option<ScrapeFailure>,
}

/// The running scrape collector.
pub struct ScrapeCollector {
    name: String,
    url: reqwest::Url,
    /// `url` with any password redacted: what messages show.
    shown: String,
    client: reqwest::Client,
    target: Vec<(String, String)>,
    honor_labels: bool,
    honor_timestamps: bool,
    sample_limit: usize,
    new_series_limit: u32,
    body_size_limit: u64,
    bearer: Option<reqwest::header::HeaderValue>,
    schedule: Schedule,
    /// Time a round may spend on the target (within the scheduler's timeout).
    budget: StdDuration,
    up_labels: Labels,
    duration_labels: Labels,
    scraped_labels: Labels,
    error_labels: [Labels; 6],
    duplicate_labels: Labels,
    // Held only for the synchronous parse, never across an await, so a wait on it is bounded
    // by one parse.
    state: Mutex<State>,
    outage: OutageLog,
}

const ACCEPT: &str =
    "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1";

impl ScrapeCollector {
    /// The last failure, if the last scrape failed (for `medic collect --once` and tests).
    pub fn last_error(&self) -> Option<ScrapeFailure> {
        self.lock().last_error.clone()
    }

    /// Parses a body as if this target had served it, appending its samples to `out`
    /// (without the per-round `up`/`scrape_*` series or staleness). Returns the sample count.
    pub fn ingest_body(
        &self,
        body: &str,
        format: Format,
        now_ms: i64,
        out: &mut Vec<Sample>,
    ) -> Result<usize, ScrapeFailure> {
        let mut st = self.lock();
        // a round of its own, so its series are not taken for duplicates of the last call's
        st.round += 1;
        self.ingest(&mut st, body, format, now_ms, out)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a cache and counters; one torn by a panic is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn fetch(&self) -> Result<(String, Format), ScrapeFailure> {
        let net = |e: reqwest::Error| ScrapeFailure {
            reason: if e.is_timeout() {
                FailureReason::Timeout
            } else {
                FailureReason::Connect
            },
            message: format!("GET {}: {e}", self.shown),
        };
        let mut req = self
            .client
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, ACCEPT)
            .header(
                "X-Prometheus-Scrape-Timeout-Seconds",
                format!("{}", self.budget.as_secs_f64()),
            );
        if let Some(t) = &self.bearer {
            req = req.header(reqwest::header::AUTHORIZATION, t.clone());
        }
        let mut resp = req.send().await.map_err(net)?;
        if !resp.status().is_success() {
            return Err(ScrapeFailure {
                reason: FailureReason::HttpStatus,
                message: format!("GET {}: HTTP status {}", self.shown, resp.status()),
            });
        }
        let too_large = |n: u64| ScrapeFailure {
            reason: FailureReason::BodyTooLarge,
            message: format!(
                "GET {}: body of {n} bytes or more exceeds body_size_limit of {} bytes",
                self.shown, self.body_size_limit
            ),
        };
        if let Some(len) = resp.content_length() {
            if len > self.body_size_limit {
                return Err(too_large(len));
            }
        }
        let format = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map_or(Format::Prometheus, Format::from_content_type);
        let mut buf = Vec::with_capacity(resp.content_length().unwrap_or(0) as usize);
        while let Some(chunk) = resp.chunk().await.map_err(net)? {
            if (buf.len() + chunk.len()) as u64 > self.body_size_limit {
                return Err(too_large((buf.len() + chunk.len()) as u64));
            }
            buf.extend_from_slice(&chunk);
        }
        let body = String::from_utf8(buf).map_err(|e| ScrapeFailure {
            reason: FailureReason::Parse,
            message: format!(
                "GET {}: body is not UTF-8 (invalid byte at offset {})",
                self.shown,
                e.utf8_error().valid_up_to()
            ),
        })?;
        Ok((body, format))
    }

    /// Parses `body` into `out`. On error `out` may hold part of the scrape; the caller
    /// truncates it.
    fn ingest(
        &self,
        st: &mut State,
        body: &str,
        format: Format,
        now_ms: i64,
        out: &mut Vec<Sample>,
    ) -> Result<usize, ScrapeFailure> {
        let round = st.round;
        let mut n = 0usize;
        let mut dups = 0u64;
        let limit = self.sample_limit;
        let r = exposition::parse::<ScrapeFailure, _>(body, format, |s| {
            n += 1;
            if limit > 0 && n > limit {
                return Err(ScrapeFailure {
                    reason: FailureReason::SampleLimit,
                    message: format!("GET {}: more than sample_limit {limit} samples", self.shown),
                });
            }
            let ts = match s.timestamp_ms {
                Some(t) if self.honor_timestamps => t,
                _ => now_ms,
            };
            let State { cache, seen, .. } = &mut *st;
            let (labels, cell) = match cache.get_mut(s.series) {
                Some(e) => {
                    e.round = round;
                    (&e.labels, &e.seen)
                }
                None => {
                    let labels = self.target_labels(s.name, s.labels);
                    let cell = seen.entry(labels.clone()).or_default().clone();
                    let e = cache.entry(s.series.into()).or_insert(CacheEntry {
                        labels,
                        round,
                        seen: cell,
                    });
                    (&e.labels, &e.seen)
                }
            };
            use std::sync::atomic::Ordering::Relaxed;
            if cell.round.load(Relaxed) == round && cell.ts.load(Relaxed) == ts {
                // Prometheus keeps the first sample of a series and counts the others
                dups += 1;
                return Ok(());
            }
            cell.round.store(round, Relaxed);
            cell.ts.store(ts, Relaxed);
            out.push(Sample::new(labels.clone(), ts, s.value));
            Ok(())
        });
        r?;
        // only a scrape that is stored counts its duplicates
        st.duplicates += dups;
        Ok(n)
    }

    /// The stored label set of an exposed sample: its own labels plus the target's, with
    /// conflicts resolved by `honor_labels`.
    fn target_labels(&self, name: &str, exposed: &[(&str, std::borrow::Cow<'_, str>)]) -> Labels {
        let mut pairs: Vec<(String, String)> =
            Vec::with_capacity(exposed.len() + 1 + self.target.len());
        pairs.push((METRIC_NAME.to_string(), name.to_string()));
        pairs.extend(exposed.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        for (tk, tv) in &self.target {
            let clash = pairs.iter().position(|(k, v)| k == tk && !v.is_empty());
            match clash {
                Some(_) if self.honor_labels => {}
                Some(i) => {
                    let mut renamed = format!("exported_{tk}");
                    while pairs.iter().any(|(k, _)| *k == renamed) {
                        renamed.insert_str(0, "exported_");
                    }
                    pairs[i].0 = renamed;
                    pairs.push((tk.clone(), tv.clone()));
                }
                None => {
                    pairs.retain(|(k, _)| k != tk);
                    pairs.push((tk.clone(), tv.clone()));
                }
            }
        }
        Labels::new(pairs)
    }
}

#[async_trait]
impl Collector for ScrapeCollector {
    fn name(&self) -> &str {
        &self.name
    }

    fn interval(&self) -> StdDuration {
        self.schedule.interval
    }

    fn timeout(&self) -> StdDuration {
        self.schedule.timeout
    }

    fn new_series_limit(&self) -> Option<(u32, u32)> {
        // the burst: a whole first scrape (or the rate itself, without a sample limit)
        let burst = u32::try_from(self.sample_limit).unwrap_or(u32::MAX);
        (self.new_series_limit > 0).then_some((self.new_series_limit, burst))
    }

    async fn collect(&self, now_ms: i64, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        let started = Instant::now();
        // reqwest's own timeout covers the request; this one also covers a body that trickles.
        let fetched = match tokio::time::timeout(self.budget, self.fetch()).await {
            Ok(r) => r,
            Err(_) => Err(ScrapeFailure {
                reason: FailureReason::Timeout,
                message: format!("GET {}: timed out after {:?}", self.shown, self.budget),
            }),
        };
        let mut st = self.lock();
        st.round += 1;
        let round = st.round;
        let mark = out.len();
        let result =
            fetched.and_then(|(body, format)| self.ingest(&mut st, &body, format, now_ms, out));
        let scraped = match &result {
            Ok(n) => *n,
            Err(_) => {
                // a failed scrape stores nothing of the body, as Prometheus does
                out.truncate(mark);
                0
            }
        };
        // Drop cached label sets of series this scrape no longer has. (The scheduler writes
        // their stale markers, as it does for every collector.)
        st.cache.retain(|_, e| e.round == round);
        // a label set none of the kept raw texts shares any more
        st.seen.retain(|_, c| Arc::strong_count(c) > 1);
        let up = result.is_ok();
        match result {
            Ok(_) => {
                self.outage.ok(&self.name);
                st.last_error = None;
            }
            Err(f) => {
                st.errors[f.reason as usize] += 1;
                self.outage.failed(
                    &self.name,
                    &format_args!("{}: {}", f.reason.as_str(), f.message),
                );
                st.last_error = Some(f);
            }
        }
        out.push(Sample::new(
            self.up_labels.clone(),
            now_ms,
            if up { 1.0 } else { 0.0 },
        ));
        out.push(Sample::new(
            self.duration_labels.clone(),
            now_ms,
            started.elapsed().as_secs_f64(),
        ));
        out.push(Sample::new(
            self.scraped_labels.clone(),
            now_ms,
            scraped as f64,
        ));
        for (i, l) in self.error_labels.iter().enumerate() {
            out.push(Sample::new(l.clone(), now_ms, st.errors[i] as f64));
        }
        out.push(Sample::new(
            self.duplicate_labels.clone(),
            now_ms,
            st.duplicates as f64,
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx_build(cfg: &ScrapeConfig) -> Result<ScrapeCollector, BuildError> {
        ScrapeCollector::new(cfg, &BuildContext::new("svc"))
    }

    fn collector(yaml: &str) -> ScrapeCollector {
        let cfg: ScrapeConfig = serde_saphyr::from_str(yaml).unwrap();
        ctx_build(&cfg).unwrap()
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(ByteSize::parse("10MiB").unwrap(), ByteSize(10 << 20));
        assert_eq!(ByteSize::parse("10MB").unwrap(), ByteSize(10_000_000));
        assert_eq!(ByteSize::parse("123").unwrap(), ByteSize(123));
        assert!(
            ByteSize::parse("10XB")
                .unwrap_err()
                .contains("expected B, KB")
        );
        assert!(ByteSize::parse("lots").is_err());
    }

    #[test]
    fn config_defaults_and_errors() {
        let c = collector("url: http://127.0.0.1:9/metrics\n");
        assert_eq!(c.target[0], ("job".to_string(), "svc".to_string()));
        assert_eq!(
            c.target[1],
            ("instance".to_string(), "127.0.0.1:9".to_string())
        );
        assert_eq!(c.sample_limit, 50_000);
        assert_eq!(c.schedule.interval, StdDuration::from_secs(15));
        assert_eq!(c.budget, StdDuration::from_secs(9));
        let bad: Result<ScrapeConfig, _> = serde_saphyr::from_str("url: x\nsurprise: 1\n");
        assert!(bad.is_err());
        let cfg: ScrapeConfig = serde_saphyr::from_str("url: ftp://x/\n").unwrap();
        assert!(ctx_build(&cfg).is_err());
    }

    #[test]
    fn label_conflicts() {
        let c = collector("url: http://h:1/m\nlabels: {env: prod}\n");
        let l = c.target_labels(
            "m",
            &[
                ("job", "inner".into()),
                ("exported_job", "x".into()),
                ("a", "b".into()),
            ],
        );
        assert_eq!(l.get("job"), Some("svc"));
        assert_eq!(l.get("exported_exported_job"), Some("inner"));
        assert_eq!(l.get("exported_job"), Some("x"));
        assert_eq!(l.get("env"), Some("prod"));
        assert_eq!(c.up_labels.get("env"), Some("prod"));
        assert_eq!(c.error_labels[0].get("env"), Some("prod"));
        assert_eq!(l.get("instance"), Some("h:1"));
        assert_eq!(l.name(), Some("m"));

        let c = collector("url: http://h:1/m\nhonor_labels: true\n");
        let l = c.target_labels("m", &[("job", "inner".into())]);
        assert_eq!(l.get("job"), Some("inner"));
        assert_eq!(l.get("exported_job"), None);
        assert_eq!(l.get("instance"), Some("h:1"));
    }
}
