//! The daily bill: each Beijing day is reconciled against WeChat's own trade bill, the record
//! finance people trust. Reconciliation by query ([`super::reconcile`]) asks about orders the
//! shop thinks unpaid; the bill shows the other mistakes — a payment WeChat took that the shop
//! never heard of, one the shop recorded that WeChat never settled, amounts or refunds that
//! differ.
//!
//! **When.** Once `BILL_FETCH_AT` (Beijing time) has passed, yesterday is opened (and any day
//! missed since the last one, up to WeChat's three months); the reconciliation job takes up
//! each open day that is due, claimed by one replica at a time (a lease moved forward by a
//! conditional update). A day fails — WeChat unreachable, the bill not made yet, a bill that
//! does not read — and stays open, due again after a backoff (5 minutes doubling to 6 hours;
//! half an hour for `Bill Creating`). `No Bill Exist` is WeChat's way of saying the day had no
//! trades: not an error. The merchant can run any day again (console, `wxpay-checkout bill`);
//! a run of a day whose bill is not final yet (today) leaves it open for the job.
//!
//! **What.** Line by line, keyed by WeChat's numbers:
//! - a payment (`SUCCESS`) the shop recorded with the same order and amount: matched; another
//!   amount: `amount`;
//! - a payment the shop never recorded: `wechat_only` — and it is then **recorded through the
//!   usual path**, once WeChat's signed order query confirms it (the bill is a lead, the query
//!   the proof): a pending order becomes paid; a closed one `refund_due`, refunded
//!   automatically with `AUTO_REFUND_LATE_PAYMENTS`;
//! - a payment the shop recorded for the day (by WeChat's own `time_end`) that the bill does
//!   not list: `shop_only`;
//! - refunds (`REFUND` lines, by `out_refund_no`): another amount, another final outcome, one
//!   the shop never asked for (recorded from WeChat's refund query), or one the shop has that
//!   WeChat does not know (checked with a refund query first: a refund WeChat knows is in
//!   another day's bill): `refund`. A refund whose outcome the shop has not heard yet is simply
//!   looked up and applied.
//!
//! Each finding is kept once per day, kind and reference; a re-run finds again what is still
//! wrong, marks resolved what is not, and does nothing twice (payments and refunds are recorded
//! once whatever asks). New findings count in `bill_discrepancies_total{kind}`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

use super::confirm::event_from_query;
use super::{Checkout, CheckoutError};
use crate::domain::{Fen, OrderStatus, OutTradeNo};
use crate::store::{
    BillDay, DayFindings, Discrepancy, DiscrepancyKind, PaymentSource, RecordedPayment,
    RefundState, StoreError,
};
use crate::wxpay::bill::{is_not_ready, BillLine, BillRequest, BillType};
use crate::wxpay::time::{beijing_date, beijing_midnight};
use crate::wxpay::{RefundStatus, TradeState, WxError};

/// How long a run holds its day: far longer than reconciling a busy day takes.
const LEASE: Duration = Duration::from_secs(600);
/// WeChat keeps bills three months: days older than this are given up.
pub const BILL_KEPT_DAYS: i64 = 90;
/// Days one job turn reconciles; the rest wait for the next.
const DAYS_PER_TURN: usize = 3;
/// After a failed run: the first wait, doubled each time up to the last.
const FIRST_RETRY: Duration = Duration::from_secs(300);
const MAX_RETRY: Duration = Duration::from_secs(6 * 3600);
/// After `Bill Creating`: the bill is on its way.
const NOT_READY_RETRY: Duration = Duration::from_secs(1800);

/// Why a day cannot be run now. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillProblem {
    #[error("that day has not begun yet in Beijing")]
    Future,
    #[error("this day is being reconciled right now; try again in a minute")]
    Busy,
}

/// Why a run did not finish.
enum Failure {
    WeChat(WxError),
    Checkout(CheckoutError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Checkout(e.into())
    }
}

impl From<CheckoutError> for Failure {
    fn from(e: CheckoutError) -> Self {
        Failure::Checkout(e)
    }
}

