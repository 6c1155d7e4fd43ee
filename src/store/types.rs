//! The store's vocabulary: what goes in and comes out of it, whichever database is behind it.

use chrono::{DateTime, TimeZone, Utc};

use super::StoreError;
use crate::domain::{Fen, OrderStatus, OutTradeNo};
use crate::wxpay::SignType;

/// One line of a new order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewItem {
    pub product_id: i64,
    pub num: i64,
}

/// A new order as the checkout asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRequest {
    pub items: Vec<NewItem>,
    /// The shop's name, first in WeChat's `body` (`SHOP_NAME-goods`, as WeChat asks).
    pub shop_name: String,
    /// Time to pay (`time_expire` from creation).
    pub ttl: std::time::Duration,
    /// Who places it, when per-client limits apply.
    pub client: Option<ClientLimits>,
    /// The buyer's contact, as checked by the checkout (empty when it asks for none).
    pub contact: Contact,
}

/// The buyer's contact as given at checkout: the fields the shop asks for (`CHECKOUT_FIELDS`),
/// already checked and normalised; the others `None`.
/// Stored sealed (see `contacts.rs`), as the JSON of its given fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Contact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A mainland mobile number, 11 digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Contact {
    /// Whether no field is given.
    pub fn is_empty(&self) -> bool {
        self.fields().iter().all(|(_, value)| value.is_none())
    }

    /// Each field by name, in display order.
    pub fn fields(&self) -> [(&'static str, Option<&str>); 5] {
        [
            ("name", self.name.as_deref()),
            ("phone", self.phone.as_deref()),
            ("address", self.address.as_deref()),
            ("email", self.email.as_deref()),
            ("note", self.note.as_deref()),
        ]
    }
}

/// The per-client limits an order is placed under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientLimits {
    /// The client (an IP address, or an IPv6 /64).
    pub key: String,
    /// Unpaid orders the client may hold at once.
    pub max_pending: i64,
    /// How long an order whose pay page was never opened holds its stock.
    pub unprepaid_hold: std::time::Duration,
}

/// Why an order could not be created. Nothing was reserved.
#[derive(Debug, thiserror::Error)]
pub enum CreateOrderError {
    #[error("no product {0}")]
    UnknownProduct(i64),
    #[error("product {product_id} has {available} left")]
    NotEnoughStock { product_id: i64, available: i64 },
    #[error("an order needs at least one item, each of a positive quantity")]
    Empty,
    #[error("the amount is too large")]
    TooLarge,
    /// The client holds as many unpaid orders as it may.
    #[error("too many unpaid orders")]
    TooManyPending,
    /// The client already has this cart unpaid: that order, not a second reservation.
    #[error("this cart is already pending as {0}")]
    AlreadyPending(OutTradeNo),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for CreateOrderError {
    fn from(e: sqlx::Error) -> Self {
        CreateOrderError::Store(e.into())
    }
}

/// The prepay WeChat created for an order: reused while `code_url` is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepay {
    pub prepay_id: String,
    pub code_url: String,
    pub code_url_expires_at: DateTime<Utc>,
    pub sign_type: SignType,
}

