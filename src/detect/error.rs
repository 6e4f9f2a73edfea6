//! What can go wrong building or running a detector.

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("detector {detector}: {message}")]
    Config { detector: String, message: String },
    #[error("detector {detector}: query {query:?}: {message}")]
    Query {
        detector: String,
        query: String,
        message: String,
    },
    #[error("detector {detector}: evaluation failed: {message}")]
    Eval { detector: String, message: String },
    #[error("--detector {spec:?}: {message}")]
    Spec { spec: String, message: String },
    #[error("{source_name}:{line}:{column}: {message}")]
    Csv {
        source_name: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
}

impl DetectError {
    /// Where in `medic.yaml` the error is (`anomaly_detectors.NAME`, `slos.NAME`), if it is
    /// about one detector.
    pub fn config_path(&self) -> Option<String> {
        let (DetectError::Config { detector, .. }
        | DetectError::Query { detector, .. }
        | DetectError::Eval { detector, .. }) = self
        else {
            return None;
        };
        Some(match detector.strip_prefix("slo ") {
            Some(slo) => format!("slos.{slo}"),
            None => format!("anomaly_detectors.{detector}"),
        })
    }
}

/// Every error found building the detectors of a config.
#[derive(Debug)]
pub struct DetectErrors(pub Vec<DetectError>);

impl std::fmt::Display for DetectErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n  ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DetectErrors {}
