//! The order side of a payment. Every flow of the checkout service that learns of a verified
//! payment — the notify, the status endpoint's order query, the pay page, the reconciliation
//! job — calls [`Payments::confirm`]: the payment is recorded durably in the inbox, then its id
//! goes through an in-process channel (standing in for the original design's message broker)
//! to the [`Consumer`], the one place that applies payments to orders.
//!
//! Recording uses group commit: concurrent confirmations are written by one recorder task in a
//! single transaction (one disk flush for the lot), and each caller is answered once its event
//! is on disk. The consumer applies events in batches the same way.
//!
//! The channel is bounded ([`CHANNEL_CAPACITY`]). A full channel never drops an event and never
//! holds a caller: the recorder hands events over without waiting, and an event that finds no
//! room, already durable, is applied by the consumer's replay, which also runs at start-up and
//! every [`REPLAY_INTERVAL`], so a crash between recording and applying loses nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::domain::OutTradeNo;
use crate::store::{Applied, Outcome, PaymentEvent, Recorded, Store, StoreError};

/// Events waiting for the consumer.
pub const CHANNEL_CAPACITY: usize = 4096;
/// Confirmations waiting for the recorder; a caller beyond this waits for room.
const RECORD_QUEUE: usize = 4096;
/// Most events written or applied in one transaction.
const MAX_BATCH: usize = 256;
/// How often recorded-but-unapplied events are looked for.
pub const REPLAY_INTERVAL: Duration = Duration::from_secs(5);
/// Events applied per replay round.
const REPLAY_BATCH: i64 = 500;

/// An applied payment, announced to whoever waits for its order (the status endpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedNotice {
    pub out_trade_no: OutTradeNo,
    pub outcome: Outcome,
}

/// A confirmation waiting to be written.
struct RecordRequest {
    event: PaymentEvent,
    reply: oneshot::Sender<Result<Recorded, Arc<StoreError>>>,
}

/// The producer side, held in application state.
#[derive(Clone)]
pub struct Payments {
    store: Store,
    records: mpsc::Sender<RecordRequest>,
    events: mpsc::Sender<i64>,
    applied: broadcast::Sender<AppliedNotice>,
}

/// The background side: the recorder and the consumer, run by [`Consumer::run`].
pub struct Consumer {
    store: Store,
    records: mpsc::Receiver<RecordRequest>,
    /// The recorder's handle on the channel to the consumer.
    handover: mpsc::Sender<i64>,
    events: mpsc::Receiver<i64>,
    applied: broadcast::Sender<AppliedNotice>,
    replay_interval: Duration,
}

/// Creates the channel: the producer for application state, the consumer to spawn.
pub fn channel(store: Store) -> (Payments, Consumer) {
    let (records_tx, records_rx) = mpsc::channel(RECORD_QUEUE);
    let (events_tx, events_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (applied, _) = broadcast::channel(1024);
    (
        Payments {
            store: store.clone(),
            records: records_tx,
            events: events_tx.clone(),
            applied: applied.clone(),
        },
        Consumer {
            store,
            records: records_rx,
            handover: events_tx,
            events: events_rx,
            applied,
            replay_interval: REPLAY_INTERVAL,
        },
    )
}

impl Payments {
    /// Records a verified payment durably and hands it to the consumer. When this returns Ok
    /// the payment cannot be lost; it is applied at once or by the next replay.
    pub async fn confirm(&self, event: &PaymentEvent) -> Result<Recorded, StoreError> {
        let (reply, answer) = oneshot::channel();
        let request = RecordRequest {
            event: event.clone(),
            reply,
        };
        if self.records.send(request).await.is_err() {
            // The recorder has stopped (shutting down): write it ourselves.
            let recorded = self.store.record_payment_event(event).await?;
            hand_over(&self.events, &recorded);
            return Ok(recorded);
        }
        match answer.await {
            Ok(Ok(recorded)) => Ok(recorded),
            Ok(Err(e)) => Err(StoreError::Shared(e)),
            Err(_) => Err(StoreError::Stopped("payments recorder")),
        }
    }

    /// Subscribes to applied payments. Subscribe before [`Payments::confirm`] to not miss one.
    pub fn subscribe(&self) -> broadcast::Receiver<AppliedNotice> {
        self.applied.subscribe()
    }

    /// Events waiting in the channel.
    pub fn depth(&self) -> usize {
        self.events.max_capacity() - self.events.capacity()
    }
}

/// Passes a recorded, unapplied event to the consumer without waiting; with no room it stays
/// for the replay.
fn hand_over(events: &mpsc::Sender<i64>, recorded: &Recorded) {
    if recorded.applied {
        return;
    }
    match events.try_send(recorded.id) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            tracing::debug!(
                event = recorded.id,
                "payments channel full; the replay applies it"
            )
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            tracing::warn!(
                event = recorded.id,
                "payments consumer stopped; the next start applies it"
            )
        }
    }
}

