//! systemd's notify protocol (`Type=notify`): READY, STATUS, RELOADING, STOPPING and the
//! watchdog. Every call is a no-op when `NOTIFY_SOCKET` is unset (not under systemd).

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        // Losing a status line is harmless; losing READY makes systemd time the start out,
        // which the log then explains.
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

/// Startup (or a reload) finished.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A free-form status line (`systemctl status` shows it).
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// A reload started. systemd ≥ 253 (`Type=notify-reload`) wants the monotonic time with it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[
            NotifyState::Reloading,
            now,
            NotifyState::Status("reloading configuration"),
        ]),
        Err(_) => send(&[
            NotifyState::Reloading,
            NotifyState::Status("reloading configuration"),
        ]),
    }
}

/// Shutdown started.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
}

/// Pings the watchdog at half its period, for as long as the runtime is alive (a wedged
/// runtime stops the pings and systemd restarts the service).
pub async fn watchdog(period: Duration) {
    let mut tick = tokio::time::interval((period / 2).max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        send(&[NotifyState::Watchdog]);
    }
}