/// An order as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub out_trade_no: OutTradeNo,
    pub total_fee: Fen,
    pub status: OrderStatus,
    /// The unifiedorder `body` (the goods, by name).
    pub body: String,
    /// The unifiedorder `product_id`.
    pub product_id: String,
    /// The payment deadline, sent as `time_expire`; fixed at creation.
    pub expires_at: DateTime<Utc>,
    pub prepay: Option<Prepay>,
    pub transaction_id: Option<String>,
    pub pay_time: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub reconcile_attempts: i64,
    pub is_deleted: bool,
    /// A payment arrived after the order was closed: it must be refunded.
    pub refund_due: bool,
    /// What its refunds hold: requested, in progress or made (never more than `total_fee`).
    pub refunded_fee: Fen,
    /// The last trade_state WeChat reported (`PAYERROR` after a failure notify too, or
    /// `ORDERNOTEXIST`), if any.
    pub wechat_state: Option<String>,
    /// Questions the watch for late money has asked about this finished order.
    pub watch_step: i64,
    /// Of a paid order: what the shopper paid in cash, and what coupons paid (`total_fee` is
    /// their sum).
    pub cash_fee: Option<Fen>,
    pub coupon_fee: Option<Fen>,
    /// The token of the shopper's receipt link (`None` for orders from before receipts).
    pub receipt_token: Option<String>,
    /// The goods' shipment, once the merchant has sent them.
    pub shipment: Option<Shipment>,
    /// Payment attempts other than the QR code's (H5, JSAPI) that reached WeChat; with any,
    /// the QR code's is one too (see [`Attempt`]).
    pub attempts: i64,
    /// The attempt number WeChat knows the payment by, when it is not the order's own.
    pub paid_no: Option<OutTradeNo>,
    /// When the shopper asked to cancel it (it closes as soon as WeChat allows).
    pub cancel_requested_at: Option<DateTime<Utc>>,
}

impl Order {
    /// The number WeChat knows this order's payment by.
    pub fn wechat_no(&self) -> &OutTradeNo {
        self.paid_no.as_ref().unwrap_or(&self.out_trade_no)
    }
}

/// A way of paying an order as WeChat knows it: its own WeChat order, number and prepay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub attempt_no: OutTradeNo,
    pub order_no: OutTradeNo,
    pub way: crate::domain::PayWay,
    /// JSAPI: the payer's openid (never shown or logged whole).
    pub openid: Option<String>,
    /// H5: the shopper's IP, sent as `spbill_create_ip` (re-entries repeat it).
    pub client_ip: Option<String>,
    pub prepay: Option<AttemptPrepay>,
    /// The last trade_state WeChat reported for it.
    pub wechat_state: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When WeChat could take no (more) money for it: closed there, or paid.
    pub closed_at: Option<DateTime<Utc>>,
}

/// An attempt's prepay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptPrepay {
    pub prepay_id: String,
    pub expires_at: DateTime<Utc>,
    pub sign_type: SignType,
}

/// How an order's goods were sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipment {
    pub at: DateTime<Utc>,
    pub carrier: String,
    pub tracking_no: String,
}

/// A line of an order, as sold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderItem {
    pub product_id: i64,
    pub name: String,
    pub unit_price: Fen,
    pub num: i64,
}

/// Longest unifiedorder `body` WeChat accepts, in bytes of UTF-8 (a Chinese character is three).
pub const MAX_BODY_BYTES: usize = 128;

pub(crate) fn time(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The unifiedorder body as WeChat asks for it, `shop-goods`: the shop's name, then "name xN"
/// per line, cut to WeChat's 128 bytes — never inside a character — and marked with '…' where
/// cut.
pub(crate) fn order_body(shop_name: &str, lines: &[(String, i64)]) -> String {
    let goods = lines
        .iter()
        .map(|(name, num)| format!("{name} x{num}"))
        .collect::<Vec<_>>()
        .join(", ");
    let full = if shop_name.is_empty() {
        goods
    } else {
        format!("{shop_name}-{goods}")
    };
    if full.len() <= MAX_BODY_BYTES {
        return full;
    }
    let room = MAX_BODY_BYTES - '…'.len_utf8();
    let end = (0..=room)
        .rev()
        .find(|&i| full.is_char_boundary(i))
        .unwrap_or(0);
    let mut cut = full[..end].to_owned();
    cut.push('…');
    cut
}

/// A product of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// What shoppers' forms name it by (`sku_id`).
    pub id: i64,
    /// The merchant's code for it; catalogue imports upsert by it.
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price: Fen,
    pub stock: i64,
    /// On sale: shown in the shop and orderable. Inactive products' orders are still served.
    pub active: bool,
}

/// A product to add to the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct<'a> {
    pub sku: &'a str,
    pub name: &'a str,
    pub price: Fen,
    pub stock: i64,
}