impl Checkout {
    /// The daily job's turn (the reconciliation job calls it each interval): once
    /// `BILL_FETCH_AT` has passed, yesterday and any day missed since the last one are opened;
    /// then due days are reconciled, a few per turn. Returns the days run.
    pub async fn bill_turn(&self, now: DateTime<Utc>) -> Result<Vec<BillDay>, CheckoutError> {
        let store = self.store();
        let today = beijing_date(now);
        let yesterday = today.pred_opt().expect("a day before today");
        if now >= self.bill_due(yesterday) && store.bill_day(yesterday).await?.is_none() {
            // Yesterday, and every day since the last one known (the shop was down), within
            // what WeChat keeps; on the first turn ever, yesterday alone.
            let first = match store.latest_bill_day_before(yesterday).await? {
                Some(latest) => latest
                    .succ_opt()
                    .expect("a day after")
                    .max(today - chrono::Duration::days(BILL_KEPT_DAYS)),
                None => yesterday,
            };
            let days: Vec<NaiveDate> = first.iter_days().take_while(|d| *d <= yesterday).collect();
            store.open_bill_days(&days, now.timestamp()).await?;
        }
        let mut ran = Vec::new();
        while ran.len() < DAYS_PER_TURN {
            let Some(day) = store
                .claim_due_bill_day(now.timestamp(), lease_end(now))
                .await?
            else {
                break;
            };
            ran.push(self.run_claimed(&day, now).await?);
        }
        Ok(ran)
    }

    /// Runs one day's reconciliation now, or again: the day as it then stands (still open, with
    /// its error, if the run failed).
    pub async fn reconcile_bill_day(&self, day: NaiveDate) -> Result<BillDay, CheckoutError> {
        let now = self.store().now().await?;
        if day > beijing_date(now) {
            return Err(BillProblem::Future.into());
        }
        let Some(claimed) = self
            .store()
            .claim_bill_day(day, now.timestamp(), lease_end(now))
            .await?
        else {
            return Err(BillProblem::Busy.into());
        };
        self.run_claimed(&claimed, now).await
    }

    /// The latest `limit` days' reconciliations, newest first.
    pub async fn bill_days(&self, limit: i64) -> Result<Vec<BillDay>, CheckoutError> {
        Ok(self.store().bill_days(limit).await?)
    }

    /// One day's reconciliation and its discrepancies.
    pub async fn bill_day(
        &self,
        day: NaiveDate,
    ) -> Result<Option<(BillDay, Vec<Discrepancy>)>, CheckoutError> {
        let Some(found) = self.store().bill_day(day).await? else {
            return Ok(None);
        };
        Ok(Some((found, self.store().bill_discrepancies(day).await?)))
    }

    /// When the bill of `day` is due: `BILL_FETCH_AT` the next day, Beijing time.
    fn bill_due(&self, day: NaiveDate) -> DateTime<Utc> {
        let next = day.succ_opt().expect("a day after");
        beijing_midnight(next) + (self.terms().bill_fetch_at - chrono::NaiveTime::MIN)
    }

