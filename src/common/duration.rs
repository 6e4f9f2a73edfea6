//! Human durations as Prometheus writes them: "500ms", "30s", "5m", "1h30m", "1d", "1w", "1y".

use std::fmt;
use std::time::Duration as StdDuration;

/// A duration read from YAML in Prometheus' notation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub StdDuration);

#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "invalid duration {input:?}: expected a number followed by a unit (ms, s, m, h, d, w, y), e.g. \"500ms\", \"30s\", \"1h30m\""
)]
pub struct DurationError {
    pub input: String,
}

impl Duration {
    pub fn from_secs(s: u64) -> Self {
        Duration(StdDuration::from_secs(s))
    }

    pub fn from_millis(ms: u64) -> Self {
        Duration(StdDuration::from_millis(ms))
    }

    pub fn as_millis_i64(&self) -> i64 {
        self.0.as_millis().min(i64::MAX as u128) as i64
    }

    pub fn std(&self) -> StdDuration {
        self.0
    }

    /// Parses Prometheus' duration syntax: one or more `<int><unit>` in decreasing units.
    pub fn parse(input: &str) -> Result<Self, DurationError> {
        let err = || DurationError {
            input: input.to_string(),
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(err());
        }
        if s == "0" {
            return Ok(Duration::default());
        }
        let bytes = s.as_bytes();
        let mut i = 0;
        let mut total_ms: u128 = 0;
        let mut last_unit_rank = usize::MAX;
        while i < bytes.len() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if start == i {
                return Err(err());
            }
            let n: u128 = s[start..i].parse().map_err(|_| err())?;
            let ustart = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            let (rank, ms) = match &s[ustart..i] {
                "y" => (0, 365 * 24 * 3_600_000),
                "w" => (1, 7 * 24 * 3_600_000),
                "d" => (2, 24 * 3_600_000),
                "h" => (3, 3_600_000),
                "m" => (4, 60_000),
                "s" => (5, 1000),
                "ms" => (6, 1),
                _ => return Err(err()),
            };
            if last_unit_rank != usize::MAX && rank <= last_unit_rank {
                return Err(err());
            }
            last_unit_rank = rank;
            total_ms = total_ms
                .checked_add(n.checked_mul(ms).ok_or_else(err)?)
                .ok_or_else(err)?;
        }
        let ms = u64::try_from(total_ms).map_err(|_| err())?;
        Ok(Duration(StdDuration::from_millis(ms)))
    }
}

impl fmt::Display for Duration {
    /// Prometheus' canonical form ("1h30m", "500ms", "0s").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("y", 365 * 24 * 3_600_000u128),
            ("w", 7 * 24 * 3_600_000),
            ("d", 24 * 3_600_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
            ("ms", 1),
        ] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for Duration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Duration::parse(s)
    }
}

impl<'de> serde::Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Duration::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl From<Duration> for StdDuration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_durations() {
        assert_eq!(
            Duration::parse("500ms").unwrap().0,
            StdDuration::from_millis(500)
        );
        assert_eq!(
            Duration::parse("1h30m").unwrap().0,
            StdDuration::from_secs(5400)
        );
        assert_eq!(
            Duration::parse("1d").unwrap().0,
            StdDuration::from_secs(86400)
        );
        assert_eq!(Duration::parse("0").unwrap().0, StdDuration::ZERO);
        assert!(Duration::parse("5").is_err());
        assert!(Duration::parse("30m1h").is_err());
        assert!(Duration::parse("1.5s").is_err());
        assert!(Duration::parse("").is_err());
    }

    #[test]
    fn displays_canonically() {
        assert_eq!(Duration::parse("90m").unwrap().to_string(), "1h30m");
        assert_eq!(Duration::parse("1500ms").unwrap().to_string(), "1s500ms");
        assert_eq!(Duration::default().to_string(), "0s");
    }
}
