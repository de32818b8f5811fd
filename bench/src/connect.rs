//! Opening many connections at once, with a bound on handshakes in progress, so a thousand
//! subscribers do not all land in the broker's accept backlog in the same instant.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Runs `open(i)` for `i` in `0..count`, at most `concurrency` at a time, and returns the
/// results in index order. Fails with the first error.
pub async fn many<T, F, Fut>(count: usize, concurrency: usize, open: F) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for i in 0..count {
        let permit = limit.clone().acquire_owned().await?;
        let future = open(i);
        tasks.spawn(async move {
            let result = future.await;
            drop(permit);
            (i, result)
        });
    }
    let mut opened = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        let (i, result) = joined?;
        match result {
            Ok(value) => opened.push((i, value)),
            Err(error) => {
                tasks.abort_all();
                return Err(error.context(format!("connection {i}")));
            }
        }
    }
    opened.sort_by_key(|(i, _)| *i);
    Ok(opened.into_iter().map(|(_, value)| value).collect())
}
