//! WeChat Pay's API v3 notifies (`POST /weixin/pay/v3/notify`): payments and refunds on one
//! route, told apart by `event_type`. Checked in this order: WeChat Pay's signature by the
//! configured public key, its timestamp within 5 minutes → the resource opened with the APIv3
//! key (`AEAD_AES_256_GCM`, which also proves it was not altered) → mchid and appid → the order
//! exists → well-formed payment fields → durable record, exactly as a v2 notify continues from
//! its signature (see [`super::notify`]). Nothing is trusted before the signature; a refusal
//! changes nothing, and WeChat, told 4xx, sends the notify again.

use super::confirm::{payment_event, Reported};
use super::gateway::v3::{beijing_time, refund_status};
use super::notify::{paid_order, NotifyReceipt};
use super::{Checkout, CheckoutError, NotifyRefusal};
use crate::domain::{Fen, OutTradeNo};
use crate::store::PaymentSource;
use crate::wxpay::v3::notify::{self, Event, NotifyError};
use crate::wxpay::v3::types::{RefundNotice, Transaction};
use crate::wxpay::v3::SignedHeaders;

/// What a v3 notify that was taken carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V3NotifyReceipt {
    Payment(NotifyReceipt),
    Refund,
}

impl Checkout {
    /// Verifies, opens and records a v3 notify. `Ok` means answer 204: its content is on disk.
    pub async fn receive_v3_notify(
        &self,
        headers: &SignedHeaders,
        body: &[u8],
    ) -> Result<V3NotifyReceipt, CheckoutError> {
        let opened = match self.open_v3_notify(headers, body) {
            Ok(opened) => opened,
            Err(e) => {
                // Which kind it claimed to be cannot be believed: counted as a payment notify.
                let result = Err(e);
                self.account_payment_notify(&result);
                return result.map(V3NotifyReceipt::Payment);
            }
        };
        match opened.event {
            Event::Paid(transaction) => {
                let result = self.record_v3_payment(&transaction).await;
                self.account_payment_notify(&result);
                result.map(V3NotifyReceipt::Payment)
            }
            Event::Refund(notice) => {
                let (result, verified) = self.record_v3_refund(&notice).await;
                self.account_refund_notify(&result, verified.as_ref());
                result.map(|()| V3NotifyReceipt::Refund)
            }
        }
    }

    fn open_v3_notify(
        &self,
        headers: &SignedHeaders,
        body: &[u8],
    ) -> Result<notify::Opened, CheckoutError> {
        let Some(v3) = self.wechat().v3() else {
            return Err(CheckoutError::notify(
                NotifyRefusal::InvalidSignature,
                "a v3 notify, and this shop speaks API v2",
            ));
        };
        let (pay_key, apiv3_key) = v3.notify_keys();
        let now = chrono::Utc::now().timestamp();
        notify::open(pay_key, apiv3_key, headers, body, now).map_err(|e| {
            let refusal = match &e {
                NotifyError::Signature(_) | NotifyError::Sealed(_) | NotifyError::Algorithm(_) => {
                    NotifyRefusal::InvalidSignature
                }
                NotifyError::Json(_) => NotifyRefusal::InvalidJson,
                NotifyError::EventType(_) | NotifyError::Plaintext { .. } => {
                    NotifyRefusal::InvalidFields
                }
            };
            CheckoutError::notify(refusal, &e)
        })
    }

    #[tracing::instrument(name = "notify", skip_all, fields(out_trade_no = %super::loggable(&paid.out_trade_no)))]
    async fn record_v3_payment(&self, paid: &Transaction) -> Result<NotifyReceipt, CheckoutError> {
        let merchant = self.wechat().merchant();
        if paid.mchid != merchant.mch_id || paid.appid != merchant.appid {
            return Err(CheckoutError::notify(
                NotifyRefusal::MerchantMismatch,
                &paid.mchid,
            ));
        }
        let claimed = OutTradeNo::parse(&paid.out_trade_no).ok();
        let (order, attempt) = self.notified_order(claimed.as_ref()).await?;
        let (order, wechat_no) = paid_order(order, attempt, &paid.out_trade_no)?;
        // TRANSACTION.SUCCESS is the only payment event: a paid transaction, whose fields must
        // say what was taken (an amount or currency other than the order's is recorded all the
        // same, and marked due back when applied).
        let malformed = |what: &str| CheckoutError::notify(NotifyRefusal::InvalidFields, what);
        if !paid.trade_state.is_paid() {
            return Err(malformed("TRANSACTION.SUCCESS without a paid trade_state"));
        }
        let amount = paid.amount.as_ref().ok_or_else(|| malformed("no amount"))?;
        let (Some(transaction_id), Some(total_fee), Some(success_time)) = (
            paid.transaction_id.as_deref(),
            amount.total,
            paid.success_time.as_deref(),
        ) else {
            return Err(malformed("payment without transaction, amount or time"));
        };
        let time_end = beijing_time(success_time).ok_or_else(|| malformed("success_time"))?;
        let reported = Reported {
            transaction_id,
            total_fee,
            fee_type: amount.currency.as_deref().unwrap_or("CNY"),
            cash_fee: amount.payer_total,
            coupon_fee: amount
                .payer_total
                .filter(|cash| *cash < total_fee)
                .map(|cash| total_fee - cash),
            time_end: &time_end,
        };
        let mut event = payment_event(&order, &reported, PaymentSource::Notify)
            .ok_or_else(|| malformed("malformed payment fields"))?;
        event.wechat_no = wechat_no;
        self.record_notified(event).await
    }

    async fn record_v3_refund(
        &self,
        notice: &RefundNotice,
    ) -> (Result<(), CheckoutError>, Option<OutTradeNo>) {
        if notice.mchid != self.wechat().merchant().mch_id {
            return (
                Err(CheckoutError::notify(
                    NotifyRefusal::MerchantMismatch,
                    &notice.mchid,
                )),
                None,
            );
        }
        let Ok(no) = OutTradeNo::parse(&notice.out_trade_no) else {
            return (
                Err(CheckoutError::notify(
                    NotifyRefusal::InvalidFields,
                    "out_trade_no",
                )),
                None,
            );
        };
        let applied = self
            .apply_refund_result(
                &no,
                &notice.out_refund_no,
                &refund_status(notice.refund_status),
                &notice.refund_id,
                Fen(notice.amount.refund),
                "notify",
            )
            .await;
        match applied {
            Ok(_) => (Ok(()), Some(no)),
            Err(e) => (Err(e), None),
        }
    }
}
