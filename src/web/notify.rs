//! `POST /weixin/pay/notify/url`: WeChat Pay's payment notify, and
//! `POST /weixin/pay/refund/notify`: its refund notify. The body's size is bounded here
//! (64 KiB, refused before parsing); the checks and the durable record are the checkout's
//! ([`Checkout::receive_notify`](crate::checkout::Checkout::receive_notify),
//! [`Checkout::receive_refund_notify`](crate::checkout::Checkout::receive_refund_notify)).
//! The answer is WeChat's XML: SUCCESS once recorded (a duplicate too), FAIL with a reason
//! otherwise.
//!
//! `POST /weixin/pay/v3/notify`: API v3's notifies, payments and refunds alike
//! ([`Checkout::receive_v3_notify`](crate::checkout::Checkout::receive_v3_notify)), checked
//! against the signature headers. Answered as WeChat documents: `204` with no body once recorded,
//! a 4xx (5xx when the shop could not record it) with `{"code":"FAIL","message":…}` otherwise,
//! and WeChat sends it again.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::notify_failure;
use super::AppState;
use crate::wxpay::notify::SUCCESS_ANSWER;

/// Largest notify body read; real ones are under 4 KiB.
pub const MAX_NOTIFY_BYTES: usize = 64 * 1024;

/// An XML answer to WeChat.
pub(super) fn xml_answer(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/xml; charset=utf-8")
        .body(body)
}

pub async fn receive(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    match state.checkout.receive_notify(&body).await {
        Ok(_) => xml_answer(SUCCESS_ANSWER.to_owned()),
        Err(e) => notify_failure(&e),
    }
}

pub async fn receive_refund(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    match state.checkout.receive_refund_notify(&body).await {
        Ok(()) => xml_answer(SUCCESS_ANSWER.to_owned()),
        Err(e) => notify_failure(&e),
    }
}

pub async fn receive_v3(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    use crate::checkout::{CheckoutError, NotifyRefusal};
    use crate::wxpay::v3::SignedHeaders;
    let headers =
        SignedHeaders::read(|name| request.headers().get(name).and_then(|v| v.to_str().ok()));
    match state.checkout.receive_v3_notify(&headers, &body).await {
        Ok(_) => HttpResponse::NoContent().finish(),
        Err(e) => {
            let (status, message) = match &e {
                CheckoutError::NotifyRefused { refusal, .. } => (
                    match refusal {
                        NotifyRefusal::InvalidSignature => StatusCode::UNAUTHORIZED,
                        _ => StatusCode::BAD_REQUEST,
                    },
                    refusal.reason(),
                ),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "temporarily unavailable"),
            };
            HttpResponse::build(status)
                .json(serde_json::json!({"code": "FAIL", "message": message}))
        }
    }
}