/// Takes `first` and whatever else is already queued, up to [`MAX_BATCH`].
fn batch<T>(first: T, queue: &mut mpsc::Receiver<T>) -> Vec<T> {
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
    batch
}

/// Writes queued confirmations, a transaction per batch, answering each caller after commit.
async fn record(
    store: &Store,
    mut requests: mpsc::Receiver<RecordRequest>,
    handover: mpsc::Sender<i64>,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            biased;
            request = requests.recv() => match request {
                Some(request) => request,
                None => return,
            },
            _ = shutdown.cancelled() => break,
        };
        write_batch(store, batch(first, &mut requests), &handover).await;
    }
    // Shutting down: write what is already queued.
    requests.close();
    while let Some(first) = requests.recv().await {
        write_batch(store, batch(first, &mut requests), &handover).await;
    }
}

async fn write_batch(store: &Store, batch: Vec<RecordRequest>, handover: &mpsc::Sender<i64>) {
    let events: Vec<&PaymentEvent> = batch.iter().map(|r| &r.event).collect();
    match store.record_payment_events(&events).await {
        Ok(recorded) => {
            for (request, recorded) in batch.into_iter().zip(recorded) {
                hand_over(handover, &recorded);
                // A caller that went away still had its event recorded.
                let _ = request.reply.send(Ok(recorded));
            }
        }
        Err(e) if batch.len() > 1 => {
            // One event the database refuses must not fail the others: one by one.
            tracing::warn!(error = %e, events = batch.len(), "recording a batch failed; one by one");
            for request in batch {
                let result = store.record_payment_event(&request.event).await;
                match &result {
                    Ok(recorded) => hand_over(handover, recorded),
                    Err(e) => tracing::error!(
                        out_trade_no = %request.event.out_trade_no,
                        error = %e,
                        "recording a payment failed"
                    ),
                }
                let _ = request.reply.send(result.map_err(Arc::new));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "recording a payment failed");
            let e = Arc::new(e);
            for request in batch {
                let _ = request.reply.send(Err(e.clone()));
            }
        }
    }
}

