//! The bottom layer: small value types every other module may use and that use nothing of
//! medic's own: durations, secrets, YAML loading with located errors, time formatting,
//! URL redaction, rate-limited logging, metric and label names, TLS set-up, Redis connection
//! settings, and the registry of medic's own metrics.

pub mod duration;
pub mod metrics;
#[cfg(test)]
pub mod mutate;
pub mod names;
pub mod redact;
pub mod redis;
pub mod secret;
pub mod throttle;
pub mod time;
pub mod tls;
pub mod yaml;

pub use duration::Duration;
pub use redact::redact_url;
pub use secret::{Secret, SecretString};
pub use yaml::{LoadError, YamlError};
