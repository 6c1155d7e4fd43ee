//! Refunds, exactly once. A refund is first **recorded** with its `out_refund_no` and reserved
//! against what was paid (one conditional update: concurrent requests, on any replica, never
//! together exceed the payment); only then is WeChat **asked** (`/secapi/pay/refund`, with the
//! client certificate). WeChat treats the same `out_refund_no` as the same refund, so when the
//! outcome is unknown (no answer, a 5xx, `SYSTEMERROR`, `FREQUENCY_LIMITED`, a crash before
//! the call) the follower asks again with the same number; a refusal (`NOTENOUGH`,
//! `USER_ACCOUNT_ABNORMAL`, `ERROR`, …) closes the refund and frees its amount.
//!
//! WeChat's word on a refund — the refund notify, a refund query, the answer to a call — is
//! applied by one path, [`Checkout::apply_refund_result`], which settles a refund once (a
//! settled refund never changes). A refund WeChat reports that the shop never asked for (made
//! by hand in the merchant platform) is recorded too, once.
//!
//! The follower (run by the reconciliation job) takes up unsettled refunds whose time has come,
//! claimed by one replica at a time: a `requested` one is asked for again, a `processing` one
//! is queried (`/pay/refundquery`), backing off from the job's interval to an hour.
//!
//! **Late payments**: money WeChat took for an order that could not take it (the order closed
//! first, or another amount: `refund_due`) is refunded in full, automatically with
//! `AUTO_REFUND_LATE_PAYMENTS` — at once when the consumer applies it, and by the follower's
//! sweep for any it missed. An automatic late refund is made once per order; if WeChat closes
//! it, the order is due again and the merchant decides.

use std::time::Duration;

use chrono::Utc;

use super::{Checkout, CheckoutError, NotifyRefusal};
use crate::domain::{Fen, OrderStatus, OutTradeNo};
use crate::store::{Refund, RefundAsk, RefundRefused, RefundState};
use crate::wxpay::refund::{parse_refund_notify, RefundNotifyError, RefundRequest};
use crate::wxpay::{ErrCode, RefundStatus, WxError};

/// A refund being asked for is not followed before this (nor before the job's next run):
/// the request in flight settles it. Were the follower to ask as well, WeChat would take it
/// for the same refund.
pub const FOLLOW_GRACE: Duration = Duration::from_secs(30);
/// How long a follower's claim on a refund lasts.
const FOLLOW_LEASE: Duration = Duration::from_secs(300);
/// The longest wait between two looks at an unsettled refund.
const MAX_FOLLOW_WAIT: Duration = Duration::from_secs(3600);
/// Refunds followed (and late payments swept) per run.
const FOLLOW_BATCH: i64 = 100;
/// Longest refund reason WeChat takes (`refund_desc`, 80 characters).
pub const MAX_REASON_CHARS: usize = 80;
/// Who makes late payments' refunds.
const AUTO: &str = "shop";

/// Why a refund cannot be made. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundProblem {
    #[error("refunds need the merchant's API client certificate (WEIXIN_CERT_P12, or WEIXIN_CERT_PEM and WEIXIN_KEY_PEM)")]
    NoCertificate,
    #[error("only a paid order can be refunded")]
    NotPaid,
    #[error("nothing is left to refund")]
    NothingLeft,
    #[error("at most {remaining} is left to refund")]
    ExceedsPaid { remaining: Fen },
    #[error("the amount must be more than ¥0.00")]
    BadAmount,
    #[error("the reason must be at most {MAX_REASON_CHARS} characters, on one line")]
    BadReason,
    #[error("nothing is due back for this order")]
    NothingDue,
}

/// What one follower round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FollowReport {
    /// Late payments whose refund was recorded and asked for.
    pub late_refunds: usize,
    /// Refunds asked for again (outcome unknown before).
    pub resent: usize,
    /// Refunds looked up with a refund query.
    pub queried: usize,
    /// Refunds settled by this round.
    pub settled: usize,
}

