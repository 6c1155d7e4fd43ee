//! The sandbox's in-memory book of orders: what WeChat Pay would remember about each
//! `out_trade_no` and each of its refunds. Bounded: beyond `max_orders` the oldest orders are
//! forgotten, with their refunds.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Utc};
use rand::distr::{Alphanumeric, SampleString};
use rand::Rng;

use crate::wxpay::refund::RefundEntry;
use crate::wxpay::v3::types::NativeRequest;
use crate::wxpay::{Fields, RefundStatus, SignType, TradeState};

pub use crate::wxpay::PREPAY_VALIDITY;

/// One order as WeChat Pay holds it: a trade (the merchant's order is the store's `Order`).
#[derive(Debug, Clone)]
pub struct Trade {
    pub out_trade_no: String,
    /// The unifiedorder parameters that a re-entry must repeat exactly (all but nonce and sign).
    pub params: Fields,
    pub sign_type: SignType,
    pub body: String,
    pub attach: Option<String>,
    pub total_fee: i64,
    pub notify_url: String,
    pub time_expire: Option<DateTime<Utc>>,
    pub prepay_id: String,
    pub code_url: String,
    pub prepay_expires_at: DateTime<Utc>,
    pub state: TradeState,
    pub payment: Option<Payment>,
    pub created_at: DateTime<Utc>,
    /// Notify deliveries attempted (sent or dropped by a fault), and whether one was answered
    /// SUCCESS.
    pub notify_attempts: u32,
    pub notify_acknowledged: bool,
    /// Refunds of the order, in the order they were made.
    pub refunds: Vec<Refund>,
    /// Placed through API v3: the request a re-entry must repeat (`params` then holds only the
    /// `trade_type`, and `sign_type` is unused: its notify is v3's).
    pub v3: Option<Box<NativeRequest>>,
}

impl Trade {
    /// The unifiedorder's `trade_type`: `NATIVE`, `MWEB` or `JSAPI`.
    pub fn trade_type(&self) -> &str {
        self.params
            .get("trade_type")
            .map_or("NATIVE", String::as_str)
    }

    /// The payer a JSAPI order names (the other trade types learn the payer only when paid).
    pub fn jsapi_openid(&self) -> Option<&str> {
        (self.trade_type() == "JSAPI")
            .then(|| self.params.get("openid").map(String::as_str))
            .flatten()
    }

    pub fn refund(&self, out_refund_no: &str) -> Option<&Refund> {
        self.refunds
            .iter()
            .find(|r| r.entry.out_refund_no == out_refund_no)
    }

    pub fn refund_mut(&mut self, out_refund_no: &str) -> Option<&mut Refund> {
        self.refunds
            .iter_mut()
            .find(|r| r.entry.out_refund_no == out_refund_no)
    }

    /// What may still be refunded: the amount less every refund that did not close (a closed
    /// refund gave nothing back; a `CHANGE` one did, to an account the merchant must sort out).
    pub fn refundable(&self) -> i64 {
        let refunded: i64 = self
            .refunds
            .iter()
            .filter(|r| r.entry.status != RefundStatus::RefundClose)
            .map(|r| r.entry.refund_fee)
            .sum();
        self.total_fee - refunded
    }
}

/// One refund as WeChat holds it: what the refund query lists, and where its notify goes.
#[derive(Debug, Clone)]
pub struct Refund {
    pub entry: RefundEntry,
    /// The request's `notify_url`; without one no refund notify is sent.
    pub notify_url: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Refund notify deliveries attempted (sent or dropped by a fault), and whether one was
    /// answered SUCCESS.
    pub notify_attempts: u32,
    pub notify_acknowledged: bool,
    /// Asked for through API v3: its notify is v3's.
    pub v3: bool,
}

/// A completed payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub transaction_id: String,
    pub time_end: DateTime<Utc>,
    pub openid: String,
    pub bank_type: String,
    /// What a coupon paid of the order (the shopper paid the rest in cash).
    pub coupon_fee: Option<i64>,
}

