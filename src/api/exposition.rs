//! The `/metrics` body: medic's own metrics and, when asked, the latest value of every
//! collected series, encoded by prometheus-client.
//!
//! prometheus-client writes OpenMetrics. Prometheus negotiates that format, but the classic
//! text format (0.0.4) is what `promtool check metrics`, curl users and older scrapers read,
//! and the two differ for counters (`# TYPE x counter` + `x_total` vs `# TYPE x_total counter`)
//! and for untyped families. So the OpenMetrics text is rewritten line by line for clients
//! that did not ask for OpenMetrics.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::common::metrics::SelfMetrics;
use crate::common::names::{is_legacy_label_name, is_legacy_metric_name};
use crate::promql::LOOKBACK_DELTA_MS;
use crate::store::{METRIC_NAME, Store};

/// Wire format of a `/metrics` response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/openmetrics-text; version=1.0.0`
    OpenMetrics,
    /// `text/plain; version=0.0.4` (Prometheus' classic text format)
    Text,
}

impl Format {
    /// Picks the format from an `Accept` header: OpenMetrics only when the client lists it.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Encodes `/metrics`. `store` is `Some` when collected series are exported too; `now_ms`
/// bounds how old an exported sample may be (Prometheus' 5 minute lookback).
pub fn render(
    metrics: &SelfMetrics,
    store: Option<&Arc<Store>>,
    now_ms: i64,
    format: Format,
) -> Result<String, std::fmt::Error> {
    let mut om = String::with_capacity(8 * 1024);
    encode_registry(&mut om, &metrics.registry)?;
    if let Some(store) = store {
        // A collected series must not reuse the name of one of medic's own families
        // (e.g. a scrape of medic itself): a duplicate family is an invalid exposition.
        let own: HashSet<String> = om
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .flat_map(|n| {
                [
                    n.to_string(),
                    format!("{n}_total"),
                    format!("{n}_bucket"),
                    format!("{n}_sum"),
                    format!("{n}_count"),
                    format!("{n}_created"),
                ]
            })
            .collect();
        let mut collected = Registry::default();
        collected.register_collector(Box::new(StoreExport {
            store: Arc::clone(store),
            now_ms,
            skip: own,
        }));
        encode_registry(&mut om, &collected)?;
    }
    encode_eof(&mut om)?;
    Ok(match format {
        Format::OpenMetrics => om,
        Format::Text => openmetrics_to_text(&om),
    })
}

/// Rewrites prometheus-client's OpenMetrics output into the classic text format: counter
/// families take their `_total` sample name, `unknown` becomes `untyped`, `# UNIT` and
/// `# EOF` go.
pub fn openmetrics_to_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    // HELP comes before TYPE, and whether its name needs `_total` depends on the TYPE.
    let mut pending_help: Option<(&str, &str)> = None;
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            flush_help(&mut out, pending_help.take(), None);
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            pending_help = Some((name, help));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, ty) = match ty {
                "counter" if !name.ends_with("_total") => (format!("{name}_total"), "counter"),
                "unknown" => (name.to_string(), "untyped"),
                "info" => (format!("{name}_info"), "gauge"),
                other => (name.to_string(), other),
            };
            flush_help(&mut out, pending_help.take(), Some(&name));
            let _ = writeln!(out, "# TYPE {name} {ty}");
            continue;
        }
        flush_help(&mut out, pending_help.take(), None);
        out.push_str(line);
        out.push('\n');
    }
    flush_help(&mut out, pending_help.take(), None);
    out
}

fn flush_help(out: &mut String, help: Option<(&str, &str)>, renamed: Option<&str>) {
    if let Some((name, text)) = help {
        let name = match renamed {
            // The TYPE line that follows is for the same family under its text-format name.
            Some(r) if r.starts_with(name) => r,
            _ => name,
        };
        let _ = writeln!(out, "# HELP {name} {text}");
    }
}

/// Suffixes that belong to counters, histograms and summaries: a collected family named
/// like that is exposed as untyped rather than as a gauge, so linters do not object.
const TYPED_SUFFIXES: [&str; 6] = ["_total", "_count", "_sum", "_bucket", "_created", "_info"];

/// A label that can be written in the classic text format (quoted UTF-8 names are not
/// understood by every scraper yet) and is not reserved.
fn valid_label_name(s: &str) -> bool {
    is_legacy_label_name(s) && !s.starts_with("__")
}

/// Exposes the newest sample of each live series in the store, grouped by metric name.
struct StoreExport {
    store: Arc<Store>,
    now_ms: i64,
    skip: HashSet<String>,
}

