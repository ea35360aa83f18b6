//! A coarse monotonic clock that does not depend on any runtime being driven.
//!
//! The timer task marks a token due, but a task runs only while its runtime is driven: a
//! current-thread runtime used through `block_on` and idle between calls runs nothing
//! between them. So the hot path also compares the token's deadline with this clock: one
//! relaxed atomic load, no clock read, no syscall. A thread of the crate's own
//! (`tower-oauth-clock`) moves it on every [`TICK`] while any token cache is alive, and
//! ends when the last one is dropped.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// How often the clock moves on; a token may be used up to this long past its usable part
/// when the timer task could not run.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// Milliseconds since [`epoch`], as of the last tick.
static NOW_MS: AtomicU64 = AtomicU64::new(0);
/// Token caches alive; the clock thread ends when there are none.
static CACHES: AtomicUsize = AtomicUsize::new(0);
static RUNNING: AtomicBool = AtomicBool::new(false);

fn epoch() -> (Instant, SystemTime) {
    static EPOCH: OnceLock<(Instant, SystemTime)> = OnceLock::new();
    *EPOCH.get_or_init(|| (Instant::now(), SystemTime::now()))
}

/// Milliseconds since the epoch: the system's monotonic clock (not tokio's), or the wall
/// clock where it ran further (a suspended machine's monotonic clock stands still).
pub(crate) fn read_ms() -> u64 {
    let (instant, wall) = epoch();
    let elapsed = instant
        .elapsed()
        .max(SystemTime::now().duration_since(wall).unwrap_or_default());
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

/// The coarse time: at most one tick behind [`read_ms`] while the clock thread runs.
#[inline]
pub(crate) fn coarse_ms() -> u64 {
    NOW_MS.load(Ordering::Relaxed)
}

/// Held by each token cache: keeps the clock thread running.
pub(crate) struct ClockUser(());

impl ClockUser {
    pub(crate) fn new() -> ClockUser {
        CACHES.fetch_add(1, Ordering::SeqCst);
        NOW_MS.fetch_max(read_ms(), Ordering::Relaxed);
        if !RUNNING.swap(true, Ordering::SeqCst) {
            let spawned = std::thread::Builder::new()
                .name("tower-oauth-clock".into())
                .spawn(run);
            if spawned.is_err() {
                // No thread: the timer task alone marks tokens due, as before.
                RUNNING.store(false, Ordering::SeqCst);
                tracing::warn!(target: "tower_oauth", "could not start the coarse clock thread");
            }
        }
        ClockUser(())
    }
}

impl Drop for ClockUser {
    fn drop(&mut self) {
        CACHES.fetch_sub(1, Ordering::SeqCst);
    }
}

fn run() {
    loop {
        NOW_MS.fetch_max(read_ms(), Ordering::Relaxed);
        if CACHES.load(Ordering::SeqCst) == 0 {
            RUNNING.store(false, Ordering::SeqCst);
            // A cache made meanwhile may have seen RUNNING still true: carry on for it.
            if CACHES.load(Ordering::SeqCst) == 0 || RUNNING.swap(true, Ordering::SeqCst) {
                return;
            }
        }
        std::thread::sleep(TICK);
    }
}

impl std::fmt::Debug for ClockUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClockUser")
    }
}
