//! `POST /weixin/pay/notify/url`: WeChat Pay's payment notify, and
//! `POST /weixin/pay/refund/notify`: its refund notify. The body's size is bounded here
//! (64 KiB, refused before parsing); the checks and the durable record are the checkout's
//! ([`Checkout::receive_notify`](crate::checkout::Checkout::receive_notify),
//! [`Checkout::receive_refund_notify`](crate::checkout::Checkout::receive_refund_notify)).
//! The answer is WeChat's XML: SUCCESS once recorded (a duplicate too), FAIL with a reason
//! otherwise.

use actix_web::{web, HttpResponse};

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
