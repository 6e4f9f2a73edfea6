//! Log setup (tracing): human-readable lines or one JSON object per line (for journald or
//! a log shipper). The level comes from `--log-level`, else `RUST_LOG`, else `info`.

use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("invalid log filter {filter:?}: {source}")]
    Filter {
        filter: String,
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("a logger is already installed")]
    AlreadySet,
}

/// Installs the global subscriber, writing to stderr (journald captures it under systemd).
pub fn init(format: LogFormat, level: Option<&str>) -> Result<(), LoggingError> {
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).map_err(|source| LoggingError::Filter {
            filter: l.to_string(),
            source,
        })?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Plain => builder
            // Colour only for a terminal: journald and files get plain text.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
    };
    result.map_err(|_| LoggingError::AlreadySet)
}
