//! TLS: the crypto provider set-up, and the TLS settings a target takes (an HTTP probe, a
//! Redis server, an actuator's endpoint).

use std::path::PathBuf;

use serde::Deserialize;

/// Installs rustls' crypto provider (ring) for the process. reqwest and redis use rustls
/// without a built-in provider to keep the build small; call this before any TLS client is
/// built. Safe to call many times.
pub fn init_tls() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// TLS settings of a target (an HTTP probe, a Redis server, an actuator's endpoint).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of CA certificates to trust, e.g. for a self-signed target (a probe trusts
    /// them besides the system's; Redis only them). Relative to the config file's folder.
    #[serde(
        default,
        deserialize_with = "crate::common::yaml::deserialize_opt_path"
    )]
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (expired, self-signed, wrong name). A probe still reports the
    /// expiry.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}