/// Waits until a payment for `no` has been applied, at most `limit`.
pub async fn wait_applied(
    notices: &mut broadcast::Receiver<AppliedNotice>,
    no: &OutTradeNo,
    limit: Duration,
) -> Option<Outcome> {
    let wait = async {
        loop {
            match notices.recv().await {
                Ok(notice) if &notice.out_trade_no == no => return Some(notice.outcome),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    };
    tokio::time::timeout(limit, wait).await.ok().flatten()
}

impl Consumer {
    /// Records and applies events until `shutdown`, then writes and applies what is already
    /// queued.
    pub async fn run(self, shutdown: CancellationToken) {
        let Consumer {
            store,
            records,
            handover,
            events,
            applied,
            replay_interval,
        } = self;
        let applier = Applier { store, applied };
        let recorder = record(&applier.store, records, handover, shutdown.clone());
        tokio::join!(recorder, applier.run(events, replay_interval, shutdown));
    }
}

/// The consumer proper: applies recorded events to orders.
struct Applier {
    store: Store,
    applied: broadcast::Sender<AppliedNotice>,
}

impl Applier {
    async fn run(
        &self,
        mut events: mpsc::Receiver<i64>,
        replay_every: Duration,
        shutdown: CancellationToken,
    ) {
        let mut replay = tokio::time::interval(replay_every);
        replay.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(id) = events.recv() => self.apply_batch(batch(id, &mut events)).await,
                // The first tick fires at once: the start-up replay.
                _ = replay.tick() => {
                    if let Err(e) = self.replay().await {
                        tracing::error!(error = %e, "payment replay failed");
                    }
                }
            }
        }
        // Drain: apply what is queued now; anything later is durable for the next start.
        while let Ok(id) = events.try_recv() {
            self.apply_batch(batch(id, &mut events)).await;
        }
    }

    /// Applies a batch in one transaction; if that fails, one by one.
    async fn apply_batch(&self, ids: Vec<i64>) {
        if ids.len() > 1 {
            match self.store.apply_payment_events(&ids).await {
                Ok(all) => {
                    for applied in all {
                        self.announce(applied);
                    }
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "applying a batch failed; one by one"),
            }
        }
        for id in ids {
            self.apply(id).await;
        }
    }

    /// Applies one event; failures are logged and left for the replay.
    async fn apply(&self, id: i64) {
        match self.store.apply_payment_event(id).await {
            Ok(applied) => self.announce(applied),
            Err(e) => {
                tracing::error!(event = id, error = %e, "applying a payment failed; will retry")
            }
        }
    }

    fn announce(&self, applied: Applied) {
        match applied {
            Applied::Now {
                out_trade_no,
                outcome,
            } => {
                metrics::counter!("payments_applied_total", "outcome" => outcome.as_str())
                    .increment(1);
                match outcome {
                    Outcome::Paid => tracing::info!(%out_trade_no, "order paid"),
                    Outcome::PaidAfterClose => tracing::warn!(
                        %out_trade_no,
                        "payment for a closed order: refund due"
                    ),
                    Outcome::PayError => {
                        tracing::info!(%out_trade_no, "payment attempt failed; the order stays open")
                    }
                    Outcome::AmountMismatch => tracing::warn!(
                        %out_trade_no,
                        "payment of another amount or currency: order closed, refund due"
                    ),
                    Outcome::Duplicate | Outcome::Ignored => {
                        tracing::debug!(%out_trade_no, outcome = outcome.as_str(), "payment event")
                    }
                }
                // Nobody listening is fine.
                let _ = self.applied.send(AppliedNotice {
                    out_trade_no,
                    outcome,
                });
            }
            Applied::Before => {}
        }
    }

    /// Applies every recorded-but-unapplied event. Returns how many it found. Events that fail
    /// to apply stay for the next round.
    pub async fn replay(&self) -> Result<usize, StoreError> {
        let mut total = 0;
        let mut previous_first = None;
        loop {
            let ids = self.store.unapplied_payment_events(REPLAY_BATCH).await?;
            // Stop when done, or when the same events come back (they keep failing).
            if ids.is_empty() || ids.first() == previous_first.as_ref() {
                return Ok(total);
            }
            previous_first = ids.first().copied();
            total += ids.len();
            let full = ids.len() as i64 == REPLAY_BATCH;
            for id in ids {
                self.apply(id).await;
            }
            if !full {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Fen, OutTradeNo};
    use crate::rt::AppRuntime;
    use crate::store::{PaymentResult, PaymentSource};

    fn event(no: &str, transaction_id: &str) -> PaymentEvent {
        PaymentEvent {
            wechat_no: None,
            out_trade_no: OutTradeNo::parse(no).unwrap(),
            result: PaymentResult::Paid {
                transaction_id: transaction_id.into(),
                pay_time: chrono::Utc::now(),
            },
            total_fee: Fen(100),
            fee_type: crate::store::CNY.into(),
            cash_fee: None,
            coupon_fee: None,
            source: PaymentSource::Notify,
        }
    }

    /// One event the database refuses (a transaction id longer than its column allows) fails
    /// alone: the others of its group commit are recorded and handed over.
    #[tokio::test]
    async fn one_bad_event_never_fails_the_others_in_its_batch() {
        let dir = tempfile::TempDir::new().unwrap();
        let url = format!("sqlite://{}/p.db", dir.path().display());
        let store = Store::connect(&url, &AppRuntime::current()).await.unwrap();
        let (handover, mut handed) = mpsc::channel(16);
        let mut replies = Vec::new();
        let batch = [
            event("o1", "T1"),
            event("o2", &"9".repeat(40)),
            event("o3", "T3"),
        ]
        .into_iter()
        .map(|event| {
            let (reply, answer) = oneshot::channel();
            replies.push(answer);
            RecordRequest { event, reply }
        })
        .collect();
        write_batch(&store, batch, &handover).await;
        let mut results = Vec::new();
        for reply in replies {
            results.push(reply.await.unwrap());
        }
        assert!(results[0].as_ref().is_ok_and(|r| r.new));
        assert!(results[1].is_err());
        assert!(results[2].as_ref().is_ok_and(|r| r.new));
        let mut ids = Vec::new();
        while let Ok(id) = handed.try_recv() {
            ids.push(id);
        }
        assert_eq!(ids.len(), 2, "the good ones go to the consumer");
        assert_eq!(store.unapplied_payment_events(10).await.unwrap(), ids);
    }
}
