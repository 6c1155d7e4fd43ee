//! The checkout's one error type. Each variant says what the shopper or caller should be told;
//! the causes (a store or WeChat Pay error) travel along for the log. The web layer renders it —
//! as a page, as the seed front end's JSON, or as WeChat's notify answer — in one place
//! (`web/error.rs`).
//!
//! Which error type where: the protocol (`wxpay::WxError`) and the store (`StoreError`) have
//! their own, for their callers' decisions; a checkout flow turns them into a
//! [`CheckoutError`], and nothing above the checkout sees the others. It is `Clone` (causes are
//! shared) because concurrent callers of one flight share one result.

use std::sync::Arc;

use crate::domain::OutTradeNo;
use crate::store::StoreError;
use crate::wxpay::{TradeState, WxError};

/// What a caller asked for that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Order,
    Product,
    /// A day the daily bill never reconciled.
    BillDay,
    /// An event delivery (to a target still configured).
    Delivery,
}

impl Missing {
    pub fn as_str(self) -> &'static str {
        match self {
            Missing::Order => "order",
            Missing::Product => "product",
            Missing::BillDay => "reconciled day",
            Missing::Delivery => "delivery",
        }
    }
}

/// Why a verified-looking notify was not recorded. The reason is WeChat's `return_msg` and the
/// `notify_total` metric's label, so the set is fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyRefusal {
    NotSuccess,
    InvalidXml,
    /// A v3 notify's body is not WeChat's JSON.
    InvalidJson,
    InvalidSignature,
    InvalidFields,
    MerchantMismatch,
    UnknownOrder,
}

impl NotifyRefusal {
    pub fn reason(self) -> &'static str {
        match self {
            NotifyRefusal::NotSuccess => "return_code is not SUCCESS",
            NotifyRefusal::InvalidXml => "invalid XML",
            NotifyRefusal::InvalidJson => "invalid JSON",
            NotifyRefusal::InvalidSignature => "invalid signature",
            NotifyRefusal::InvalidFields => "invalid fields",
            NotifyRefusal::MerchantMismatch => "appid or mch_id mismatch",
            NotifyRefusal::UnknownOrder => "unknown order",
        }
    }
}

/// Longest text taken from a request that goes into a log line.
pub const LOGGABLE_CHARS: usize = 120;

/// Text from a request, made safe to log: control characters escaped (no forged lines, no
/// terminal escapes) and cut to [`LOGGABLE_CHARS`].
pub fn loggable(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == LOGGABLE_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckoutError {
    /// No such order or product (anything that is not an order number included).
    #[error("no such {}", .0.as_str())]
    NotFound(Missing),
    /// A quantity outside 1..=[`super::MAX_NUM`].
    #[error("a quantity must be a whole number from 1 to {}", super::MAX_NUM)]
    BadQuantity,
    /// An order that cannot be placed (no lines, or an amount out of range).
    #[error("this order cannot be placed")]
    Unplaceable,
    /// The caller's `total_fee` differs from the stored order's amount, which is the only one
    /// ever used.
    #[error("total_fee does not match the order's amount")]
    AmountMismatch,
    /// Not enough stock; nothing was reserved. (How much is left is not said: that would
    /// tell a hoarder exactly what to take.)
    #[error("not enough stock")]
    OutOfStock,
    /// The client has placed, or holds unpaid, as many orders as it may; nothing reserved.
    #[error("too many orders from one client")]
    TooMany,
    /// The order can no longer be paid (it is paid, closed or failed).
    #[error("the order is {0}")]
    NotPayable(TradeState),
    /// This way of paying is not open to this order or shopper (H5 off, JSAPI without the
    /// official account, another WeChat account paying it already); the QR code still is.
    #[error("{0}")]
    WayUnavailable(&'static str),
    /// WeChat Pay did not answer, or asked to try again: nothing changed, try again (the order
    /// to go back to, if any).
    #[error("WeChat Pay unavailable: {cause}")]
    WechatBusy {
        cause: Arc<WxError>,
        retry: Option<OutTradeNo>,
    },
    /// The order's payment cannot be settled here yet (WeChat says it is paid, but no payment of
    /// its amount could be confirmed): never shown as paid, never sent back to unifiedorder;
    /// try again.
    #[error("not settled yet: {why}")]
    NotSettled {
        why: &'static str,
        retry: OutTradeNo,
    },
    /// WeChat Pay refused the request.
    #[error("WeChat Pay refused: {0}")]
    WechatRefused(Arc<WxError>),
    /// A notify that cannot be recorded; `detail` is for the log only.
    #[error("notify refused: {}: {detail}", .refusal.reason())]
    NotifyRefused {
        refusal: NotifyRefusal,
        detail: String,
    },
    /// A refund that cannot be made; nothing changed.
    #[error("{0}")]
    Refund(#[from] super::refunds::RefundProblem),
    /// A day's bill that cannot be reconciled now; nothing changed.
    #[error("{0}")]
    Bill(#[from] super::bills::BillProblem),
    #[error("store: {0}")]
    Store(#[source] Arc<StoreError>),
}

impl From<StoreError> for CheckoutError {
    fn from(e: StoreError) -> Self {
        CheckoutError::Store(Arc::new(e))
    }
}

impl CheckoutError {
    /// A WeChat Pay failure about `order`: transient ones are worth a retry, the rest refusals.
    pub(super) fn wechat(e: WxError, order: &OutTradeNo) -> CheckoutError {
        if e.is_transient() {
            CheckoutError::WechatBusy {
                cause: Arc::new(e),
                retry: Some(order.clone()),
            }
        } else {
            CheckoutError::WechatRefused(Arc::new(e))
        }
    }

    pub(super) fn notify(refusal: NotifyRefusal, detail: impl std::fmt::Display) -> Self {
        CheckoutError::NotifyRefused {
            refusal,
            detail: loggable(&detail.to_string()),
        }
    }

    /// The order the caller may try again with, if the failure is worth a retry.
    pub fn retry(&self) -> Option<&OutTradeNo> {
        match self {
            CheckoutError::WechatBusy { retry, .. } => retry.as_ref(),
            CheckoutError::NotSettled { retry, .. } => Some(retry),
            _ => None,
        }
    }
}