// prometheus-client wants collectors to be Debug.
impl std::fmt::Debug for StoreExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreExport")
            .field("now_ms", &self.now_ms)
            .finish()
    }
}

impl Collector for StoreExport {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let reader = self.store.reader();
        let mut names: Vec<&str> = reader
            .names()
            .filter(|n| is_legacy_metric_name(n) && !self.skip.contains(*n))
            .collect();
        names.sort_unstable();
        for name in names {
            let mut rows: Vec<(Vec<(&str, &str)>, f64)> = Vec::new();
            for &id in reader.series_by_name(name) {
                let (Some(labels), Some((_, value))) = (
                    reader.labels(id),
                    reader.latest(id, self.now_ms, LOOKBACK_DELTA_MS),
                ) else {
                    continue;
                };
                let pairs: Vec<(&str, &str)> = labels
                    .iter()
                    .filter(|(k, _)| *k != METRIC_NAME && valid_label_name(k))
                    .collect();
                rows.push((pairs, value));
            }
            if rows.is_empty() {
                continue;
            }
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            let ty = if TYPED_SUFFIXES.iter().any(|s| name.ends_with(s)) {
                MetricType::Unknown
            } else {
                MetricType::Gauge
            };
            let mut family = encoder.encode_descriptor(name, "Collected by medic.", None, ty)?;
            if let [(pairs, value)] = rows.as_slice()
                && pairs.is_empty()
            {
                // A lone series without labels: `name 1`, not `name{} 1`.
                ConstGauge::new(*value).encode(family)?;
                continue;
            }
            for (pairs, value) in &rows {
                let slice: &[(&str, &str)] = pairs;
                ConstGauge::new(*value).encode(family.encode_family(&slice)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::metrics::labels;
    use crate::store::Labels;

    #[test]
    fn counters_and_untyped_rewritten_for_text_format() {
        let om = "# HELP medic_actions Remediation actions.\n# TYPE medic_actions counter\n\
                  medic_actions_total{rule=\"a\"} 1\n# HELP x_total Collected.\n\
                  # TYPE x_total unknown\nx_total 3\n# EOF\n";
        let text = openmetrics_to_text(om);
        assert_eq!(
            text,
            "# HELP medic_actions_total Remediation actions.\n# TYPE medic_actions_total counter\n\
             medic_actions_total{rule=\"a\"} 1\n# HELP x_total Collected.\n\
             # TYPE x_total untyped\nx_total 3\n"
        );
    }

    #[test]
    fn negotiation_prefers_text_unless_openmetrics_listed() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
            )),
            Format::OpenMetrics
        );
    }

    #[test]
    fn exports_latest_collected_values_grouped_and_escaped() {
        let m = SelfMetrics::default();
        m.actions_total
            .get_or_create(&labels(&[
                ("rule", "r"),
                ("action", "exec"),
                ("outcome", "ok"),
            ]))
            .inc();
        let store = Arc::new(Store::default());
        let up = Labels::new([("__name__", "probe_success"), ("probe", "api")]);
        store.append(&up, 1_000, 0.0);
        store.append(&up, 2_000, 1.0);
        let rx = Labels::new([
            ("__name__", "node_network_receive_bytes_total"),
            ("device", "we\"ird\\"),
        ]);
        store.append(&rx, 2_000, 42.0);
        let old = Labels::new([("__name__", "gone"), ("x", "y")]);
        store.append(&old, 1_000, 5.0);
        store.append(&Labels::from_name("node_load1"), 2_000, 0.5);
        store.mark_stale(&old, 1_500);
        // a collected series named like one of medic's own is left out
        store.append(&Labels::from_name("medic_actions_total"), 2_000, 7.0);

        let text = render(&m, Some(&store), 3_000, Format::Text).unwrap();
        assert!(text.contains("# TYPE probe_success gauge\nprobe_success{probe=\"api\"} 1.0\n"));
        assert!(text.contains(
            "# TYPE node_network_receive_bytes_total untyped\n\
             node_network_receive_bytes_total{device=\"we\\\"ird\\\\\"} 42.0\n"
        ));
        assert!(text.contains("# TYPE node_load1 gauge\nnode_load1 0.5\n"));
        assert!(!text.contains("gone"));
        assert!(!text.contains("medic_actions_total 7"));
        assert!(text.contains("# TYPE medic_actions_total counter\n"));
        assert!(!text.contains("# EOF"));

        let om = render(&m, None, 3_000, Format::OpenMetrics).unwrap();
        assert!(om.ends_with("# EOF\n"));
        assert!(!om.contains("probe_success"));
    }
}
