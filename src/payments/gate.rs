//! Throttles order queries to WeChat: at most one per order every [`QUERY_EVERY`], and callers
//! who ask while a query for the same order is in flight share its result instead of sending
//! their own.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

/// Shortest time between two order queries for one order.
pub const QUERY_EVERY: Duration = Duration::from_secs(5);
/// Orders tracked before old entries are swept.
const SWEEP_ABOVE: usize = 10_000;

struct Entry<T> {
    started: Instant,
    result: Arc<OnceCell<T>>,
}

/// One gate per kind of query; `T` is the shared result.
pub struct QueryGate<T> {
    entries: Mutex<HashMap<String, Entry<T>>>,
    every: Duration,
}

impl<T: Clone> QueryGate<T> {
    pub fn new(every: Duration) -> Self {
        QueryGate {
            entries: Mutex::new(HashMap::new()),
            every,
        }
    }

    /// Runs `query` for `key` unless one ran less than `every` ago. Concurrent callers for the
    /// same key share one run and its result; a caller inside the quiet period gets `None`.
    pub async fn run<F, Fut>(&self, key: &str, query: F) -> Option<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let cell = {
            let mut entries = self.entries.lock().expect("gate lock");
            let now = Instant::now();
            match entries.get(key) {
                // Queried recently: stay quiet.
                Some(entry)
                    if entry.result.initialized()
                        && now.duration_since(entry.started) < self.every =>
                {
                    return None;
                }
                // In flight: join it. Should its caller go away before it finishes, the first
                // joiner runs its own query in its place.
                Some(entry) if !entry.result.initialized() => entry.result.clone(),
                _ => {
                    if entries.len() > SWEEP_ABOVE {
                        let every = self.every;
                        entries.retain(|_, e| {
                            !e.result.initialized() || now.duration_since(e.started) < every
                        });
                    }
                    let cell = Arc::new(OnceCell::new());
                    entries.insert(
                        key.to_owned(),
                        Entry {
                            started: now,
                            result: cell.clone(),
                        },
                    );
                    cell
                }
            }
        };
        Some(cell.get_or_init(query).await.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_callers_share_one_query_and_later_ones_wait_their_turn() {
        let gate = Arc::new(QueryGate::new(Duration::from_secs(2)));
        let runs = Arc::new(AtomicUsize::new(0));
        let mut joins = Vec::new();
        for _ in 0..20 {
            let gate = gate.clone();
            let runs = runs.clone();
            joins.push(tokio::spawn(async move {
                gate.run("o1", || async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    7
                })
                .await
            }));
        }
        for join in joins {
            assert_eq!(join.await.unwrap(), Some(7));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Within the quiet period: no query.
        assert_eq!(gate.run("o1", || async { 8 }).await, None);
        // Another order is not throttled by this one.
        assert_eq!(gate.run("o2", || async { 9 }).await, Some(9));
        // A query whose caller went away is taken over by the next caller.
        let abandoned = tokio::time::timeout(
            Duration::from_millis(10),
            gate.run("o3", std::future::pending::<i32>),
        )
        .await;
        assert!(abandoned.is_err());
        assert_eq!(gate.run("o3", || async { 11 }).await, Some(11));
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(gate.run("o1", || async { 10 }).await, Some(10));
    }
}
