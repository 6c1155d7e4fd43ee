//! A read cache of orders for the hot read paths (status polling, the pay page, notifies).
//!
//! Every write this process makes to an order invalidates its entry after commit, so within one
//! process a read never returns an order older than the last write. Other processes sharing the
//! database (PostgreSQL replicas) cannot invalidate it, so a pending order is served from the
//! cache for at most [`PENDING_TTL`]; an order in a final state never changes again and is kept
//! until evicted. Decisions that matter (paying, closing) are made by conditional SQL, never on
//! a cached read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::types::{Order, OrderItem};
use crate::domain::OrderStatus;

/// Longest a pending order is served without reading the database: one poll interval of the
/// pay page, so a shopper polling alone causes about one database read per poll.
pub const PENDING_TTL: Duration = Duration::from_secs(3);
/// Orders kept; beyond this the cache starts over.
const CAPACITY: usize = 50_000;

struct Entry {
    /// None once a write invalidated it.
    order: Option<Order>,
    items: Option<Arc<Vec<OrderItem>>>,
    read_at: Instant,
    /// The last write's time: a read that started before it must not be cached.
    written_at: Option<Instant>,
}

#[derive(Default)]
pub struct OrderCache {
    entries: Mutex<HashMap<String, Entry>>,
}

impl std::fmt::Debug for OrderCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OrderCache")
    }
}

impl OrderCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().expect("order cache lock")
    }

    /// The cached order, if it is still fresh.
    pub fn order(&self, no: &str) -> Option<Order> {
        let entries = self.lock();
        let entry = entries.get(no)?;
        let order = entry.order.as_ref()?;
        let fresh = order.status != OrderStatus::Pending || entry.read_at.elapsed() < PENDING_TTL;
        fresh.then(|| order.clone())
    }

    /// An order's lines never change once it exists.
    pub fn items(&self, no: &str) -> Option<Arc<Vec<OrderItem>>> {
        self.lock().get(no)?.items.clone()
    }

    pub fn put_order(&self, order: &Order, read_at: Instant) {
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        let previous = entries.get(order.out_trade_no.as_str());
        let written_at = previous.and_then(|e| e.written_at);
        if written_at.is_some_and(|written| read_at <= written) {
            // This read may predate the last write: keep it out.
            return;
        }
        let items = previous.and_then(|e| e.items.clone());
        entries.insert(
            order.out_trade_no.to_string(),
            Entry {
                order: Some(order.clone()),
                items,
                read_at,
                written_at,
            },
        );
    }

    pub fn put_items(&self, no: &str, items: Arc<Vec<OrderItem>>) {
        if let Some(entry) = self.lock().get_mut(no) {
            entry.items = Some(items);
        }
    }

    /// Forgets an order's state after a write (its lines stay: they never change), and keeps
    /// out any read that started before now.
    pub fn invalidate(&self, no: &str) {
        let now = Instant::now();
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        let entry = entries.entry(no.to_owned()).or_insert(Entry {
            order: None,
            items: None,
            read_at: now,
            written_at: None,
        });
        entry.order = None;
        entry.written_at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Fen, OutTradeNo};

    fn order(status: OrderStatus) -> Order {
        let t = chrono::DateTime::from_timestamp(1_000, 0).unwrap();
        Order {
            out_trade_no: OutTradeNo::parse("o1").unwrap(),
            total_fee: Fen(1),
            status,
            body: "b".into(),
            product_id: "1".into(),
            expires_at: t,
            prepay: None,
            transaction_id: None,
            pay_time: None,
            created_at: t,
            updated_at: t,
            closed_at: None,
            reconcile_attempts: 0,
            is_deleted: false,
            refund_due: false,
            refunded_fee: Fen(0),
            wechat_state: None,
            watch_step: 0,
            cash_fee: None,
            coupon_fee: None,
            receipt_token: None,
            shipment: None,
            attempts: 0,
            paid_no: None,
            cancel_requested_at: None,
        }
    }

    #[test]
    fn a_read_that_started_before_a_write_is_not_cached() {
        let cache = OrderCache::default();
        let read_started = Instant::now();
        cache.invalidate("o1"); // a write commits while the read is in flight
        cache.put_order(&order(OrderStatus::Pending), read_started);
        assert!(cache.order("o1").is_none());
        cache.put_order(&order(OrderStatus::Pending), Instant::now());
        assert!(cache.order("o1").is_some());
    }

    #[test]
    fn final_orders_stay_and_pending_ones_expire() {
        let cache = OrderCache::default();
        cache.put_order(&order(OrderStatus::Paid), Instant::now() - PENDING_TTL * 2);
        assert!(cache.order("o1").is_some());
        cache.put_order(
            &order(OrderStatus::Pending),
            Instant::now() - PENDING_TTL * 2,
        );
        assert!(cache.order("o1").is_none());
    }
}
