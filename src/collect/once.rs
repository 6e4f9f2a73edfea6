//! `medic collect`: run the configured collectors once and print what they return, in the
//! Prometheus text format. For checking a collector's configuration, and for running the GPU
//! collector by hand on a GPU host.

use std::fmt::Write as _;

use std::sync::Arc;

use super::Collector;
use crate::store::{METRIC_NAME, Sample};

/// One collector's round: its samples, or why it failed.
pub struct OnceResult {
    pub name: String,
    pub result: Result<Vec<Sample>, String>,
}

/// Runs each collector once, all at the same time, each under its own timeout.
pub async fn collect_once(built: Vec<Arc<dyn Collector>>) -> Result<Vec<OnceResult>, String> {
    let now = crate::common::time::now_ms();
    let rounds = built.into_iter().map(|c| async move {
        let mut out = Vec::new();
        let result = match tokio::time::timeout(c.timeout(), c.collect(now, &mut out)).await {
            Ok(Ok(())) => Ok(out),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("timed out after {:?}", c.timeout())),
        };
        OnceResult {
            name: c.name().to_string(),
            result,
        }
    });
    let mut results = Vec::new();
    // a handful of collectors: join them by spawning, so slow ones overlap
    let handles: Vec<_> = rounds.map(tokio::spawn).collect();
    for h in handles {
        match h.await {
            Ok(r) => results.push(r),
            Err(e) => return Err(format!("a collector panicked: {e}")),
        }
    }
    Ok(results)
}

/// Writes samples in the Prometheus text format (0.0.4), sorted by series, with a sample's
/// timestamp only where it differs from `now_ms`.
pub fn write_exposition(samples: &[Sample], now_ms: Option<i64>) -> String {
    let mut sorted: Vec<&Sample> = samples.iter().collect();
    sorted.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut s = String::new();
    for x in sorted {
        s.push_str(x.labels.name().unwrap_or(""));
        let mut first = true;
        for (k, v) in x.labels.iter().filter(|(k, _)| *k != METRIC_NAME) {
            s.push(if first { '{' } else { ',' });
            first = false;
            let _ = write!(s, "{k}=\"");
            for c in v.chars() {
                match c {
                    '\\' => s.push_str("\\\\"),
                    '"' => s.push_str("\\\""),
                    '\n' => s.push_str("\\n"),
                    c => s.push(c),
                }
            }
            s.push('"');
        }
        if !first {
            s.push('}');
        }
        s.push(' ');
        let v = x.value;
        if v.is_nan() {
            s.push_str("NaN");
        } else if v == f64::INFINITY {
            s.push_str("+Inf");
        } else if v == f64::NEG_INFINITY {
            s.push_str("-Inf");
        } else {
            let _ = write!(s, "{v}");
        }
        if now_ms != Some(x.timestamp_ms) {
            let _ = write!(s, " {}", x.timestamp_ms);
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::exposition::{Format, parse_to_vec};
    use crate::store::Labels;

    #[test]
    fn exposition_round_trips_through_the_parser() {
        let samples = vec![
            Sample::new(
                Labels::new([(METRIC_NAME, "b"), ("path", "C:\\x \"q\"\nz")]),
                5,
                1.5,
            ),
            Sample::new(Labels::from_name("a"), 7, f64::NEG_INFINITY),
            Sample::new(Labels::from_name("c"), 5, f64::NAN),
        ];
        let text = write_exposition(&samples, Some(5));
        assert!(text.starts_with("a -Inf 7\nb{path="), "{text}");
        let back = parse_to_vec(&text, Format::Prometheus).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[1].labels[0].1, "C:\\x \"q\"\nz");
        assert_eq!(back[1].value, 1.5);
        assert_eq!(back[1].timestamp_ms, None);
        assert!(back[2].value.is_nan());
    }
}