    /// Runs a day this caller has claimed (as the claim returned it) and records how it went.
    async fn run_claimed(
        &self,
        claimed: &BillDay,
        now: DateTime<Utc>,
    ) -> Result<BillDay, CheckoutError> {
        let day = claimed.day;
        let store = self.store();
        let today = beijing_date(now);
        if day < today - chrono::Duration::days(BILL_KEPT_DAYS) {
            store
                .expire_bill_day(
                    day,
                    "WeChat keeps bills three months: this one is gone",
                    now.timestamp(),
                )
                .await?;
            tracing::error!(%day, "the day's bill was never reconciled and WeChat no longer has it");
            return self.day_now(day).await;
        }
        match self.compare_day(day).await {
            Ok(findings) => {
                let new = store
                    .finish_bill_day(day, &findings, now.timestamp())
                    .await?;
                for kind in &new {
                    metrics::counter!("bill_discrepancies_total", "kind" => kind.as_str())
                        .increment(1);
                }
                metrics::counter!("bill_days_total", "result" => if findings.figures.no_bill { "no_bill" } else { "reconciled" }).increment(1);
                if self.bill_due(day) > now {
                    // Not final yet: the job takes it up again once it is.
                    store
                        .reopen_bill_day(day, self.bill_due(day).timestamp())
                        .await?;
                }
                let open = findings.discrepancies.len();
                if open > 0 {
                    tracing::warn!(%day, discrepancies = open, new = new.len(), "the day's bill differs from the shop's records");
                } else {
                    tracing::info!(%day, lines = findings.figures.lines, "the day's bill matches the shop's records");
                }
            }
            Err(Failure::WeChat(e)) => {
                let not_ready = matches!(&e, WxError::ReturnFail { return_msg, .. } if is_not_ready(return_msg));
                let wait = if not_ready {
                    NOT_READY_RETRY
                } else {
                    FIRST_RETRY
                        .saturating_mul(1 << (claimed.attempts - 1).clamp(0, 12))
                        .min(MAX_RETRY)
                };
                // Never before the day's bill is due: a day run early (today) waits for it.
                let next = (now + chrono::Duration::from_std(wait).unwrap_or_default())
                    .max(self.bill_due(day));
                metrics::counter!("bill_days_total", "result" => "failed").increment(1);
                if not_ready {
                    tracing::info!(%day, "WeChat has not made the day's bill yet; asking again later");
                } else {
                    tracing::warn!(%day, error = %e, retry_at = %next, "the day's bill could not be reconciled; trying again later");
                }
                store
                    .fail_bill_day(day, &e.to_string(), next.timestamp(), now.timestamp())
                    .await?;
            }
            Err(Failure::Checkout(e)) => {
                let next = now + chrono::Duration::from_std(FIRST_RETRY).unwrap_or_default();
                metrics::counter!("bill_days_total", "result" => "failed").increment(1);
                tracing::error!(%day, error = %e, "reconciling the day's bill failed");
                store
                    .fail_bill_day(day, &e.to_string(), next.timestamp(), now.timestamp())
                    .await?;
            }
        }
        self.day_now(day).await
    }