impl Checkout {
    /// Refunds `amount` of a paid order (all that is left when `None`): recorded, then asked of
    /// WeChat. Returns the refund as it then stands — `processing` once WeChat accepted it,
    /// `closed` with WeChat's reason if refused, `requested` if the outcome is not known yet
    /// (the follower asks again with the same number).
    pub async fn refund(
        &self,
        no: &str,
        amount: Option<Fen>,
        reason: &str,
        restock: bool,
        requested_by: &str,
    ) -> Result<Refund, CheckoutError> {
        if !self.wechat().can_refund() {
            return Err(RefundProblem::NoCertificate.into());
        }
        let reason = reason.trim();
        if reason.chars().count() > MAX_REASON_CHARS || reason.chars().any(char::is_control) {
            return Err(RefundProblem::BadReason.into());
        }
        let no =
            OutTradeNo::parse(no).map_err(|_| CheckoutError::NotFound(super::Missing::Order))?;
        let order = self
            .store()
            .order_now(&no)
            .await?
            .ok_or(CheckoutError::NotFound(super::Missing::Order))?;
        if order.status != OrderStatus::Paid {
            return Err(RefundProblem::NotPaid.into());
        }
        let remaining = Fen(order.total_fee.0 - order.refunded_fee.0);
        let fee = match amount {
            Some(fee) if fee.0 <= 0 => return Err(RefundProblem::BadAmount.into()),
            Some(fee) => fee,
            None if remaining.0 <= 0 => return Err(RefundProblem::NothingLeft.into()),
            None => remaining,
        };
        let ask = RefundAsk {
            fee,
            reason,
            restock,
            requested_by,
        };
        let refund = self
            .store()
            .request_refund(&no, &ask, self.follow_grace())
            .await
            .map_err(|e| match e {
                RefundRefused::NoSuchOrder => CheckoutError::NotFound(super::Missing::Order),
                RefundRefused::NotPaid => RefundProblem::NotPaid.into(),
                RefundRefused::ExceedsPaid { remaining } if remaining.0 <= 0 => {
                    RefundProblem::NothingLeft.into()
                }
                RefundRefused::ExceedsPaid { remaining } => {
                    RefundProblem::ExceedsPaid { remaining }.into()
                }
                RefundRefused::Store(e) => e.into(),
            })?;
        metrics::counter!("refunds_requested_total", "kind" => "merchant").increment(1);
        tracing::info!(
            out_trade_no = %no,
            out_refund_no = %refund.out_refund_no,
            refund_fee = refund.refund_fee.0,
            requested_by,
            "refund recorded"
        );
        self.send_refund(refund).await
    }

    /// Refunds an order's late payment in full (the console's and the command line's way to
    /// do it by hand, as the follower does it automatically).
    pub async fn refund_late_payment(
        &self,
        no: &str,
        requested_by: &str,
    ) -> Result<Refund, CheckoutError> {
        if !self.wechat().can_refund() {
            return Err(RefundProblem::NoCertificate.into());
        }
        let no =
            OutTradeNo::parse(no).map_err(|_| CheckoutError::NotFound(super::Missing::Order))?;
        let refund = self
            .store()
            .request_late_refund(&no, requested_by, self.follow_grace(), false)
            .await?
            .ok_or(RefundProblem::NothingDue)?;
        metrics::counter!("refunds_requested_total", "kind" => "late").increment(1);
        self.send_refund(refund).await
    }

