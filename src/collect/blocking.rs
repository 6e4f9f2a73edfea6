//! Work that must run on a blocking thread (NVML calls, /proc walks, statvfs), one round at a
//! time per collector. A timed-out round's thread cannot be killed; [`InFlight`] stops the
//! next rounds from stacking more threads onto whatever it hangs on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Whether a collector's blocking round is still running.
#[derive(Debug, Default, Clone)]
pub struct InFlight(Arc<AtomicBool>);

/// Held by the running round (moved onto its thread); clears [`InFlight`] when dropped.
#[derive(Debug)]
pub struct InFlightGuard(Arc<AtomicBool>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl InFlight {
    /// Marks a round as started, or None when the previous one has not finished.
    pub fn try_start(&self) -> Option<InFlightGuard> {
        self.0
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| InFlightGuard(self.0.clone()))
    }

    /// Whether a round is running now.
    pub fn busy(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Why a blocking round gave no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockingError {
    #[error("the previous round is still running (hung in a blocking call)")]
    Busy,
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
    #[error("the round panicked: {0}")]
    Panicked(String),
}

/// Runs `f` on a blocking thread, unless the previous round of `flight` still runs, and waits
/// for it at most `budget`. On a timeout the thread runs on and keeps `flight` busy.
pub async fn run_blocking<T: Send + 'static>(
    flight: &InFlight,
    budget: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, BlockingError> {
    let guard = flight.try_start().ok_or(BlockingError::Busy)?;
    let job = tokio::task::spawn_blocking(move || {
        let _guard = guard;
        f()
    });
    match tokio::time::timeout(budget, job).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(BlockingError::Panicked(e.to_string())),
        Err(_) => Err(BlockingError::TimedOut(budget)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hung_round_blocks_the_next_until_it_ends() {
        let flight = InFlight::default();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let r = run_blocking(&flight, Duration::from_millis(50), move || {
            let _ = rx.recv();
        })
        .await;
        assert_eq!(r, Err(BlockingError::TimedOut(Duration::from_millis(50))));
        assert_eq!(
            run_blocking(&flight, Duration::from_secs(30), || 1).await,
            Err(BlockingError::Busy)
        );
        drop(tx);
        while flight.busy() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            run_blocking(&flight, Duration::from_secs(30), || 2).await,
            Ok(2)
        );
    }
}
