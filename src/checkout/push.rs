//! Push to the pay page: the moment the consumer applies a payment or a failure, or an order is
//! closed or refunded, the change goes to every shopper whose page listens for that order
//! (`GET /pay/{no}/events`, Server-Sent Events). The page still polls every 3 s when it cannot
//! listen; a lost event costs only that.
//!
//! **No task per page**: each open stream is a small channel in a registry by order; a change is
//! handed to its own order's pages only (10,000 open pages cost nothing per payment), and one
//! task sends every stream its heartbeat.
//!
//! **Replicas**: on PostgreSQL every change also goes out by `NOTIFY` and every replica
//! `LISTEN`s (see `store/push.rs`), so a page connected to one replica hears of a payment applied
//! on another; a replica passes over its own changes coming back.
//!
//! **Bounded**: at most [`PushTerms::per_client`] open streams per client and
//! [`PushTerms::total`] in all (past either the page polls); a heartbeat keeps proxies from
//! closing a quiet stream; every stream ends when the shop starts shutting down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::{Checkout, CheckoutError, Shopper};
use crate::domain::OutTradeNo;
use crate::store::Outcome;

/// What a page hears: the order's new state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderChange {
    Paid,
    /// A payment attempt failed; the order stays open (the shopper may try again).
    PayError,
    Closed,
    Refunded,
}

impl OrderChange {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderChange::Paid => "paid",
            OrderChange::PayError => "payerror",
            OrderChange::Closed => "closed",
            OrderChange::Refunded => "refunded",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "paid" => OrderChange::Paid,
            "payerror" => OrderChange::PayError,
            "closed" => OrderChange::Closed,
            "refunded" => OrderChange::Refunded,
            _ => return None,
        })
    }

    /// The change an applied payment made, if any a page should hear of.
    pub fn of(outcome: Outcome) -> Option<Self> {
        match outcome {
            Outcome::Paid => Some(OrderChange::Paid),
            Outcome::PayError => Some(OrderChange::PayError),
            Outcome::AmountMismatch => Some(OrderChange::Closed),
            Outcome::Duplicate | Outcome::PaidAfterClose | Outcome::Ignored => None,
        }
    }
}

/// Limits on open event streams.
#[derive(Debug, Clone, Copy)]
pub struct PushTerms {
    /// Open streams one client (an IP; an IPv6 /64) may hold.
    pub per_client: usize,
    /// Open streams in all.
    pub total: usize,
}

impl Default for PushTerms {
    fn default() -> Self {
        PushTerms {
            per_client: 16,
            total: 20_000,
        }
    }
}

/// Messages waiting per stream (a page this far behind only misses a heartbeat or asks the
/// shop).
const PER_STREAM: usize = 4;
/// How often every open stream gets a heartbeat.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(5);

/// What a stream is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    Change(OrderChange),
    /// Nothing happened: keeps proxies from closing a quiet stream, and a write is how a page
    /// that went away is noticed.
    Heartbeat,
}

/// The registry of open streams, by order. No task per stream: a change is handed to each of
/// its order's streams without waiting, heartbeats to all every [`HEARTBEAT`].
pub(super) struct Hub {
    inner: Mutex<Registry>,
    /// This process among the replicas: its own changes come back by `LISTEN` and are passed
    /// over (its pages heard them already).
    origin: String,
}

impl Default for Hub {
    fn default() -> Self {
        use rand::Rng;
        Hub {
            inner: Mutex::default(),
            origin: format!("{:016x}", rand::rng().random::<u64>()),
        }
    }
}

#[derive(Default)]
struct Registry {
    orders: HashMap<String, Vec<(u64, mpsc::Sender<Message>)>>,
    per_client: HashMap<String, usize>,
    open: usize,
    next_id: u64,
    /// Set at shutdown: no stream opens any more.
    closed: bool,
}

/// One page's subscription: its messages, and its place, freed when it is dropped (the page
/// went away, or the shop ended its stream).
pub struct Listener {
    pub messages: mpsc::Receiver<Message>,
    _place: Place,
}

struct Place {
    hub: Arc<Hub>,
    order: String,
    client: String,
    id: u64,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut registry = self.hub.inner.lock().expect("push registry");
        registry.open -= 1;
        if let Some(n) = registry.per_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                registry.per_client.remove(&self.client);
            }
        }
        if let Some(streams) = registry.orders.get_mut(&self.order) {
            streams.retain(|(id, _)| *id != self.id);
            if streams.is_empty() {
                registry.orders.remove(&self.order);
            }
        }
    }
}

