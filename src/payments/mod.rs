//! The order side of a payment. Everything that learns of a verified payment — the notify, the
//! status endpoint's order query, the reconciliation job — calls [`Payments::confirm`]: the
//! payment is recorded durably in the inbox, then its id goes through an in-process channel
//! (standing in for the original design's message broker) to the [`Consumer`], the one place
//! that applies payments to orders.
//!
//! The channel is bounded ([`CHANNEL_CAPACITY`]). A full channel never drops an event and never
//! holds a caller for long: after [`HANDOVER_BOUND`] the caller moves on, and the event, already
//! durable, is applied by the consumer's replay, which also runs at start-up and every
//! [`REPLAY_INTERVAL`], so a crash between recording and applying loses nothing.

pub mod gate;

use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::domain::OutTradeNo;
use crate::store::{Applied, Outcome, PaymentEvent, Recorded, Store, StoreError};

/// Events waiting for the consumer.
pub const CHANNEL_CAPACITY: usize = 4096;
/// Longest a caller waits for room in a full channel.
pub const HANDOVER_BOUND: Duration = Duration::from_millis(50);
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

/// The producer side, held in application state.
#[derive(Clone)]
pub struct Payments {
    store: Store,
    events: mpsc::Sender<i64>,
    applied: broadcast::Sender<AppliedNotice>,
}

/// The consumer task's side.
pub struct Consumer {
    store: Store,
    events: mpsc::Receiver<i64>,
    applied: broadcast::Sender<AppliedNotice>,
    replay_interval: Duration,
}

/// Creates the channel: the producer for application state, the consumer to spawn.
pub fn channel(store: Store) -> (Payments, Consumer) {
    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (applied, _) = broadcast::channel(1024);
    (
        Payments {
            store: store.clone(),
            events: tx,
            applied: applied.clone(),
        },
        Consumer {
            store,
            events: rx,
            applied,
            replay_interval: REPLAY_INTERVAL,
        },
    )
}

impl Payments {
    /// Records a verified payment durably and hands it to the consumer. When this returns Ok
    /// the payment cannot be lost; it is applied at once or by the next replay.
    pub async fn confirm(&self, event: &PaymentEvent) -> Result<Recorded, StoreError> {
        let recorded = self.store.record_payment_event(event).await?;
        if !recorded.applied {
            self.hand_over(recorded.id).await;
        }
        Ok(recorded)
    }

    async fn hand_over(&self, id: i64) {
        match self.events.send_timeout(id, HANDOVER_BOUND).await {
            Ok(()) => {}
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                tracing::warn!(
                    event = id,
                    "payments channel full; the replay will apply it"
                )
            }
            Err(mpsc::error::SendTimeoutError::Closed(_)) => {
                tracing::warn!(
                    event = id,
                    "payments consumer stopped; the next start applies it"
                )
            }
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
    /// Sets how often the replay runs (tests shorten it).
    pub fn with_replay_interval(mut self, every: Duration) -> Self {
        self.replay_interval = every;
        self
    }

    /// Applies events until `shutdown`, then drains what is already in the channel.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut replay = tokio::time::interval(self.replay_interval);
        replay.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(id) = self.events.recv() => self.apply(id).await,
                // The first tick fires at once: the start-up replay.
                _ = replay.tick() => {
                    if let Err(e) = self.replay().await {
                        tracing::error!(error = %e, "payment replay failed");
                    }
                }
            }
        }
        self.events.close();
        while let Some(id) = self.events.recv().await {
            self.apply(id).await;
        }
    }

    /// Applies one event; failures are logged and left for the replay.
    async fn apply(&self, id: i64) {
        match self.store.apply_payment_event(id).await {
            Ok(Applied::Now {
                out_trade_no,
                outcome,
            }) => {
                match outcome {
                    Outcome::Paid => tracing::info!(%out_trade_no, "order paid"),
                    Outcome::PaidAfterClose => tracing::warn!(
                        %out_trade_no,
                        "payment for a closed order: refund due"
                    ),
                    Outcome::Failed => {
                        tracing::info!(%out_trade_no, "payment failed; stock restored")
                    }
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
            Ok(Applied::Before) => {}
            Err(e) => {
                tracing::error!(event = id, error = %e, "applying a payment failed; will retry")
            }
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

/// The payment an order query reports, when WeChat says SUCCESS for exactly this order's amount
/// (the query's signature was verified by the client). A SUCCESS with another amount is logged
/// and never applied.
pub fn event_from_query(
    order: &crate::store::Order,
    query: &crate::wxpay::types::OrderQueryResponse,
    source: crate::store::PaymentSource,
) -> Option<PaymentEvent> {
    use crate::wxpay::TradeState;
    if query.trade_state != TradeState::Success || query.out_trade_no != order.out_trade_no.as_str()
    {
        return None;
    }
    let (Some(transaction_id), Some(total_fee), Some(time_end)) =
        (&query.transaction_id, query.total_fee, &query.time_end)
    else {
        return None;
    };
    if total_fee != order.total_fee.0 {
        tracing::error!(
            out_trade_no = %order.out_trade_no,
            expected = order.total_fee.0,
            reported = total_fee,
            "WeChat reports a payment of another amount; not applied"
        );
        return None;
    }
    let pay_time = crate::wxpay::time::parse_beijing(time_end).ok()?;
    Some(PaymentEvent {
        out_trade_no: order.out_trade_no.clone(),
        result: crate::store::PaymentResult::Paid {
            transaction_id: transaction_id.clone(),
            pay_time,
        },
        total_fee: order.total_fee,
        source,
    })
}
