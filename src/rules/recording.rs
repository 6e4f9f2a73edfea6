//! Recording rules: the expression's result, renamed and relabelled, written back into the
//! store (series that disappear get stale markers from the group).

use crate::promql::Expr;
use crate::store::{Labels, METRIC_NAME, Sample};

/// A recording rule.
#[derive(Debug, Clone)]
pub struct RecordingRule {
    pub(crate) name: String,
    pub(crate) expr_text: String,
    pub(crate) expr: Expr,
    /// Labels set on every result (group labels merged in, the rule's winning).
    pub(crate) labels: Labels,
}

impl RecordingRule {
    pub(crate) fn new(name: String, expr_text: String, expr: Expr, labels: Labels) -> Self {
        RecordingRule {
            name,
            expr_text,
            expr,
            labels,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Names and labels the result as the rule says, stamped `ts`.
    pub fn apply(&self, result: &[Sample], ts: i64, limit: usize) -> Result<Vec<Sample>, String> {
        let mut out: Vec<Sample> = result
            .iter()
            .map(|s| {
                let mut pairs: Vec<(String, String)> = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                pairs.push((METRIC_NAME.into(), self.name.clone()));
                pairs.extend(
                    self.labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string())),
                );
                Sample::new(Labels::new(pairs), ts, s.value)
            })
            .collect();
        let mut seen: Vec<&Labels> = out.iter().map(|s| &s.labels).collect();
        seen.sort();
        if seen.windows(2).any(|w| w[0] == w[1]) {
            return Err(
                "vector contains metrics with the same labelset after applying rule labels".into(),
            );
        }
        if limit > 0 && out.len() > limit {
            return Err(format!("exceeded limit {limit} with {} series", out.len()));
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }
}