    async fn day_now(&self, day: NaiveDate) -> Result<BillDay, CheckoutError> {
        self.store()
            .bill_day(day)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("bill day {day} vanished")).into())
    }

    /// Downloads the day's bill and compares it with the shop's records, acting on what can be
    /// acted on.
    async fn compare_day(&self, day: NaiveDate) -> Result<DayFindings, Failure> {
        let request = BillRequest {
            bill_date: day,
            bill_type: BillType::All,
            gzip: true,
        };
        let bill = self
            .wechat()
            .download_bill(&request)
            .await
            .map_err(Failure::WeChat)?;
        let (from, to) = (
            beijing_midnight(day).timestamp(),
            beijing_midnight(day.succ_opt().expect("a day after")).timestamp(),
        );
        let mut shop: HashMap<String, RecordedPayment> = self
            .store()
            .payments_between(from, to)
            .await?
            .into_iter()
            .map(|p| (p.transaction_id.clone(), p))
            .collect();
        let mut findings = DayFindings::default();
        findings.figures.no_bill = bill.is_none();
        let lines = bill.map(|b| b.lines).unwrap_or_default();
        findings.figures.lines = lines.len() as i64;
        let mut refund_lines = Vec::new();
        for line in lines {
            findings.figures.charges += line.charge;
            match line.trade_state {
                TradeState::Success => {
                    findings.figures.payments += 1;
                    findings.figures.payments_fee.0 += line.total_fee;
                    let recorded = match shop.remove(&line.transaction_id) {
                        Some(payment) => Some(payment),
                        None => self.store().recorded_payment(&line.transaction_id).await?,
                    };
                    match recorded {
                        Some(p)
                            if p.total_fee.0 == line.total_fee
                                && p.out_trade_no == line.out_trade_no =>
                        {
                            findings.figures.matched += 1
                        }
                        Some(p) => findings.discrepancies.push(Discrepancy {
                            out_trade_no: Some(line.out_trade_no.clone()),
                            wechat_fee: Some(Fen(line.total_fee)),
                            shop_fee: Some(p.total_fee),
                            detail: format!(
                                "WeChat's bill says {} was paid for order {}; the shop recorded {} for order {}",
                                Fen(line.total_fee),
                                line.out_trade_no,
                                p.total_fee,
                                p.out_trade_no
                            ),
                            ..found(DiscrepancyKind::Amount, &line.transaction_id)
                        }),
                        None => findings.discrepancies.push(self.missed_payment(&line).await?),
                    }
                }
                TradeState::Refund => refund_lines.push(line),
                ref other => findings.discrepancies.push(Discrepancy {
                    out_trade_no: Some(line.out_trade_no.clone()),
                    wechat_fee: Some(Fen(line.total_fee)),
                    detail: format!(
                        "WeChat's bill lists this trade as {other}, which this shop does not reconcile"
                    ),
                    ..found(DiscrepancyKind::WechatOnly, &line.transaction_id)
                }),
            }
        }
        let mut shop_only: Vec<RecordedPayment> = shop.into_values().collect();
        shop_only
            .sort_by(|a, b| (a.pay_time, &a.transaction_id).cmp(&(b.pay_time, &b.transaction_id)));
        for p in shop_only {
            findings.discrepancies.push(Discrepancy {
                out_trade_no: Some(p.out_trade_no.clone()),
                shop_fee: Some(p.total_fee),
                detail: format!(
                    "the shop recorded a payment of {} for order {} at {}; WeChat's bill for the day does not list it",
                    p.total_fee,
                    p.out_trade_no,
                    p.pay_time
                        .with_timezone(&crate::wxpay::time::beijing())
                        .format("%Y-%m-%d %H:%M:%S")
                ),
                ..found(DiscrepancyKind::ShopOnly, &p.transaction_id)
            });
        }
        self.compare_refunds(refund_lines, from, to, &mut findings)
            .await?;
        Ok(findings)
    }

    /// A payment WeChat's bill lists and the shop never recorded: confirmed by WeChat's signed
    /// order query, then recorded through the payments channel like any payment.
    async fn missed_payment(&self, line: &BillLine) -> Result<Discrepancy, Failure> {
        let mut found = Discrepancy {
            out_trade_no: Some(line.out_trade_no.clone()),
            wechat_fee: Some(Fen(line.total_fee)),
            detail: format!(
                "WeChat's bill lists a payment of {} for order {} that the shop had not recorded",
                Fen(line.total_fee),
                line.out_trade_no
            ),
            ..found(DiscrepancyKind::WechatOnly, &line.transaction_id)
        };
        // The bill names WeChat's number: the order's, or a payment attempt's.
        let wechat_no = OutTradeNo::parse(&line.out_trade_no).ok();
        let order = match &wechat_no {
            Some(no) => match self.order_no_for(no).await? {
                Some(order_no) => self.store().order_now(&order_no).await?,
                None => None,
            },
            None => None,
        };
        let Some(order) = order else {
            found.detail = format!(
                "WeChat's bill lists a payment of {} for {}, which is no order of this shop",
                Fen(line.total_fee),
                line.out_trade_no
            );
            return Ok(found);
        };
        let wechat_no = wechat_no.unwrap_or_else(|| order.out_trade_no.clone());
        let query = match self.wechat().order_query(wechat_no.as_str()).await {
            Ok(query) => query,
            Err(e) if e.is_transient() => return Err(Failure::WeChat(e)),
            Err(e) => {
                found.action = format!("not recorded: WeChat's order query failed ({e})");
                return Ok(found);
            }
        };
        let paid = matches!(query.trade_state, TradeState::Success | TradeState::Refund);
        if !paid || query.transaction_id.as_deref() != Some(line.transaction_id.as_str()) {
            found.action = format!(
                "not recorded: WeChat's order query says {} ({})",
                query.trade_state,
                query.transaction_id.as_deref().unwrap_or("no transaction")
            );
            return Ok(found);
        }
        let Some(event) = event_from_query(&order, &wechat_no, &query, PaymentSource::Reconcile)
        else {
            found.action = "not recorded: WeChat's answer is malformed".into();
            return Ok(found);
        };
        self.inner.payments.confirm(&event).await?;
        found.action = match order.status {
            OrderStatus::Pending if event.total_fee == order.total_fee => {
                "recorded: the order is paid".into()
            }
            _ if self.terms().auto_refund_late_payments && self.can_refund() => {
                "recorded: the order could not take it, so it is being refunded".into()
            }
            _ => "recorded: the order could not take it; the money is due back".into(),
        };
        tracing::warn!(
            out_trade_no = %order.out_trade_no,
            transaction_id = %line.transaction_id,
            "a payment found only in WeChat's bill: recorded"
        );
        Ok(found)
    }

    /// The bill's refund lines against the shop's refunds, and the shop's refunds of the day
    /// against the bill.
    async fn compare_refunds(
        &self,
        lines: Vec<BillLine>,
        from: i64,
        to: i64,
        findings: &mut DayFindings,
    ) -> Result<(), Failure> {
        let mut seen = HashSet::new();
        for line in lines {
            let refund = line
                .refund
                .as_ref()
                .expect("the reader gives every REFUND line its refund");
            findings.figures.refunds += 1;
            findings.figures.refunds_fee.0 += refund.refund_fee;
            seen.insert(refund.out_refund_no.clone());
            let mut ours = self.store().refund(&refund.out_refund_no).await?;
            // WeChat has it: a refund the shop has not heard settle (or accepted) is looked up.
            let looked_up = match &ours {
                None => true,
                Some(r) => {
                    r.state == RefundState::Requested
                        || (!r.state.settled() && refund.status != RefundStatus::Processing)
                }
            };
            let mut action = String::new();
            if looked_up {
                // What WeChat says of the order's refunds settles ours, or records one the shop
                // never asked for.
                if let Ok(no) = OutTradeNo::parse(&line.out_trade_no) {
                    if self.order_no_for(&no).await?.is_some() {
                        match self.query_refunds(&no, "bill").await? {
                            Err(e) if e.is_transient() => return Err(Failure::WeChat(e)),
                            Err(e) => action = format!("WeChat's refund query failed ({e})"),
                            Ok(()) => {}
                        }
                        let before = ours.is_some();
                        ours = self.store().refund(&refund.out_refund_no).await?;
                        if !before && ours.is_some() {
                            action = "recorded from WeChat's refund query".into();
                        }
                    }
                }
            }
            let base = Discrepancy {
                out_trade_no: Some(line.out_trade_no.clone()),
                wechat_fee: Some(Fen(refund.requested_fee)),
                action,
                ..found(DiscrepancyKind::Refund, &refund.out_refund_no)
            };
            match ours {
                None => findings.discrepancies.push(Discrepancy {
                    detail: format!(
                        "WeChat's bill lists a refund of {} for order {} that the shop never asked for",
                        Fen(refund.requested_fee),
                        line.out_trade_no
                    ),
                    ..base
                }),
                Some(ours) if ours.refund_fee.0 != refund.requested_fee => {
                    findings.discrepancies.push(Discrepancy {
                        shop_fee: Some(ours.refund_fee),
                        detail: format!(
                            "WeChat's bill says {} was asked for; the shop recorded {}",
                            Fen(refund.requested_fee),
                            ours.refund_fee
                        ),
                        ..base
                    })
                }
                Some(ours) if !outcomes_agree(&refund.status, ours.state) => {
                    findings.discrepancies.push(Discrepancy {
                        shop_fee: Some(ours.refund_fee),
                        detail: format!(
                            "WeChat's bill says the refund is {}; the shop has it {}",
                            refund.status,
                            ours.state.as_str()
                        ),
                        ..base
                    })
                }
                Some(_) => findings.figures.matched += 1,
            }
        }
        // The shop's refunds of the day that WeChat accepted, missing from the bill: unless
        // WeChat knows them (asked for near midnight, or again later: another day's bill), they
        // exist only here.
        let missing: Vec<_> = self
            .store()
            .refunds_created_between(from, to)
            .await?
            .into_iter()
            .filter(|r| {
                accepted(r.state, r.refund_id.is_some()) && !seen.contains(&r.out_refund_no)
            })
            .collect();
        for ours in missing {
            let asked = [ours.out_refund_no.to_string()];
            let known = match self
                .wechat()
                .refund_query(ours.out_trade_no.as_str(), &asked)
                .await
            {
                Ok(answer) => answer
                    .refunds
                    .iter()
                    .any(|entry| entry.out_refund_no == ours.out_refund_no),
                Err(e) if e.is_transient() => return Err(Failure::WeChat(e)),
                Err(_) => false,
            };
            if !known {
                findings.discrepancies.push(Discrepancy {
                    out_trade_no: Some(ours.out_trade_no.to_string()),
                    shop_fee: Some(ours.refund_fee),
                    detail: format!(
                        "the shop recorded a refund of {} for order {} that WeChat does not know",
                        ours.refund_fee, ours.out_trade_no
                    ),
                    ..found(DiscrepancyKind::Refund, &ours.out_refund_no)
                });
            }
        }
        Ok(())
    }
}

