//! The pay page (QR code, countdown, polling) and the result pages.

use actix_web::http::header::LOCATION;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::Utc;

use super::shop::render;
use super::{no_store, AppState, Chrome, WebError};
use crate::checkout::{loggable, receipt_token_matches, trade_state, Order, PayStep};
use crate::domain::OrderStatus;
use crate::wxpay::TradeState;

#[derive(Template)]
#[template(path = "pay.html")]
struct PayPage {
    out_trade_no: String,
    amount: String,
    qr_svg: std::sync::Arc<str>,
    expires_at_ms: i64,
    time_left: String,
    items: Vec<ItemView>,
    sandbox_scan_url: Option<String>,
    /// The last attempt failed (PAYERROR): the shopper may scan again.
    payment_failed: bool,
    chrome: Chrome,
}

struct ItemView {
    name: String,
    unit_price: String,
    num: i64,
}

fn see_other(to: String) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((LOCATION, to))
        .finish()
}

/// Where a final order's shopper belongs.
fn result_location(order: &Order) -> String {
    match order.status {
        OrderStatus::Paid => format!("/pay/{}/success", order.out_trade_no),
        _ => format!("/pay/{}/failed", order.out_trade_no),
    }
}

#[tracing::instrument(name = "pay_page", skip_all, fields(out_trade_no = %loggable(&no)))]
pub async fn pay_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    no: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let (order, code_url, items, deadline) = match state.checkout.pay(&no).await? {
        PayStep::Ready {
            order,
            code_url,
            items,
            deadline,
        } => (order, code_url, items, deadline),
        PayStep::Finished(order) => return Ok(see_other(result_location(&order))),
    };
    let left = (deadline - Utc::now()).num_seconds().max(0);
    let sandbox_scan_url = state.sandbox_base.as_ref().map(|base| {
        let mut url = base.join("scan").expect("a fixed path joins");
        url.query_pairs_mut().append_pair("code_url", &code_url);
        url.to_string()
    });
    let page = PayPage {
        out_trade_no: order.out_trade_no.to_string(),
        amount: order.total_fee.to_string(),
        qr_svg: state.qr.svg(&code_url).ok_or(WebError::Undrawable)?,
        expires_at_ms: deadline.timestamp_millis(),
        time_left: format!("{:02}:{:02}", left / 60, left % 60),
        items: items
            .iter()
            .map(|i| ItemView {
                name: i.name.clone(),
                unit_price: i.unit_price.to_string(),
                num: i.num,
            })
            .collect(),
        sandbox_scan_url,
        payment_failed: trade_state(&order) == TradeState::PayError,
        chrome: state.chrome(&req),
    };
    Ok(no_store(render(&page)?))
}

#[derive(Template)]
#[template(path = "success.html")]
struct SuccessPage {
    out_trade_no: String,
    amount: String,
    transaction_id: Option<String>,
    pay_time: Option<String>,
    /// The receipt's link, for the browser that placed the order.
    receipt_url: Option<String>,
    chrome: Chrome,
}

#[derive(Template)]
#[template(path = "failed.html")]
struct FailedPage {
    out_trade_no: String,
    headline: &'static str,
    detail: &'static str,
    /// The payment that will be refunded, when one arrived too late.
    refund_of: Option<String>,
    chrome: Chrome,
}

#[tracing::instrument(name = "success_page", skip_all, fields(out_trade_no = %loggable(&no)))]
pub async fn success_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    no: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let order = state.checkout.order(&no).await?;
    if order.status != OrderStatus::Paid {
        return Ok(see_other(format!("/pay/{}", order.out_trade_no)));
    }
    // Shown only to the browser holding the order's receipt cookie: anyone may know an order
    // number, but the receipt carries the buyer's contact.
    let receipt_url = super::cookie_value(&req, super::RECEIPT_COOKIE)
        .filter(|token| receipt_token_matches(&order, token))
        .map(|token| format!("/orders/{}?t={token}", order.out_trade_no));
    render(&SuccessPage {
        receipt_url,
        out_trade_no: order.out_trade_no.to_string(),
        amount: order.total_fee.to_string(),
        transaction_id: order.transaction_id,
        pay_time: order.pay_time.map(beijing_display),
        chrome: state.chrome(&req),
    })
    .map(no_store)
}

/// A time as shoppers and the merchant read it: Beijing time, marked as such.
pub(super) fn beijing_display(t: chrono::DateTime<Utc>) -> String {
    format!("{} (UTC+8)", crate::console::beijing_display(t))
}

#[tracing::instrument(name = "failed_page", skip_all, fields(out_trade_no = %loggable(&no)))]
pub async fn failed_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    no: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let order = state.checkout.order(&no).await?;
    let no = &order.out_trade_no;
    let late = match order.status {
        OrderStatus::Paid => return Ok(see_other(format!("/pay/{no}/success"))),
        OrderStatus::Pending if order.expires_at > Utc::now() => {
            return Ok(see_other(format!("/pay/{no}")))
        }
        OrderStatus::Pending | OrderStatus::Closed => state.checkout.late_payment(&order).await?,
    };
    let (headline, detail) = match &late {
        Some(late) if late.refunded => (
            "订单已关闭，款项已退回 Your payment was refunded",
            "我们在订单关闭后收到了您的付款，已全额退回。We received your payment after the order closed; it has been refunded in full.",
        ),
        Some(_) => (
            "订单已关闭，款项将退回 Your payment will be refunded",
            "我们在订单关闭后收到了您的付款，将予以退款。We received your payment after the order closed; it will be refunded.",
        ),
        None => (
            "订单已超时关闭 The order has expired",
            "The time to pay is over and the goods were released. You were not charged.",
        ),
    };
    let refund_of = late.map(|late| late.transaction_id);
    render(&FailedPage {
        out_trade_no: no.to_string(),
        headline,
        detail,
        refund_of,
        chrome: state.chrome(&req),
    })
    .map(no_store)
}
