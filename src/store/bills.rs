//! The daily bill's records — a day's reconciliation and what it found — and the store's calls
//! for them (the SQL is in `sql/bills.rs`).

use chrono::{DateTime, NaiveDate, Utc};

use super::{Backend, Refund, Store, StoreError};
use crate::domain::Fen;

/// Where a day's reconciliation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillDayStatus {
    /// Not reconciled yet: due at `next_at` (again, after a failure).
    Open,
    Done,
    /// WeChat keeps bills three months: a day still open after that is given up.
    Expired,
}

impl BillDayStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BillDayStatus::Open => "open",
            BillDayStatus::Done => "done",
            BillDayStatus::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<BillDayStatus> {
        [
            BillDayStatus::Open,
            BillDayStatus::Done,
            BillDayStatus::Expired,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// One Beijing day's reconciliation, with the figures of its last run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillDay {
    pub day: NaiveDate,
    pub status: BillDayStatus,
    /// Runs started.
    pub attempts: i64,
    /// When an open day is (next) due.
    pub next_at: DateTime<Utc>,
    /// Why the last run failed, if it did.
    pub last_error: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
    pub figures: DayFigures,
    /// Discrepancies not resolved by a later run.
    pub open_discrepancies: i64,
}

/// What a run read from WeChat's bill and how much of it matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DayFigures {
    /// WeChat had no bill for the day (no trades).
    pub no_bill: bool,
    pub lines: i64,
    pub payments: i64,
    pub payments_fee: Fen,
    pub refunds: i64,
    pub refunds_fee: Fen,
    /// WeChat's fees, in thousandths of a fen.
    pub charges: i64,
    /// Lines that agree with the shop's records.
    pub matched: i64,
}

/// What kind of difference a reconciliation found. A small fixed set: it labels a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DiscrepancyKind {
    /// A payment WeChat took that the shop had not recorded.
    WechatOnly,
    /// A payment the shop recorded that WeChat's bill does not list.
    ShopOnly,
    /// A payment both know, of different amounts.
    Amount,
    /// A refund that differs: missing on either side, another amount, another outcome.
    Refund,
}

impl DiscrepancyKind {
    pub const ALL: [DiscrepancyKind; 4] = [
        DiscrepancyKind::WechatOnly,
        DiscrepancyKind::ShopOnly,
        DiscrepancyKind::Amount,
        DiscrepancyKind::Refund,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DiscrepancyKind::WechatOnly => "wechat_only",
            DiscrepancyKind::ShopOnly => "shop_only",
            DiscrepancyKind::Amount => "amount",
            DiscrepancyKind::Refund => "refund",
        }
    }

    pub fn parse(text: &str) -> Option<DiscrepancyKind> {
        DiscrepancyKind::ALL
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// A difference between WeChat's bill and the shop's records, and what the shop did about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discrepancy {
    pub kind: DiscrepancyKind,
    /// The transaction_id (payments) or out_refund_no (refunds) it is about.
    pub reference: String,
    pub out_trade_no: Option<String>,
    /// The amount on each side, where there is one.
    pub wechat_fee: Option<Fen>,
    pub shop_fee: Option<Fen>,
    /// What differs, in words.
    pub detail: String,
    /// What the shop did about it ("" when nothing could be done).
    pub action: String,
    pub found_at: DateTime<Utc>,
    /// When a later run no longer found it.
    pub resolved_at: Option<DateTime<Utc>>,
}

/// A payment the shop recorded (from a notify, a query or a bill), as the bill is compared
/// with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedPayment {
    pub transaction_id: String,
    /// The number WeChat knows it by: the order's, or the payment attempt's that paid.
    pub out_trade_no: String,
    pub total_fee: Fen,
    pub pay_time: DateTime<Utc>,
}

/// What a run found, to record.
#[derive(Debug, Clone, Default)]
pub struct DayFindings {
    pub figures: DayFigures,
    pub discrepancies: Vec<Discrepancy>,
}

impl Store {
    /// Opens `days` for reconciliation, due at `now`; days already known are left alone.
    pub async fn open_bill_days(&self, days: &[NaiveDate], now: i64) -> Result<(), StoreError> {
        dispatch!(self.open_bill_days(days, now))
    }

    /// The latest day opened before `day`.
    pub async fn latest_bill_day_before(
        &self,
        day: NaiveDate,
    ) -> Result<Option<NaiveDate>, StoreError> {
        dispatch!(self.latest_bill_day_before(day))
    }

    /// Claims the oldest open day due at `now`, leased until `lease_until` (one replica gets it).
    pub async fn claim_due_bill_day(
        &self,
        now: i64,
        lease_until: i64,
    ) -> Result<Option<BillDay>, StoreError> {
        dispatch!(self.claim_due_bill_day(now, lease_until))
    }

    /// Claims `day` now whatever its state (opening it if new); `None` while another run holds
    /// it.
    pub async fn claim_bill_day(
        &self,
        day: NaiveDate,
        now: i64,
        lease_until: i64,
    ) -> Result<Option<BillDay>, StoreError> {
        dispatch!(self.claim_bill_day(day, now, lease_until))
    }

    /// Records a finished run and its discrepancies; returns the kinds of the new ones.
    pub async fn finish_bill_day(
        &self,
        day: NaiveDate,
        findings: &DayFindings,
        now: i64,
    ) -> Result<Vec<DiscrepancyKind>, StoreError> {
        dispatch!(self.finish_bill_day(day, findings, now))
    }

    /// Leaves a finished day open for the job, due at `next_at` (its bill was not final yet).
    pub async fn reopen_bill_day(&self, day: NaiveDate, next_at: i64) -> Result<(), StoreError> {
        dispatch!(self.reopen_bill_day(day, next_at))
    }

    /// Records a failed run: the day stays open, due again at `next_at`.
    pub async fn fail_bill_day(
        &self,
        day: NaiveDate,
        error: &str,
        next_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        dispatch!(self.fail_bill_day(day, error, next_at, now))
    }

    /// Gives up an open day whose bill WeChat no longer keeps.
    pub async fn expire_bill_day(
        &self,
        day: NaiveDate,
        why: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        dispatch!(self.expire_bill_day(day, why, now))
    }

    pub async fn bill_day(&self, day: NaiveDate) -> Result<Option<BillDay>, StoreError> {
        dispatch!(self.bill_day(day))
    }

    /// The latest `limit` days, newest first.
    pub async fn bill_days(&self, limit: i64) -> Result<Vec<BillDay>, StoreError> {
        dispatch!(self.bill_days(limit))
    }

    /// A day's discrepancies, open ones first.
    pub async fn bill_discrepancies(&self, day: NaiveDate) -> Result<Vec<Discrepancy>, StoreError> {
        dispatch!(self.bill_discrepancies(day))
    }

    /// Discrepancies no later run has resolved.
    pub async fn open_discrepancies(&self) -> Result<i64, StoreError> {
        dispatch!(self.open_discrepancies())
    }

    /// The payments recorded whose WeChat time falls in `[from, to)` (Unix seconds).
    pub async fn payments_between(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<RecordedPayment>, StoreError> {
        dispatch!(self.payments_between(from, to))
    }

    /// The payment recorded as `transaction_id`.
    pub async fn recorded_payment(
        &self,
        transaction_id: &str,
    ) -> Result<Option<RecordedPayment>, StoreError> {
        dispatch!(self.recorded_payment(transaction_id))
    }

    /// The refunds recorded in `[from, to)` (Unix seconds).
    pub async fn refunds_created_between(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<Refund>, StoreError> {
        dispatch!(self.refunds_created_between(from, to))
    }
}
