//! One supervised watch of a bucket, shared by everything that follows one (resources,
//! retained messages, shared-subscription members).
//!
//! A KV watch is an ordered consumer in one NATS server's memory. It fails outright after some
//! errors, and when its server restarts while this node stays connected to another, the client
//! notices only after missed heartbeats (many seconds; nats.rs#1596 is a watch that never
//! resumed). So the watch is restarted after an error, and also when it sits idle while the
//! bucket is ahead of it at two checks in a row. Either way it resumes after the last revision
//! it delivered, so nothing is skipped and nothing is delivered twice.

use std::time::Duration;

use async_nats::jetstream::kv::{Entry, Store, Watch};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// How long a failed watch waits before it starts again.
const RESTART: Duration = Duration::from_millis(500);

/// How long the watch waits for a change before it asks the bucket whether it is behind.
const BEHIND_CHECK: Duration = Duration::from_millis(500);

/// Where a watch begins.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// Every key's latest value, then every change.
    History,
    /// Every change after this revision.
    After(u64),
}

/// The entries of a bucket, in order, for as long as the node runs.
pub struct Watched {
    store: Store,
    /// What is watched, for the log.
    what: &'static str,
    /// The revision after the last entry delivered; 0 until one was (`Start::History`).
    next: u64,
    watch: Option<Watch>,
    /// `next` when the watch was last found behind.
    behind_since: Option<u64>,
    /// The bucket's revision that last restarted an idle watch, so that a revision the watch
    /// never delivers (a purge's marker, say) restarts it only once.
    restarted_for: u64,
}

impl Watched {
    pub fn new(store: Store, what: &'static str, start: Start) -> Watched {
        let next = match start {
            Start::History => 0,
            Start::After(revision) => revision + 1,
        };
        Watched { store, what, next, watch: None, behind_since: None, restarted_for: 0 }
    }

    /// The next entry; `None` once `stop` is cancelled. Cancel-safe: state changes only after
    /// an await completes.
    pub async fn next(&mut self, stop: &CancellationToken) -> Option<Entry> {
        loop {
            let Some(watch) = self.watch.as_mut() else {
                let opened = match self.next {
                    0 => self.store.watch_with_history(">").await,
                    next => self.store.watch_all_from_revision(next).await,
                };
                match opened {
                    Ok(watch) => {
                        self.watch = Some(watch);
                        self.behind_since = None;
                    }
                    Err(error) => {
                        warn!(what = self.what, %error, "Cannot watch the bucket; retrying.");
                        stop.run_until_cancelled(tokio::time::sleep(RESTART)).await?;
                    }
                }
                continue;
            };
            let next = tokio::select! {
                () = stop.cancelled() => return None,
                next = watch.next() => next,
                () = tokio::time::sleep(BEHIND_CHECK) => {
                    if self.behind().await {
                        self.watch = None;
                    }
                    continue;
                }
            };
            match next {
                Some(Ok(entry)) if entry.revision < self.next => {}
                Some(Ok(entry)) => {
                    self.next = entry.revision + 1;
                    return Some(entry);
                }
                Some(Err(error)) => {
                    warn!(what = self.what, %error, "The bucket watch failed; restarting it.");
                    self.watch = None;
                    stop.run_until_cancelled(tokio::time::sleep(RESTART)).await?;
                }
                None => {
                    self.watch = None;
                    stop.run_until_cancelled(tokio::time::sleep(RESTART)).await?;
                }
            }
        }
    }

    /// Whether the bucket was ahead of this watch at this check and the one before, with
    /// nothing delivered in between: a change written just before one check is usually on
    /// its way.
    async fn behind(&mut self) -> bool {
        let mut stream = self.store.stream.clone();
        let Ok(info) = stream.info().await else { return false };
        let last = info.state.last_sequence;
        let ahead = last >= self.next.max(1);
        if ahead && self.behind_since == Some(self.next) && last != self.restarted_for {
            self.restarted_for = last;
            return true;
        }
        self.behind_since = ahead.then_some(self.next);
        false
    }
}
