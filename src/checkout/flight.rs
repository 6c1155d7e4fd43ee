//! Calls to WeChat made once for everyone who needs them at the same moment.
//!
//! [`Flights::share`] is single-flight: callers for the same key while a call is in flight wait
//! for it and share its result instead of making their own (fifty shoppers opening one pay page
//! at once make one unifiedorder). [`Flights::throttle`] also keeps a quiet period after each
//! call: at most one per key every `quiet` (the status endpoint's order queries).
//!
//! Should the caller whose call is in flight go away, the first of those waiting makes the call
//! in its place. Memory is bounded: finished entries are swept once the map grows past
//! `SWEEP_ABOVE` keys.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

/// Keys tracked before finished entries are swept.
const SWEEP_ABOVE: usize = 10_000;

struct Entry<T> {
    started: Instant,
    result: Arc<OnceCell<T>>,
}

/// One set of flights per kind of call; `T` is the shared result.
pub struct Flights<T> {
    entries: Mutex<HashMap<String, Entry<T>>>,
    quiet: Duration,
}

impl<T: Clone> Flights<T> {
    /// Flights whose [`Flights::throttle`] keeps `quiet` between two calls for one key.
    pub fn new(quiet: Duration) -> Self {
        Flights {
            entries: Mutex::new(HashMap::new()),
            quiet,
        }
    }

    /// Runs `call` for `key`, or joins the run in flight for it and shares its result.
    pub async fn share<F, Fut>(&self, key: &str, call: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let cell = self.cell(key, false).expect("share never stays quiet");
        cell.get_or_init(call).await.clone()
    }

    /// Like [`Flights::share`], but `None` (and no call) within the quiet period after the
    /// last call for `key`.
    pub async fn throttle<F, Fut>(&self, key: &str, call: F) -> Option<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let cell = self.cell(key, true)?;
        Some(cell.get_or_init(call).await.clone())
    }

    /// The flight to wait on for `key`: the one in flight, or a new one; `None` when `quiet`
    /// asks for it and the last call was within the quiet period.
    fn cell(&self, key: &str, quiet: bool) -> Option<Arc<OnceCell<T>>> {
        let mut entries = self.entries.lock().expect("flights lock");
        let now = Instant::now();
        match entries.get(key) {
            Some(entry) if !entry.result.initialized() => return Some(entry.result.clone()),
            Some(entry) if quiet && now.duration_since(entry.started) < self.quiet => {
                return None;
            }
            _ => {}
        }
        if entries.len() > SWEEP_ABOVE {
            let every = self.quiet;
            entries.retain(|_, e| !e.result.initialized() || now.duration_since(e.started) < every);
        }
        let cell = Arc::new(OnceCell::new());
        entries.insert(
            key.to_owned(),
            Entry {
                started: now,
                result: cell.clone(),
            },
        );
        Some(cell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_callers_share_one_query_and_later_ones_wait_their_turn() {
        let gate = Arc::new(Flights::new(Duration::from_secs(2)));
        let runs = Arc::new(AtomicUsize::new(0));
        let mut joins = Vec::new();
        for _ in 0..20 {
            let gate = gate.clone();
            let runs = runs.clone();
            joins.push(tokio::spawn(async move {
                gate.throttle("o1", || async {
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
        assert_eq!(gate.throttle("o1", || async { 8 }).await, None);
        // Another order is not throttled by this one.
        assert_eq!(gate.throttle("o2", || async { 9 }).await, Some(9));
        // A query whose caller went away is taken over by the next caller.
        let abandoned = tokio::time::timeout(
            Duration::from_millis(10),
            gate.throttle("o3", std::future::pending::<i32>),
        )
        .await;
        assert!(abandoned.is_err());
        assert_eq!(gate.throttle("o3", || async { 11 }).await, Some(11));
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(gate.throttle("o1", || async { 10 }).await, Some(10));
    }

    #[tokio::test]
    async fn shared_calls_join_the_one_in_flight_and_never_stay_quiet() {
        let flights = Arc::new(Flights::new(Duration::from_secs(3600)));
        let runs = Arc::new(AtomicUsize::new(0));
        let arrived = Arc::new(AtomicUsize::new(0));
        let mut joins = Vec::new();
        for _ in 0..50 {
            let flights = flights.clone();
            let runs = runs.clone();
            let arrived = arrived.clone();
            joins.push(tokio::spawn(async move {
                arrived.fetch_add(1, Ordering::SeqCst);
                let everyone = arrived.clone();
                flights
                    .share("o1", || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        // In flight until every caller has asked.
                        while everyone.load(Ordering::SeqCst) < 50 {
                            tokio::task::yield_now().await;
                        }
                        1
                    })
                    .await
            }));
        }
        for join in joins {
            assert_eq!(join.await.unwrap(), 1);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Finished: the next caller runs again, whatever the quiet period.
        assert_eq!(flights.share("o1", || async { 2 }).await, 2);
    }
}
