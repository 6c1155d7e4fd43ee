//! The outbox's records — events written with the changes that caused them, and their
//! deliveries to each target — and the store's calls for them (the SQL is in `sql/outbox.rs`).
//! What an event means and how it is sent is the checkout's; the store
//! only keeps them.

use chrono::{DateTime, NaiveDate, Utc};

use super::{Backend, Discrepancy, Store, StoreError};

/// The kinds of event, as stored (and as receivers see them).
pub const ORDER_PAID: &str = "order.paid";
pub const ORDER_REFUND_DUE: &str = "order.refund_due";
pub const REFUND_SUCCEEDED: &str = "refund.succeeded";
pub const ORDER_CLOSED: &str = "order.closed";
pub const BILL_DISCREPANCY: &str = "bill.discrepancy";

/// An event as written by the change: what happened, to what. The fan-out gives it its id and
/// data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    pub seq: i64,
    /// One of the kinds above.
    pub kind: String,
    pub out_trade_no: Option<String>,
    /// The order, the refund's out_refund_no, or the discrepancy's id.
    pub subject: String,
    /// Why, where a kind has several causes.
    pub detail: String,
    pub created_at: DateTime<Utc>,
}

/// An event given its id and data, and the targets it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FannedEvent {
    pub seq: i64,
    pub event_id: String,
    /// The event's `data`, as JSON text.
    pub data: String,
    pub out_trade_no: Option<String>,
    pub targets: Vec<String>,
}

/// Where one event's delivery to one target stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// To be sent (again) at `next_at`.
    Pending,
    Delivered,
    /// The retry schedule ran out.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryState> {
        [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// One event's delivery to one target, with the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub seq: i64,
    pub target: String,
    pub event_id: String,
    pub kind: String,
    pub data: String,
    pub out_trade_no: Option<String>,
    pub created_at: DateTime<Utc>,
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: i64,
    pub next_at: DateTime<Utc>,
    pub last_at: Option<DateTime<Utc>>,
    /// What the last attempt got, in a few words (`HTTP 500`, `timed out`, …).
    pub last_result: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempted {
    /// Taken; `result` says how (`HTTP 200`).
    Delivered { result: String },
    /// Not taken; tried again at the time given, or never (`None`: the schedule ran out).
    Refused {
        result: String,
        retry_at: Option<i64>,
    },
}

/// How many deliveries wait, and how many gave up, per target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    pub pending: i64,
    pub failed: i64,
    /// When the oldest pending delivery's event happened.
    pub oldest_pending: Option<DateTime<Utc>>,
}

impl Store {
    /// Whether changes write outbox events (on when a store opens). The shop turns it off when
    /// no webhook or robot is configured: nothing would be sent, and the hot paths skip the
    /// writes. Shared by the store's clones.
    pub fn write_events(&self, on: bool) {
        match &self.backend {
            Backend::Sqlite(db) => db.write_events(on),
            Backend::Postgres(db) => db.write_events(on),
        }
    }

    /// Events not fanned out yet, oldest first (read on a reader: the fan-out's conditional
    /// update settles races).
    pub async fn unfanned_events(&self, limit: i64) -> Result<Vec<OutboxEvent>, StoreError> {
        dispatch!(self.unfanned_events(limit))
    }

    /// Gives each event its id and data and makes its deliveries, in one transaction; an event
    /// another replica fanned out first is left alone. Returns how many were fanned here.
    pub async fn fan_out(&self, events: &[FannedEvent], now: i64) -> Result<usize, StoreError> {
        dispatch!(self.fan_out(events, now))
    }

    /// Whether any delivery could be claimed at `now` (a read, with the claim's conditions: the
    /// claim, a write, is made only then).
    pub async fn has_due_deliveries(&self, now: i64) -> Result<bool, StoreError> {
        dispatch!(self.has_due_deliveries(now))
    }

    /// Claims up to `limit` deliveries due at `now` — for each target and order only the
    /// earliest not yet delivered, so an order's events arrive in order — leased until
    /// `lease_until` (one replica sends each).
    pub async fn claim_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        dispatch!(self.claim_deliveries(now, lease_until, limit))
    }

    /// Records an attempt's end.
    pub async fn finish_delivery(
        &self,
        seq: i64,
        target: &str,
        attempted: &Attempted,
        now: i64,
    ) -> Result<(), StoreError> {
        dispatch!(self.finish_delivery(seq, target, attempted, now))
    }

    /// Makes `target`'s deliveries waiting out a retry due now (it has answered again).
    pub async fn hurry_target(&self, target: &str, now: i64) -> Result<u64, StoreError> {
        dispatch!(self.hurry_target(target, now))
    }

    /// Sends one delivery again, whatever its state: due now. False when there is none.
    pub async fn resend_delivery(
        &self,
        seq: i64,
        target: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        dispatch!(self.resend_delivery(seq, target, now))
    }

    /// The latest deliveries, newest first, before event `before` when given; only those in
    /// `state` when given.
    pub async fn deliveries(
        &self,
        state: Option<DeliveryState>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        dispatch!(self.deliveries(state, before, limit))
    }

    /// An order's deliveries, oldest first.
    pub async fn deliveries_of(&self, out_trade_no: &str) -> Result<Vec<Delivery>, StoreError> {
        dispatch!(self.deliveries_of(out_trade_no))
    }

    /// Waiting and given-up deliveries, over all targets.
    pub async fn delivery_counts(&self) -> Result<DeliveryCounts, StoreError> {
        dispatch!(self.delivery_counts())
    }

    /// Deletes events older than `before` whose deliveries are all over (with them).
    pub async fn prune_outbox(&self, before: i64) -> Result<u64, StoreError> {
        dispatch!(self.prune_outbox(before))
    }

    /// A discrepancy by id, with its day.
    pub async fn discrepancy(
        &self,
        id: i64,
    ) -> Result<Option<(NaiveDate, Discrepancy)>, StoreError> {
        dispatch!(self.discrepancy(id))
    }
}
