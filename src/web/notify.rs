//! `POST /weixin/pay/notify/url`: WeChat Pay's payment notify, handled in this order — size
//! (64 KiB, refused before parsing) → strict XML → return_code → signature with the algorithm
//! recorded for the order (the sign's length for an unknown one) → appid and mch_id → the order
//! exists → amount and currency → durable record → SUCCESS. Nothing is trusted before the
//! signature; any failure answers FAIL with a reason and changes nothing.

use actix_web::{web, HttpResponse};

use super::AppState;
use crate::domain::{Fen, OutTradeNo};
use crate::store::{PaymentEvent, PaymentResult, PaymentSource};
use crate::wxpay::notify::{self, NotifyError, SUCCESS_ANSWER};
use crate::wxpay::types::ResultCode;
use crate::wxpay::SignType;

/// Largest notify body read; real ones are under 4 KiB.
pub const MAX_NOTIFY_BYTES: usize = 64 * 1024;

fn answer(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/xml; charset=utf-8")
        .body(body)
}

/// Why a notify was refused: a short reason for WeChat and the log (never the body or keys).
fn refuse(reason: &'static str, detail: &dyn std::fmt::Display) -> HttpResponse {
    tracing::warn!(reason, %detail, "payment notify refused");
    metrics::counter!("notify_total", "outcome" => reason).increment(1);
    answer(notify::fail_answer(reason))
}

#[tracing::instrument(name = "notify", skip_all, fields(out_trade_no))]
pub async fn receive(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    let unverified = match notify::parse(&body) {
        Ok(unverified) => unverified,
        Err(e @ NotifyError::NotSuccess) => return refuse("return_code is not SUCCESS", &e),
        Err(e) => return refuse("invalid XML", &e),
    };
    // The claimed order number only chooses the algorithm to verify with.
    let claimed = unverified
        .claimed_out_trade_no()
        .and_then(|no| OutTradeNo::parse(no).ok());
    if let Some(no) = &claimed {
        tracing::Span::current().record("out_trade_no", no.as_str());
    }
    let order = match &claimed {
        Some(no) => match state.store.order(no).await {
            Ok(order) => order,
            Err(e) => return refuse("temporarily unavailable", &e),
        },
        None => None,
    };
    let sign_type = order
        .as_ref()
        .and_then(|o| o.prepay.as_ref().map(|p| p.sign_type))
        .or_else(|| unverified.sign_type_by_length())
        .unwrap_or(SignType::Md5);
    let merchant = &state.checkout.merchant;
    let verified = match unverified.verify(&merchant.key, sign_type) {
        Ok(verified) => verified,
        Err(e @ (NotifyError::Signature(_) | NotifyError::SignTypeMismatch { .. })) => {
            return refuse("invalid signature", &e)
        }
        Err(e) => return refuse("invalid fields", &e),
    };
    let paid = verified.notify;
    if paid.appid != merchant.appid || paid.mch_id != merchant.mch_id {
        return refuse("appid or mch_id mismatch", &paid.mch_id);
    }
    let Some(order) = order else {
        return refuse("unknown order", &paid.out_trade_no);
    };
    if paid.total_fee != order.total_fee.0 || paid.fee_type != "CNY" {
        return refuse(
            "amount mismatch",
            &format_args!(
                "{} {} for {}",
                paid.total_fee, paid.fee_type, order.total_fee.0
            ),
        );
    }
    let result = match paid.result_code {
        ResultCode::Success => {
            let (Some(transaction_id), Some(time_end)) = (paid.transaction_id, paid.time_end)
            else {
                return refuse("invalid fields", &"payment without transaction");
            };
            let Ok(pay_time) = crate::wxpay::time::parse_beijing(&time_end) else {
                return refuse("invalid fields", &"time_end");
            };
            PaymentResult::Paid {
                transaction_id,
                pay_time,
            }
        }
        ResultCode::Fail => PaymentResult::Failed,
    };
    let event = PaymentEvent {
        out_trade_no: order.out_trade_no,
        result,
        total_fee: Fen(paid.total_fee),
        source: PaymentSource::Notify,
    };
    match state.payments.confirm(&event).await {
        Ok(recorded) => {
            let outcome = if recorded.new {
                "accepted"
            } else {
                "duplicate"
            };
            metrics::counter!("notify_total", "outcome" => outcome).increment(1);
            tracing::info!(
                out_trade_no = %event.out_trade_no,
                duplicate = !recorded.new,
                "payment notify accepted"
            );
            answer(SUCCESS_ANSWER.to_owned())
        }
        Err(e) => refuse("temporarily unavailable", &e),
    }
}
