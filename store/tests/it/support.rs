//! Bounded waits shared by every test: nothing here sleeps for a fixed time to "let things
//! settle"; each wait names what it waits for and fails with that name when it times out.

use std::future::Future;
use std::time::Duration;

use anyhow::{bail, Result};
use flotilla_store::{WatchBatch, Watcher};
use tokio::time::Instant;

/// How often a condition is polled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long a watch event may take to arrive once its write has been acknowledged.
pub const WATCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Polls `probe` every [`POLL_INTERVAL`] until it returns `Some`, for at most `timeout`.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Returns the watcher's next batch, failing if none arrives within [`WATCH_TIMEOUT`].
pub async fn next_batch(watcher: &mut Watcher, what: &str) -> Result<WatchBatch> {
    match tokio::time::timeout(WATCH_TIMEOUT, watcher.next()).await {
        Err(_) => bail!("timed out after {WATCH_TIMEOUT:?} waiting for a watch batch: {what}"),
        Ok(None) => bail!("the watch ended while waiting for {what}"),
        Ok(Some(Err(err))) => bail!("the watch failed while waiting for {what}: {err:?}"),
        Ok(Some(Ok(batch))) => Ok(batch),
    }
}
