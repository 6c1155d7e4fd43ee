//! The store's vocabulary for the merchant console: sessions, the order list and its filter, an
//! order's timeline, the dashboard's days.

use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::{Fen, OrderStatus, OutTradeNo};

/// A signed-in console session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSession {
    /// The token every form of the session carries.
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

/// Where an order stands as the merchant sorts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListStatus {
    /// Waiting for payment.
    Pending,
    /// Paid, not shipped yet.
    Paid,
    Shipped,
    /// Paid, and refunded in part or in full (requested, in progress or made).
    Refunded,
    /// Closed unpaid.
    Closed,
    /// Money arrived that has to go back.
    RefundDue,
}

impl ListStatus {
    pub const ALL: [ListStatus; 6] = [
        ListStatus::Pending,
        ListStatus::Paid,
        ListStatus::Shipped,
        ListStatus::Refunded,
        ListStatus::Closed,
        ListStatus::RefundDue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ListStatus::Pending => "pending",
            ListStatus::Paid => "paid",
            ListStatus::Shipped => "shipped",
            ListStatus::Refunded => "refunded",
            ListStatus::Closed => "closed",
            ListStatus::RefundDue => "refund_due",
        }
    }

    pub fn parse(text: &str) -> Option<ListStatus> {
        ListStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// An order's, from its columns (`refunded`: its refunds hold some of the payment).
    pub fn of(status: OrderStatus, refund_due: bool, shipped: bool, refunded: bool) -> ListStatus {
        match status {
            _ if refund_due => ListStatus::RefundDue,
            OrderStatus::Pending => ListStatus::Pending,
            OrderStatus::Paid if refunded => ListStatus::Refunded,
            OrderStatus::Paid if shipped => ListStatus::Shipped,
            OrderStatus::Paid => ListStatus::Paid,
            OrderStatus::Closed => ListStatus::Closed,
        }
    }
}

/// Which orders a list shows: all of them narrowed by each field that is set. Newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFilter {
    pub status: Option<ListStatus>,
    /// An order number, a transaction id, a buyer's name or (normalised) phone: exact matches.
    pub search: Option<String>,
    /// Placed at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Placed before this time.
    pub to: Option<DateTime<Utc>>,
    /// Only orders after this one in the list's order (keyset pagination): its creation time
    /// and number.
    pub after: Option<(DateTime<Utc>, OutTradeNo)>,
}

/// An order as the console's list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSummary {
    pub out_trade_no: OutTradeNo,
    pub created_at: DateTime<Utc>,
    pub status: ListStatus,
    pub total_fee: Fen,
    pub transaction_id: Option<String>,
    pub pay_time: Option<DateTime<Utc>>,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub body: String,
}

/// Something that happened to an order, for its timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderEvent {
    pub at: DateTime<Utc>,
    /// `created`, `prepay`, `notify`, `query`, `reconcile`, `paid`, `closed`, `shipped`, …
    pub kind: String,
    /// Who: `shopper`, `wechat`, `shop`, `merchant`.
    pub actor: String,
    pub detail: String,
}

/// One Beijing day's sales.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaySales {
    /// Days since 1970-01-01, Beijing time.
    pub day: i64,
    pub paid_orders: i64,
    pub revenue: Fen,
    /// Refunds that succeeded that day.
    pub refunded: Fen,
}

/// A refund as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub out_refund_no: String,
    pub out_trade_no: OutTradeNo,
    pub refund_fee: Fen,
    pub reason: String,
    pub restock: bool,
    pub state: RefundState,
    pub refund_id: Option<String>,
    pub requested_by: String,
    pub created_at: DateTime<Utc>,
    pub settled_at: Option<DateTime<Utc>>,
    /// Refunds a late payment (money taken for an order that could not take it) in full.
    pub late: bool,
    /// The amount of the payment refunded, as WeChat is told (`total_fee`).
    pub total_fee: Fen,
    /// Why WeChat refused it, when it did (`err_code`: `err_code_des`).
    pub failure: Option<String>,
    /// Times the follower has taken it up.
    pub attempts: i64,
    /// The number WeChat knows the refunded payment by: the order's, or the payment
    /// attempt's that paid.
    pub wechat_no: OutTradeNo,
}

/// What settling a refund changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub out_trade_no: OutTradeNo,
    /// The order's goods went back on the shelf with it.
    pub restocked: bool,
    /// A late payment's refund closed without paying back: the money is due again.
    pub due_again: bool,
}

/// The reason recorded for a late payment's refund.
pub const LATE_REASON: &str = "late payment: the order had closed";

/// A refund asked for, before it is recorded.
#[derive(Debug, Clone, Copy)]
pub struct RefundAsk<'a> {
    pub fee: Fen,
    pub reason: &'a str,
    /// Put the order's goods back on the shelf once it succeeds.
    pub restock: bool,
    /// `merchant`, `cli`, `shop`: who asked.
    pub requested_by: &'a str,
}

/// Where a recorded refund stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefundState {
    /// Recorded; WeChat not yet known to have it (asked again with the same number).
    Requested,
    /// Accepted by WeChat, not settled yet.
    Processing,
    Succeeded,
    /// Closed by WeChat without paying back: its amount may be refunded again.
    Closed,
    /// WeChat could not pay it back to the shopper's account (`CHANGE`): the merchant settles it
    /// in the merchant platform; its amount stays held.
    Change,
}

impl RefundState {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundState::Requested => "requested",
            RefundState::Processing => "processing",
            RefundState::Succeeded => "succeeded",
            RefundState::Closed => "closed",
            RefundState::Change => "change",
        }
    }

    pub fn parse(text: &str) -> Option<RefundState> {
        [
            RefundState::Requested,
            RefundState::Processing,
            RefundState::Succeeded,
            RefundState::Closed,
            RefundState::Change,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// Whether it is over.
    pub fn settled(self) -> bool {
        matches!(
            self,
            RefundState::Succeeded | RefundState::Closed | RefundState::Change
        )
    }
}

/// Why a refund was not recorded. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum RefundRefused {
    #[error("no such order")]
    NoSuchOrder,
    #[error("the order is not paid")]
    NotPaid,
    /// More than what is left to refund.
    #[error("at most {remaining} is left to refund")]
    ExceedsPaid { remaining: Fen },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for RefundRefused {
    fn from(e: sqlx::Error) -> Self {
        RefundRefused::Store(e.into())
    }
}

/// One order of a buyer, with the contact given with it (the console's export).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuyerData {
    pub out_trade_no: OutTradeNo,
    pub contact: super::Contact,
}

/// A record of the access log: a console session saw, exported or deleted buyers' details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactAccess {
    pub at: DateTime<Utc>,
    /// The session as a short one-way id of its token.
    pub session: String,
    /// `view`, `export`, `delete` or `csv`.
    pub action: String,
    /// The order, the buyer's phone hash, or the CSV's filters.
    pub subject: String,
}

/// Where the stored contacts stand against the key ring (the console's privacy page): when
/// nothing waits and nothing is unreadable, the older keys of `CONTACT_KEY` may be dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactKeyUse {
    /// The current key's id.
    pub current: Option<String>,
    /// Contacts sealed under the current key.
    pub current_rows: i64,
    /// Contacts under an older key of the ring, or in plain text from before sealing: waiting
    /// to be re-sealed.
    pub waiting_rows: i64,
    /// Contacts under a key the ring does not hold: unreadable.
    pub unreadable_rows: i64,
}