    /// Asks WeChat for a recorded refund — again, with the same number, if it was asked
    /// before — and applies the answer. Returns the refund as it then stands.
    async fn send_refund(&self, refund: Refund) -> Result<Refund, CheckoutError> {
        let request = RefundRequest {
            // The number WeChat knows the payment by (a payment attempt's, when one paid).
            out_trade_no: refund.wechat_no.to_string(),
            out_refund_no: refund.out_refund_no.clone(),
            total_fee: refund.total_fee.0,
            refund_fee: refund.refund_fee.0,
            refund_desc: (!refund.reason.is_empty()).then(|| refund.reason.clone()),
            notify_url: Some(self.terms().refund_notify_url.to_string()),
        };
        match self.wechat().refund(&request).await {
            Ok(answer) => {
                if self
                    .store()
                    .refund_accepted(&refund.out_refund_no, &answer.refund_id)
                    .await?
                {
                    tracing::info!(
                        out_refund_no = %refund.out_refund_no,
                        refund_id = %answer.refund_id,
                        "refund accepted by WeChat"
                    );
                }
            }
            Err(e) => match refusal(&e) {
                Some(failure) => {
                    tracing::warn!(
                        out_refund_no = %refund.out_refund_no,
                        %failure,
                        "WeChat refused the refund; its amount is free again"
                    );
                    if self
                        .store()
                        .settle_refund(
                            &refund.out_refund_no,
                            RefundState::Closed,
                            None,
                            Some(&failure),
                        )
                        .await?
                        .is_some()
                    {
                        metrics::counter!("refunds_settled_total", "state" => "refused")
                            .increment(1);
                    }
                }
                None => tracing::warn!(
                    out_refund_no = %refund.out_refund_no,
                    error = %e,
                    "refund outcome unknown; it is asked for again with the same out_refund_no"
                ),
            },
        }
        Ok(self
            .store()
            .refund(&refund.out_refund_no)
            .await?
            .unwrap_or(refund))
    }

    /// Applies WeChat's word on one refund of order `no` — from a refund notify, a refund query
    /// or an answer — settling it once; one WeChat made without the shop asking is recorded.
    /// True when something changed.
    pub async fn apply_refund_result(
        &self,
        no: &OutTradeNo,
        out_refund_no: &str,
        status: &RefundStatus,
        refund_id: &str,
        refund_fee: Fen,
        source: &'static str,
    ) -> Result<bool, CheckoutError> {
        let state = match status {
            RefundStatus::Success => RefundState::Succeeded,
            RefundStatus::RefundClose => RefundState::Closed,
            RefundStatus::Change => RefundState::Change,
            RefundStatus::Processing => RefundState::Processing,
            RefundStatus::Other(text) => {
                tracing::warn!(
                    %out_refund_no,
                    state = %super::loggable(text),
                    source,
                    "a refund state this version does not know; left as it was"
                );
                return Ok(false);
            }
        };
        let store = self.store();
        let Some(ours) = store.refund(out_refund_no).await? else {
            // `no` is WeChat's number for the payment: the order's, or a payment attempt's.
            let Some(order_no) = self.order_no_for(no).await? else {
                tracing::error!(out_trade_no = %no, %out_refund_no, source, "WeChat reports a refund for no order of this shop");
                return Ok(false);
            };
            let recorded = store
                .record_external_refund(&order_no, out_refund_no, refund_fee, state, refund_id)
                .await?;
            if recorded {
                tracing::warn!(
                    out_trade_no = %no,
                    %out_refund_no,
                    refund_fee = refund_fee.0,
                    source,
                    "a refund made outside the shop (the merchant platform) recorded"
                );
            }
            return Ok(recorded);
        };
        if ours.wechat_no != *no || ours.refund_fee != refund_fee {
            tracing::error!(
                out_trade_no = %no,
                %out_refund_no,
                source,
                "WeChat reports this refund for another order or amount; not applied"
            );
            return Ok(false);
        }
        if state == RefundState::Processing {
            return Ok(store.refund_accepted(out_refund_no, refund_id).await?);
        }
        let Some(settled) = store
            .settle_refund(out_refund_no, state, Some(refund_id), None)
            .await?
        else {
            return Ok(false);
        };
        metrics::counter!("refunds_settled_total", "state" => state.as_str()).increment(1);
        if state == RefundState::Succeeded {
            self.announce(&ours.out_trade_no, super::push::OrderChange::Refunded)
                .await;
        }
        tracing::info!(
            out_trade_no = %no,
            %out_refund_no,
            state = state.as_str(),
            restocked = settled.restocked,
            source,
            "refund settled"
        );
        if settled.due_again {
            tracing::warn!(
                out_trade_no = %no,
                "a late payment's refund was closed by WeChat: the money is due again"
            );
        }
        Ok(true)
    }

