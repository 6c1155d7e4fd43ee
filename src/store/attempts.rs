//! The store's calls for payment attempts (the SQL is in `sql/attempts.rs`): each way of
//! paying an order is its own WeChat order, with its own number.

use chrono::{DateTime, Utc};

use super::types::{Attempt, AttemptPrepay};
use super::{Backend, Store, StoreError};
use crate::domain::{OutTradeNo, PayWay};

impl Store {
    /// The order's attempt for `way` (numbered `attempt_no`), made if it has none; `None` when
    /// the order is not pending. `openid` (JSAPI) and `client_ip` (H5) are kept from the first
    /// time, since a re-entry at WeChat must repeat them.
    pub async fn open_attempt(
        &self,
        order_no: &OutTradeNo,
        way: PayWay,
        attempt_no: &OutTradeNo,
        openid: Option<&str>,
        client_ip: Option<&str>,
    ) -> Result<Option<Attempt>, StoreError> {
        dispatch!(self.open_attempt(order_no, way, attempt_no, openid, client_ip))
    }

    /// An attempt by its number at WeChat.
    pub async fn attempt(&self, attempt_no: &OutTradeNo) -> Result<Option<Attempt>, StoreError> {
        dispatch!(self.attempt(attempt_no))
    }

    /// An order's attempts, oldest first (none for an order paid by QR code alone).
    pub async fn attempts_of(&self, order_no: &OutTradeNo) -> Result<Vec<Attempt>, StoreError> {
        dispatch!(self.attempts_of(order_no))
    }

    /// Keeps the prepay WeChat gave an attempt (whatever its order's state: WeChat has it).
    pub async fn record_attempt_prepay(
        &self,
        attempt_no: &OutTradeNo,
        prepay: &AttemptPrepay,
    ) -> Result<(), StoreError> {
        dispatch!(self.record_attempt_prepay(attempt_no, prepay))
    }

    /// Notes the trade_state WeChat reported for an attempt.
    pub async fn note_attempt_state(
        &self,
        attempt_no: &OutTradeNo,
        state: &str,
    ) -> Result<(), StoreError> {
        dispatch!(self.note_attempt_state(attempt_no, state))
    }

    /// Marks an attempt closed at WeChat; true when this call did.
    pub async fn close_attempt(
        &self,
        attempt_no: &OutTradeNo,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        dispatch!(self.close_attempt(attempt_no, now))
    }

    /// Attempts WeChat may still take money for whose order is over another way, made before
    /// `made_before` (WeChat closes nothing in its first 5 minutes).
    pub async fn spare_attempts(
        &self,
        made_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Attempt>, StoreError> {
        dispatch!(self.spare_attempts(made_before, limit))
    }
}