/// A product as a catalogue file gives it, upserted by `sku`. Its values are checked (see the
/// `catalogue` module); the database's constraints check them again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueEntry {
    pub sku: String,
    pub name: String,
    pub price: Fen,
    /// Applied to a new product (0 when absent), and to an existing one only on a restock.
    pub stock: Option<i64>,
    pub description: String,
    pub active: bool,
}

/// What a catalogue import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// Where a payment was learned of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentSource {
    Notify,
    Query,
    Reconcile,
}

impl PaymentSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentSource::Notify => "notify",
            PaymentSource::Query => "query",
            PaymentSource::Reconcile => "reconcile",
        }
    }
}

/// What WeChat said of the payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentResult {
    Paid {
        transaction_id: String,
        pay_time: DateTime<Utc>,
    },
    /// A verified `result_code=FAIL` notify: a payment attempt failed (`PAYERROR`). The
    /// order stays open: the shopper may scan again.
    Failed,
}

/// A verified payment for an order, as WeChat reported it. Its amount and currency are
/// WeChat's: one that differs from the order's is recorded too, and applying it marks the money
/// to be returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentEvent {
    /// The order it pays.
    pub out_trade_no: OutTradeNo,
    /// The attempt's number WeChat reported it under, when not the order's own.
    pub wechat_no: Option<OutTradeNo>,
    pub result: PaymentResult,
    pub total_fee: Fen,
    /// `fee_type`: `CNY` for every payment a domestic merchant takes.
    pub fee_type: String,
    /// What the shopper paid in cash, and what coupons paid, when WeChat says.
    pub cash_fee: Option<Fen>,
    pub coupon_fee: Option<Fen>,
    pub source: PaymentSource,
}

/// The only currency an order is paid in.
pub const CNY: &str = "CNY";

/// An event as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub id: i64,
    /// False when the same payment had been recorded before (a duplicate).
    pub new: bool,
    /// True when it has already been applied to its order.
    pub applied: bool,
}

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The order is now paid.
    Paid,
    /// The order was already paid by this transaction.
    Duplicate,
    /// The order was closed before the payment arrived: the money must be refunded.
    PaidAfterClose,
    /// A payment attempt failed: recorded on the order (`PAYERROR`), which stays open.
    PayError,
    /// WeChat took an amount or currency other than the order's: the order is closed, its
    /// stock restored, and the money is due back.
    AmountMismatch,
    /// Nothing to do (no such pending order, or it was already final).
    Ignored,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Paid => "paid",
            Outcome::Duplicate => "duplicate",
            Outcome::PaidAfterClose => "paid_after_close",
            Outcome::PayError => "payerror",
            Outcome::AmountMismatch => "amount_mismatch",
            Outcome::Ignored => "ignored",
        }
    }
}

/// The result of [`super::Store::apply_payment_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Now {
        out_trade_no: OutTradeNo,
        outcome: Outcome,
    },
    /// Another consumer (or an earlier run) applied it first.
    Before,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_lists_goods_and_fits_wechats_limit() {
        assert_eq!(order_body("", &[("龙井茶".into(), 2)]), "龙井茶 x2");
        assert_eq!(
            order_body("茶舍", &[("a".into(), 1), ("b".into(), 3)]),
            "茶舍-a x1, b x3"
        );
        // Bytes, not characters: 60 Chinese characters are 180 bytes.
        let long = order_body("", &[("长".repeat(60), 1)]);
        assert!(long.len() <= MAX_BODY_BYTES, "{} bytes", long.len());
        assert!(
            long.len() > MAX_BODY_BYTES - 4,
            "cut as late as a character allows"
        );
        assert!(long.ends_with('…'));
        assert!(long.starts_with(&"长".repeat(41)));
        for name in ["a".repeat(200), "é".repeat(100), "長a".repeat(50)] {
            let body = order_body("茶舍 Tea House", &[(name, 1)]);
            assert!(body.len() <= MAX_BODY_BYTES && body.ends_with('…'));
        }
    }
}