impl Hub {
    /// Hands `change` to the pages listening for `no` on this replica.
    pub(super) fn publish(&self, no: &str, change: OrderChange) {
        let registry = self.inner.lock().expect("push registry");
        for (_, tx) in registry.orders.get(no).into_iter().flatten() {
            let _ = tx.try_send(Message::Change(change));
        }
    }

    /// A heartbeat to every open stream.
    fn heartbeat(&self) {
        let registry = self.inner.lock().expect("push registry");
        for (_, tx) in registry.orders.values().flatten() {
            let _ = tx.try_send(Message::Heartbeat);
        }
    }

    /// Ends every stream and opens no more: the shop is shutting down.
    fn close(&self) {
        let mut registry = self.inner.lock().expect("push registry");
        registry.closed = true;
        // Dropping the senders ends each page's stream; their places free themselves.
        registry.orders.clear();
    }

    /// Open streams now.
    pub(super) fn open(&self) -> usize {
        self.inner.lock().expect("push registry").open
    }
}

impl Checkout {
    /// A page's subscription to order `no`'s changes. `TooMany` past the limits (the page then
    /// polls).
    pub async fn order_events(
        &self,
        no: &str,
        shopper: &Shopper,
    ) -> Result<(crate::store::Order, Listener), CheckoutError> {
        let order = self.order(no).await?;
        let terms = self.terms().push;
        let hub = self.inner.push.clone();
        let mut registry = hub.inner.lock().expect("push registry");
        let client = shopper.key().to_owned();
        let held = registry.per_client.get(&client).copied().unwrap_or(0);
        if registry.closed || registry.open >= terms.total || held >= terms.per_client {
            metrics::counter!("event_streams_refused_total").increment(1);
            return Err(CheckoutError::TooMany);
        }
        let (tx, messages) = mpsc::channel(PER_STREAM);
        let id = registry.next_id;
        registry.next_id += 1;
        registry
            .orders
            .entry(order.out_trade_no.to_string())
            .or_default()
            .push((id, tx));
        registry.open += 1;
        *registry.per_client.entry(client.clone()).or_default() += 1;
        drop(registry);
        let listener = Listener {
            messages,
            _place: Place {
                order: order.out_trade_no.to_string(),
                hub,
                client,
                id,
            },
        };
        Ok((order, listener))
    }

    /// Open event streams (for `/metrics`).
    pub fn event_streams(&self) -> usize {
        self.inner.push.open()
    }

    /// Ends every event stream: the shop is shutting down.
    pub fn close_event_streams(&self) {
        self.inner.push.close();
    }

    /// Tells the pages of order `no` (on every replica) that it changed.
    pub(super) async fn announce(&self, no: &OutTradeNo, change: OrderChange) {
        self.inner.push.publish(no.as_str(), change);
        let origin = &self.inner.push.origin;
        if let Err(e) = self
            .store()
            .notify_order_change(origin, no, change.as_str())
            .await
        {
            tracing::debug!(out_trade_no = %no, error = %e, "order change not sent to other replicas");
        }
    }

    /// Relays the consumer's applied payments to the pages, and on PostgreSQL other replicas'
    /// changes, until `shutdown`.
    pub async fn run_push(self, shutdown: CancellationToken) {
        let mut applied = self.inner.payments.subscribe();
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
        let mut others = match self.store().listen_order_changes().await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "not listening for other replicas' order changes");
                None
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = heartbeat.tick() => self.inner.push.heartbeat(),
                notice = applied.recv() => match notice {
                    Ok(notice) => {
                        if let Some(change) = OrderChange::of(notice.outcome) {
                            self.announce(&notice.out_trade_no, change).await;
                        }
                    }
                    // Pages that missed one ask the shop at their next poll.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                change = next_change(&mut others) => match change {
                    Some((origin, no, change)) => {
                        let ours = origin == self.inner.push.origin;
                        if let (false, Some(change)) = (ours, OrderChange::parse(&change)) {
                            self.inner.push.publish(&no, change);
                        }
                    }
                    None => others = None,
                },
            }
        }
    }
}

/// The next change another replica announced; never, without a listener.
async fn next_change(
    listener: &mut Option<crate::store::OrderChanges>,
) -> Option<(String, String, String)> {
    match listener {
        Some(listener) => listener.next().await,
        None => std::future::pending().await,
    }
}
