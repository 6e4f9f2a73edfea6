//! Metric and label names. Prometheus 3 accepts any non-empty UTF-8 string as a name
//! (quoted in PromQL and in the text format: `{"my.metric"}`); the legacy character sets
//! still decide when a name can be written unquoted.

/// A valid metric name under Prometheus 3's UTF-8 validation scheme: any non-empty UTF-8
/// string (a Rust `str` is UTF-8 already). Rule files, `medic test` series and PromQL's
/// quoted names (`{"my.metric"}`) all use this one rule.
pub fn is_valid_metric_name(s: &str) -> bool {
    !s.is_empty()
}

/// A valid label name under Prometheus 3's UTF-8 scheme: any non-empty UTF-8 string.
pub fn is_valid_label_name(s: &str) -> bool {
    !s.is_empty()
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`: a metric name that needs no quoting.
pub fn is_legacy_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`: a label name that needs no quoting.
pub fn is_legacy_label_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_names() {
        assert!(is_legacy_metric_name("job:errors:rate5m"));
        assert!(!is_legacy_metric_name("foo-bar") && !is_legacy_metric_name("1x"));
        assert!(is_legacy_label_name("_a1") && !is_legacy_label_name("a:b"));
        assert!(!is_legacy_label_name("") && !is_legacy_metric_name(""));
        // Prometheus 3 (UTF-8 scheme): anything non-empty; 2.42 would reject these
        assert!(is_valid_metric_name("foo-bar") && is_valid_metric_name("my.metric"));
        assert!(is_valid_label_name("foo.bar") && is_valid_label_name("ü"));
        assert!(!is_valid_label_name("") && !is_valid_metric_name(""));
    }
}
