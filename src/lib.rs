//! medic: a self-healing production monitoring daemon.
//!
//! Data flows one way: `collect` and `detect` write samples into the `store`; `rules`
//! evaluates PromQL over it and emits alert transitions; `remedy` and `alert` act on them.
//! See DESIGN.md for the whole picture.

pub mod alert;
pub mod api;
pub mod collect;
pub mod config;
pub mod daemon;
pub mod detect;
pub mod journal;
pub mod remedy;
pub mod rules;
pub mod store;

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
