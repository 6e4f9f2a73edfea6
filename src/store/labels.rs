//! Label sets: the identity of a series. `__name__` is an ordinary label.

use std::fmt;
use std::sync::Arc;

/// The label holding the metric name.
pub const METRIC_NAME: &str = "__name__";

/// An immutable, sorted set of label pairs. Cheap to clone (one `Arc`).
///
/// Sorted by name so that equality, hashing and the canonical text form do not depend on
/// the order labels were added in.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Labels(Arc<[(String, String)]>);

impl Labels {
    /// Builds a label set; later duplicates of a name win, empty values are dropped
    /// (Prometheus treats an empty value as an absent label).
    pub fn new<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut v: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        // stable sort keeps insertion order among equal names so the last one can win
        v.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, String)> = Vec::with_capacity(v.len());
        for (k, val) in v {
            match out.last_mut() {
                Some(last) if last.0 == k => last.1 = val,
                _ => out.push((k, val)),
            }
        }
        out.retain(|(_, v)| !v.is_empty());
        Labels(out.into())
    }

    /// A label set with just a metric name.
    pub fn from_name(name: &str) -> Self {
        Labels::new([(METRIC_NAME, name)])
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    /// The metric name, if any.
    pub fn name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A copy with `name` set to `value` (removed when `value` is empty).
    pub fn with(&self, name: &str, value: &str) -> Self {
        let mut v: Vec<(String, String)> =
            self.0.iter().filter(|(k, _)| k != name).cloned().collect();
        v.push((name.to_string(), value.to_string()));
        Labels::new(v)
    }

    /// A copy without the named labels.
    pub fn without(&self, names: &[&str]) -> Self {
        let v: Vec<(String, String)> = self
            .0
            .iter()
            .filter(|(k, _)| !names.contains(&k.as_str()))
            .cloned()
            .collect();
        Labels(v.into())
    }

    /// A copy without `__name__`.
    pub fn without_name(&self) -> Self {
        self.without(&[METRIC_NAME])
    }

    /// A stable 64-bit fingerprint (FNV-1a over the canonical pairs), used for alert identity.
    pub fn fingerprint(&self) -> u64 {
        let mut h: u64 = 0xcbf29ce484222325;
        for (k, v) in self.0.iter() {
            for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xff]) {
                h ^= b as u64;
                h = h.wrapping_mul(0x100000001b3);
            }
        }
        h
    }
}

impl Labels {
    /// Prometheus' `labels.Labels.Hash()`: XXH64 over `name 0xff value 0xff ...`.
    pub fn prometheus_hash(&self) -> u64 {
        let mut b = Vec::with_capacity(self.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
        for (k, v) in self.iter() {
            b.extend_from_slice(k.as_bytes());
            b.push(0xff);
            b.extend_from_slice(v.as_bytes());
            b.push(0xff);
        }
        super::hash::xxhash64(&b)
    }
}

impl fmt::Display for Labels {
    /// Prometheus' text form: `name{a="b", c="d"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.name() {
            f.write_str(n)?;
        }
        f.write_str("{")?;
        let mut first = true;
        for (k, v) in self.iter().filter(|(k, _)| *k != METRIC_NAME) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(
                f,
                "{k}=\"{}\"",
                v.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            )?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_deduplicated_and_empty_dropped() {
        let l = Labels::new([("b", "1"), ("a", "2"), ("b", "3"), ("c", "")]);
        assert_eq!(l.iter().collect::<Vec<_>>(), vec![("a", "2"), ("b", "3")]);
        assert_eq!(l.get("b"), Some("3"));
        assert_eq!(l.get("c"), None);
    }

    #[test]
    fn display_like_prometheus() {
        let l = Labels::new([("__name__", "up"), ("job", "a\"b")]);
        assert_eq!(l.to_string(), "up{job=\"a\\\"b\"}");
        assert_ne!(l.fingerprint(), l.without_name().fingerprint());
    }
}