    /// WeChat's refund notify: decrypted with the API key (a body that does not decrypt was
    /// not made with it: refused, nothing changed), then applied. `Ok` means answer `SUCCESS`:
    /// the result is on disk.
    pub async fn receive_refund_notify(&self, body: &[u8]) -> Result<(), CheckoutError> {
        let Some(v2) = self.wechat().v2() else {
            return Err(CheckoutError::notify(
                NotifyRefusal::InvalidSignature,
                "a v2 refund notify, and this shop speaks API v3",
            ));
        };
        let merchant = &v2.config().merchant;
        let mut verified: Option<OutTradeNo> = None;
        let result = match parse_refund_notify(body, merchant) {
            Err(e) => Err(CheckoutError::notify(refund_notify_refusal(&e), &e)),
            Ok(notice) => match OutTradeNo::parse(&notice.out_trade_no) {
                Err(_) => Err(CheckoutError::notify(
                    NotifyRefusal::InvalidFields,
                    "out_trade_no",
                )),
                Ok(no) => self
                    .apply_refund_result(
                        &no,
                        &notice.out_refund_no,
                        &notice.status,
                        &notice.refund_id,
                        Fen(notice.refund_fee),
                        "notify",
                    )
                    .await
                    .map(|_| verified = Some(no)),
            },
        };
        self.account_refund_notify(&result, verified.as_ref());
        result
    }

    /// Logs, counts and notes (the notify log) how a refund notify of either protocol went.
    pub(super) fn account_refund_notify(
        &self,
        result: &Result<(), CheckoutError>,
        verified: Option<&OutTradeNo>,
    ) {
        let kind = super::health::NotifyKind::Refund;
        let outcome = match result {
            Ok(()) => {
                self.note_notify(kind, "accepted", None, verified.map(|n| n.as_str()));
                "accepted"
            }
            Err(CheckoutError::NotifyRefused { refusal, detail }) => {
                tracing::warn!(reason = refusal.reason(), %detail, "refund notify refused");
                self.note_notify(kind, "refused", Some(refusal.reason()), None);
                refusal.reason()
            }
            Err(_) => {
                let reason = "temporarily unavailable";
                self.note_notify(kind, "refused", Some(reason), None);
                reason
            }
        };
        metrics::counter!("refund_notify_total", "outcome" => outcome).increment(1);
    }

    /// The follower's round: late payments still due are refunded (with
    /// `AUTO_REFUND_LATE_PAYMENTS`), then unsettled refunds whose time has come are asked for
    /// again or queried.
    pub async fn follow_refunds(&self) -> Result<FollowReport, CheckoutError> {
        let mut report = FollowReport::default();
        if !self.wechat().can_refund() {
            return Ok(report);
        }
        if self.terms().auto_refund_late_payments {
            for no in self.store().refund_due_orders(FOLLOW_BATCH).await? {
                if self.auto_refund_late(&no).await?.is_some() {
                    report.late_refunds += 1;
                }
            }
        }
        let now = Utc::now().timestamp();
        let claimed = self
            .store()
            .claim_refunds_to_follow(now, follow_after(FOLLOW_LEASE), FOLLOW_BATCH)
            .await?;
        for refund in claimed {
            let no = refund.out_refund_no.clone();
            let settled = match refund.state {
                RefundState::Requested => {
                    report.resent += 1;
                    self.send_refund(refund.clone()).await?.state.settled()
                }
                _ => {
                    report.queried += 1;
                    if let Err(e) = self.query_refunds(&refund.wechat_no, "query").await? {
                        tracing::warn!(out_trade_no = %refund.out_trade_no, error = %e, "refund query failed");
                    }
                    self.store()
                        .refund(&no)
                        .await?
                        .is_some_and(|r| r.state.settled())
                }
            };
            if settled {
                report.settled += 1;
            } else {
                let wait = self
                    .terms()
                    .reconcile_interval
                    .saturating_mul(1 << refund.attempts.clamp(0, 12))
                    .min(MAX_FOLLOW_WAIT);
                self.store()
                    .follow_refund_at(&no, follow_after(wait))
                    .await?;
            }
        }
        Ok(report)
    }