/// A discrepancy of `kind` about `reference`, to fill in.
fn found(kind: DiscrepancyKind, reference: &str) -> Discrepancy {
    Discrepancy {
        kind,
        reference: reference.to_owned(),
        out_trade_no: None,
        wechat_fee: None,
        shop_fee: None,
        detail: String::new(),
        action: String::new(),
        found_at: Utc::now(),
        resolved_at: None,
    }
}

/// Whether WeChat has (had) the refund: it accepted it at some point.
fn accepted(state: RefundState, has_refund_id: bool) -> bool {
    matches!(
        state,
        RefundState::Processing | RefundState::Succeeded | RefundState::Change
    ) || (state == RefundState::Closed && has_refund_id)
}

/// Whether the bill's refund status (a snapshot from when the bill was made) and the shop's
/// state can both be true.
fn outcomes_agree(bill: &RefundStatus, ours: RefundState) -> bool {
    match bill {
        // Made while it was on its way: anything it became since agrees.
        RefundStatus::Processing => ours != RefundState::Requested,
        RefundStatus::Success => ours == RefundState::Succeeded,
        RefundStatus::RefundClose => ours == RefundState::Closed,
        RefundStatus::Change => ours == RefundState::Change,
        RefundStatus::Other(_) => false,
    }
}

fn lease_end(now: DateTime<Utc>) -> i64 {
    now.timestamp() + LEASE.as_secs() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_agree_when_the_bill_is_an_earlier_snapshot() {
        assert!(outcomes_agree(
            &RefundStatus::Processing,
            RefundState::Succeeded
        ));
        assert!(outcomes_agree(
            &RefundStatus::Processing,
            RefundState::Processing
        ));
        assert!(!outcomes_agree(
            &RefundStatus::Processing,
            RefundState::Requested
        ));
        assert!(outcomes_agree(
            &RefundStatus::Success,
            RefundState::Succeeded
        ));
        assert!(!outcomes_agree(&RefundStatus::Success, RefundState::Closed));
        assert!(!outcomes_agree(
            &RefundStatus::RefundClose,
            RefundState::Succeeded
        ));
        assert!(!outcomes_agree(
            &RefundStatus::Other("X".into()),
            RefundState::Succeeded
        ));
    }

    #[test]
    fn a_refund_refused_at_once_never_reached_wechat() {
        assert!(!accepted(RefundState::Closed, false));
        assert!(accepted(RefundState::Closed, true));
        assert!(!accepted(RefundState::Requested, false));
        assert!(accepted(RefundState::Change, true));
    }
}