/// The orders, indexed by `out_trade_no`, by `code_url` token, by `prepay_id`, by
/// `transaction_id` and by the `out_refund_no` of each refund (unique per merchant, as WeChat
/// keeps it). Every trade has a `code_url`, but only a Native one is ever told it: for H5 and
/// JSAPI it is the sandbox's own handle, and the phone pays them by `prepay_id`.
#[derive(Debug)]
pub struct Book {
    orders: HashMap<String, Trade>,
    by_code_url: HashMap<String, String>,
    by_prepay: HashMap<String, String>,
    by_transaction: HashMap<String, String>,
    by_refund: HashMap<String, String>,
    /// Insertion order, oldest first, for eviction.
    age: VecDeque<String>,
    max_orders: usize,
}

impl Book {
    pub fn new(max_orders: usize) -> Self {
        Book {
            orders: HashMap::new(),
            by_code_url: HashMap::new(),
            by_prepay: HashMap::new(),
            by_transaction: HashMap::new(),
            by_refund: HashMap::new(),
            age: VecDeque::new(),
            max_orders: max_orders.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.orders.len()
    }

    pub fn get(&self, out_trade_no: &str) -> Option<&Trade> {
        self.orders.get(out_trade_no)
    }

    /// Every order held.
    pub fn all(&self) -> impl Iterator<Item = &Trade> {
        self.orders.values()
    }

    pub fn get_mut(&mut self, out_trade_no: &str) -> Option<&mut Trade> {
        self.orders.get_mut(out_trade_no)
    }

    pub fn by_code_url(&self, code_url: &str) -> Option<&Trade> {
        self.by_code_url
            .get(code_url)
            .and_then(|no| self.orders.get(no))
    }

    pub fn by_prepay_id(&self, prepay_id: &str) -> Option<&Trade> {
        self.by_prepay
            .get(prepay_id)
            .and_then(|no| self.orders.get(no))
    }

    pub fn by_transaction_id(&self, transaction_id: &str) -> Option<&Trade> {
        self.by_transaction
            .get(transaction_id)
            .and_then(|no| self.orders.get(no))
    }

    /// Adds a new order, forgetting the oldest ones beyond the bound.
    pub fn insert(&mut self, order: Trade) {
        let no = order.out_trade_no.clone();
        self.by_code_url.insert(order.code_url.clone(), no.clone());
        self.by_prepay.insert(order.prepay_id.clone(), no.clone());
        self.age.push_back(no.clone());
        self.orders.insert(no, order);
        while self.orders.len() > self.max_orders {
            let Some(oldest) = self.age.pop_front() else {
                break;
            };
            if let Some(gone) = self.orders.remove(&oldest) {
                self.by_code_url.remove(&gone.code_url);
                self.by_prepay.remove(&gone.prepay_id);
                if let Some(payment) = &gone.payment {
                    self.by_transaction.remove(&payment.transaction_id);
                }
                for refund in &gone.refunds {
                    self.by_refund.remove(&refund.entry.out_refund_no);
                }
            }
        }
    }

    /// Replaces an order's prepay (a re-entry after the old one expired).
    pub fn renew_prepay(&mut self, out_trade_no: &str, now: DateTime<Utc>) -> Option<&Trade> {
        let order = self.orders.get_mut(out_trade_no)?;
        self.by_code_url.remove(&order.code_url);
        self.by_prepay.remove(&order.prepay_id);
        let (prepay_id, code_url) = new_prepay(now);
        order.prepay_id = prepay_id.clone();
        order.code_url = code_url.clone();
        order.prepay_expires_at = now + PREPAY_VALIDITY;
        self.by_code_url.insert(code_url, out_trade_no.to_owned());
        self.by_prepay.insert(prepay_id, out_trade_no.to_owned());
        self.orders.get(out_trade_no)
    }

    /// Records a successful payment.
    pub fn pay(&mut self, out_trade_no: &str, payment: Payment) -> Option<&Trade> {
        let order = self.orders.get_mut(out_trade_no)?;
        self.by_transaction
            .insert(payment.transaction_id.clone(), out_trade_no.to_owned());
        order.state = TradeState::Success;
        order.payment = Some(payment);
        Some(order)
    }

    /// The order a refund number belongs to.
    pub fn refund_owner(&self, out_refund_no: &str) -> Option<&str> {
        self.by_refund.get(out_refund_no).map(String::as_str)
    }

    /// Adds a refund to an order, whose `trade_state` becomes `REFUND`.
    pub fn add_refund(&mut self, out_trade_no: &str, refund: Refund) -> Option<&Trade> {
        let order = self.orders.get_mut(out_trade_no)?;
        self.by_refund
            .insert(refund.entry.out_refund_no.clone(), out_trade_no.to_owned());
        order.state = TradeState::Refund;
        order.refunds.push(refund);
        Some(order)
    }
}

/// Short-lived tokens (H5 tickets, OAuth codes) with their expiry, at most `cap` of them: beyond
/// it the oldest is forgotten, so a stranger asking for tokens in a loop costs a bounded amount
/// of memory (and only the oldest tokens, which a shopper would have used by then).
#[derive(Debug)]
pub struct Bounded<V> {
    entries: HashMap<String, (V, DateTime<Utc>)>,
    /// Insertion order, oldest first, for eviction.
    age: VecDeque<String>,
    cap: usize,
}

impl<V> Bounded<V> {
    pub fn new(cap: usize) -> Self {
        Bounded {
            entries: HashMap::new(),
            age: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Adds a token valid until `expires_at`, forgetting the oldest beyond the bound.
    pub fn insert(&mut self, key: String, value: V, expires_at: DateTime<Utc>) {
        if self
            .entries
            .insert(key.clone(), (value, expires_at))
            .is_none()
        {
            self.age.push_back(key);
        }
        while self.entries.len() > self.cap {
            let Some(oldest) = self.age.pop_front() else {
                break;
            };
            self.entries.remove(&oldest);
        }
    }

    /// The token's value while it is valid at `now`.
    pub fn get(&self, key: &str, now: DateTime<Utc>) -> Option<&V> {
        self.entries
            .get(key)
            .filter(|(_, expires_at)| now < *expires_at)
            .map(|(value, _)| value)
    }

    pub fn get_mut(&mut self, key: &str, now: DateTime<Utc>) -> Option<&mut V> {
        self.entries
            .get_mut(key)
            .filter(|(_, expires_at)| now < *expires_at)
            .map(|(value, _)| value)
    }
}

/// A fresh `prepay_id` and `code_url` in WeChat's shapes.
pub fn new_prepay(now: DateTime<Utc>) -> (String, String) {
    let mut rng = rand::rng();
    let prepay_id = format!(
        "wx{}{}",
        beijing(now).format("%d%H%M%S"),
        Alphanumeric
            .sample_string(&mut rng, 26)
            .to_ascii_lowercase()
    );
    let code_url = format!(
        "weixin://wxpay/bizpayurl?pr={}",
        Alphanumeric.sample_string(&mut rng, 7)
    );
    (prepay_id, code_url)
}

/// A 28-digit transaction id like WeChat's (`4200…` + date + random digits).
pub fn new_transaction_id(now: DateTime<Utc>) -> String {
    format!(
        "420000{}{}{}",
        digits(4),
        beijing(now).format("%Y%m%d"),
        digits(10)
    )
}

/// A 29-digit refund id like WeChat's (`50000…` + date + random digits, as in
/// `50000408942018111907145868882`).
pub fn new_refund_id(now: DateTime<Utc>) -> String {
    format!(
        "50000{}{}{}",
        digits(5),
        beijing(now).format("%Y%m%d"),
        digits(11)
    )
}

fn digits(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

/// A refund's `success_time` as WeChat writes it: `yyyy-MM-dd HH:mm:ss`, Beijing time (unlike
/// the payment's `time_end`).
pub fn refund_success_time(at: DateTime<Utc>) -> String {
    beijing(at).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Dates inside WeChat's ids are Beijing dates.
fn beijing(t: DateTime<Utc>) -> DateTime<chrono::FixedOffset> {
    t.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("a valid offset"))
}

/// A payer's openid in WeChat's 28-character shape.
pub fn new_openid() -> String {
    format!("o{}", Alphanumeric.sample_string(&mut rand::rng(), 27))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(no: &str, now: DateTime<Utc>) -> Trade {
        let (prepay_id, code_url) = new_prepay(now);
        Trade {
            out_trade_no: no.into(),
            params: Fields::new(),
            sign_type: SignType::Md5,
            body: "b".into(),
            attach: None,
            total_fee: 1,
            notify_url: "http://127.0.0.1/n".into(),
            time_expire: None,
            prepay_id,
            code_url,
            prepay_expires_at: now + PREPAY_VALIDITY,
            state: TradeState::NotPay,
            payment: None,
            created_at: now,
            notify_attempts: 0,
            notify_acknowledged: false,
            refunds: Vec::new(),
            v3: None,
        }
    }

    #[test]
    fn ids_have_wechats_shapes() {
        let now = Utc::now();
        let tid = new_transaction_id(now);
        assert_eq!(tid.len(), 28);
        assert!(tid.bytes().all(|b| b.is_ascii_digit()));
        let refund_id = new_refund_id(now);
        assert!(refund_id.starts_with("50000") && refund_id.len() == 29);
        assert!(refund_id.bytes().all(|b| b.is_ascii_digit()));
        let (prepay, code_url) = new_prepay(now);
        assert!(prepay.starts_with("wx") && prepay.len() == 36);
        assert!(code_url.starts_with("weixin://wxpay/bizpayurl?pr="));
        assert_eq!(new_openid().len(), 28);
    }

    #[test]
    fn the_book_forgets_the_oldest_beyond_its_bound() {
        let now = Utc::now();
        let mut book = Book::new(3);
        for i in 0..5 {
            book.insert(order(&format!("o{i}"), now));
            if i == 0 {
                let refund = Refund {
                    entry: RefundEntry {
                        out_refund_no: "R0".into(),
                        refund_id: new_refund_id(now),
                        refund_fee: 1,
                        status: RefundStatus::Processing,
                        success_time: None,
                    },
                    notify_url: None,
                    created_at: now,
                    notify_attempts: 0,
                    notify_acknowledged: false,
                    v3: false,
                };
                book.add_refund("o0", refund);
                assert_eq!(book.refund_owner("R0"), Some("o0"));
                assert_eq!(book.get("o0").unwrap().refundable(), 0);
            }
        }
        assert_eq!(book.len(), 3);
        assert_eq!(book.refund_owner("R0"), None, "forgotten with its order");
        assert!(book.get("o0").is_none() && book.get("o1").is_none());
        let code_url = book.get("o4").unwrap().code_url.clone();
        assert_eq!(book.by_code_url(&code_url).unwrap().out_trade_no, "o4");
        assert_eq!(book.by_code_url.len(), 3);
        let prepay_id = book.get("o4").unwrap().prepay_id.clone();
        assert_eq!(book.by_prepay_id(&prepay_id).unwrap().out_trade_no, "o4");
        assert_eq!(book.by_prepay.len(), 3);
    }

    #[test]
    fn a_bounded_map_forgets_the_oldest_and_its_entries_expire() {
        let now = Utc::now();
        let mut map = Bounded::new(2);
        map.insert("a".into(), 1, now + chrono::Duration::seconds(10));
        map.insert("b".into(), 2, now + chrono::Duration::seconds(10));
        map.insert("c".into(), 3, now + chrono::Duration::seconds(10));
        assert_eq!(map.len(), 2);
        assert!(map.get("a", now).is_none(), "the oldest is forgotten");
        assert_eq!(map.get("c", now), Some(&3));
        assert!(map.get("c", now + chrono::Duration::seconds(10)).is_none());
        assert_eq!(
            map.get_mut("b", now).map(|v| std::mem::replace(v, 5)),
            Some(2)
        );
        assert_eq!(map.get("b", now), Some(&5));
    }
}