    /// Records and asks for the refund of a late payment, automatically, once per order.
    pub(super) async fn auto_refund_late(
        &self,
        no: &OutTradeNo,
    ) -> Result<Option<Refund>, CheckoutError> {
        let Some(refund) = self
            .store()
            .request_late_refund(no, AUTO, self.follow_grace(), true)
            .await?
        else {
            return Ok(None);
        };
        metrics::counter!("refunds_requested_total", "kind" => "late").increment(1);
        tracing::warn!(
            out_trade_no = %no,
            out_refund_no = %refund.out_refund_no,
            refund_fee = refund.refund_fee.0,
            "late payment: refunding it in full"
        );
        Ok(Some(self.send_refund(refund).await?))
    }

    /// When a refund just asked for is first followed: the job's next run, within
    /// [`FOLLOW_GRACE`].
    fn follow_grace(&self) -> i64 {
        follow_after(self.terms().reconcile_interval.min(FOLLOW_GRACE))
    }

    /// Asks WeChat for an order's refunds and applies what it says of each (`source` names who
    /// asked, for the log). WeChat's failure is handed back for the caller to judge.
    pub(super) async fn query_refunds(
        &self,
        no: &OutTradeNo,
        source: &'static str,
    ) -> Result<Result<(), WxError>, CheckoutError> {
        // v3 asks by refund: the ones recorded here (v2 asks by order and lists them all, so
        // it reads none).
        let recorded: Vec<String> = if self.wechat().v3().is_some() {
            self.store()
                .refunds_of(no)
                .await?
                .into_iter()
                .map(|r| r.out_refund_no.to_string())
                .collect()
        } else {
            Vec::new()
        };
        let answer = match self.wechat().refund_query(no.as_str(), &recorded).await {
            Ok(answer) => answer,
            Err(e) => return Ok(Err(e)),
        };
        for entry in &answer.refunds {
            self.apply_refund_result(
                no,
                &entry.out_refund_no,
                &entry.status,
                &entry.refund_id,
                Fen(entry.refund_fee),
                source,
            )
            .await?;
        }
        Ok(Ok(()))
    }
}

/// WeChat's refusal of a refund request, as the merchant reads it — or `None` when the
/// outcome is unknown and the same request must be made again.
fn refusal(e: &WxError) -> Option<String> {
    match e {
        WxError::Business {
            err_code,
            err_code_des,
            ..
        } if !matches!(err_code, ErrCode::SystemError | ErrCode::FrequencyLimited) => {
            Some(super::loggable(&format!("{err_code}: {err_code_des}")))
        }
        WxError::ReturnFail { return_msg, .. } => Some(super::loggable(return_msg)),
        WxError::NoCertificate { .. } => Some(e.to_string()),
        _ => None,
    }
}

fn refund_notify_refusal(e: &RefundNotifyError) -> NotifyRefusal {
    match e {
        RefundNotifyError::Xml(_) => NotifyRefusal::InvalidXml,
        RefundNotifyError::NotSuccess => NotifyRefusal::NotSuccess,
        RefundNotifyError::WrongMerchant => NotifyRefusal::MerchantMismatch,
        // Content that does not decrypt with the key is what a forgery looks like.
        RefundNotifyError::NoReqInfo
        | RefundNotifyError::NotBase64
        | RefundNotifyError::Undecryptable => NotifyRefusal::InvalidSignature,
        RefundNotifyError::Content(_) | RefundNotifyError::Fields(_) => {
            NotifyRefusal::InvalidFields
        }
    }
}

/// Unix seconds `wait` from now.
fn follow_after(wait: Duration) -> i64 {
    Utc::now().timestamp() + wait.as_secs() as i64
}
