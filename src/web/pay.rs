//! The pay page (QR code, countdown, polling) and the result pages.

use actix_web::http::header::LOCATION;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::Utc;

use super::phone::Device;
use super::shop::render;
use super::{no_store, AppState, Chrome, WebError};
use crate::checkout::{loggable, receipt_token_matches, trade_state, Cancelled, Order, PayStep};
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
    /// How this browser pays: `desktop` (the QR code), `h5` (a button to WeChat), `jsapi` (the
    /// WeChat button inside WeChat) or `none` (a phone that can do neither: instructions).
    way: &'static str,
    /// JSAPI: `getBrandWCPayRequest`'s parameters, as JSON.
    jsapi_params: Option<String>,
    /// Back from WeChat's H5 page (paid or not): the page asks and checks.
    returned: bool,
    /// This page's address, for the *copy link* button.
    page_url: String,
    /// Sandbox mode inside WeChat: the sandbox's `WeixinJSBridge` stand-in.
    bridge_src: Option<String>,
    chrome: Chrome,
}

#[derive(serde::Deserialize)]
pub struct PayQuery {
    returned: Option<String>,
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
pub(super) fn result_location(order: &Order) -> String {
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
    query: web::Query<PayQuery>,
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
    let device = Device::of(&req);
    let checkout = &state.checkout;
    let mut jsapi_params = None;
    let way = match device {
        Device::Desktop => "desktop",
        Device::Phone if checkout.h5_enabled() => "h5",
        Device::WeChat if checkout.jsapi_enabled() => match checkout.jsapi_button(&order).await? {
            Some(params) => {
                jsapi_params =
                    Some(serde_json::to_string(&params).map_err(|_| WebError::Undrawable)?);
                "jsapi"
            }
            // First the openid: the official account's OAuth, then back here.
            None => return Ok(see_other(format!("/pay/{}/wechat", order.out_trade_no))),
        },
        Device::Phone | Device::WeChat => "none",
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
        way,
        bridge_src: match (way, &state.sandbox_base) {
            ("jsapi", Some(base)) => Some(format!(
                "{}/sandbox/jsbridge.js",
                base.as_str().trim_end_matches('/')
            )),
            _ => None,
        },
        jsapi_params,
        returned: query.returned.as_deref() == Some("h5"),
        page_url: format!(
            "{}/pay/{}",
            checkout
                .terms()
                .phones
                .public_base_url
                .as_str()
                .trim_end_matches('/'),
            order.out_trade_no
        ),
        chrome: state.chrome(&req),
    };
    let mut response = no_store(render(&page)?);
    // Inside WeChat in sandbox mode the sandbox's WeixinJSBridge stand-in is loaded from the
    // sandbox, and the page's requests to it allowed; nowhere else.
    if way == "jsapi" {
        if let Some(base) = &state.sandbox_base {
            let origin = base.origin().ascii_serialization();
            let csp = super::CONTENT_SECURITY_POLICY
                .replace("script-src 'self'", &format!("script-src 'self' {origin}"))
                .replace(
                    "connect-src 'self'",
                    &format!("connect-src 'self' {origin}"),
                );
            response.headers_mut().insert(
                actix_web::http::header::CONTENT_SECURITY_POLICY,
                actix_web::http::header::HeaderValue::from_str(&csp)
                    .map_err(|_| WebError::Undrawable)?,
            );
        }
    }
    Ok(response)
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
    /// In Chinese, then English (marked as such on the page).
    headline: (&'static str, &'static str),
    detail: (String, String),
    /// Its goods can be bought again (the order is over, unpaid).
    buy_again: bool,
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

/// The shopper's *Cancel order*: closed at once when WeChat never heard of it, else as soon
/// as WeChat allows; either way to the result page, which says which.
#[tracing::instrument(name = "cancel", skip_all, fields(out_trade_no = %loggable(&no)))]
pub async fn cancel(
    state: web::Data<AppState>,
    req: HttpRequest,
    no: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    if !state.same_origin(&req) {
        return Err(WebError::CrossOrigin);
    }
    let order = match state.checkout.cancel(&no).await? {
        Cancelled::Closed(order) | Cancelled::Finished(order) => order,
        Cancelled::Closing { order, .. } => order,
    };
    Ok(see_other(match order.status {
        OrderStatus::Paid => format!("/pay/{}/success", order.out_trade_no),
        _ => format!("/pay/{}/failed", order.out_trade_no),
    }))
}

/// *Buy the same again*, after an order ran out of time or was cancelled: its goods into the
/// cart (at today's prices, as the cart shows), then to the cart.
pub async fn buy_again(
    state: web::Data<AppState>,
    req: HttpRequest,
    no: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    if !state.same_origin(&req) {
        return Err(WebError::CrossOrigin);
    }
    let order = state.checkout.order(&no).await?;
    let items = state.checkout.items(&order).await?;
    let mut cart = super::cart_of(&req);
    for item in items.iter() {
        // A full cart keeps what fits; the cart page shows what is there.
        if cart.add(item.product_id, item.num).is_err() {
            break;
        }
    }
    let mut response = see_other("/cart".into());
    response
        .add_cookie(&state.cart_cookie(&cart))
        .map_err(|_| WebError::Cookie)?;
    Ok(response)
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
    let cancelled = order.cancel_requested_at.is_some();
    let late = match order.status {
        OrderStatus::Paid => return Ok(see_other(format!("/pay/{no}/success"))),
        OrderStatus::Pending if order.expires_at > Utc::now() && !cancelled => {
            return Ok(see_other(format!("/pay/{no}")))
        }
        OrderStatus::Pending | OrderStatus::Closed => state.checkout.late_payment(&order).await?,
    };
    let (headline, detail) = match &late {
        Some(late) if late.refunded => (
            ("订单已关闭，款项已退回", "Your payment was refunded"),
            (
                "我们在订单关闭后收到了您的付款，已全额退回。".to_owned(),
                "We received your payment after the order closed; it has been refunded in full."
                    .to_owned(),
            ),
        ),
        Some(_) => (
            ("订单已关闭，款项将退回", "Your payment will be refunded"),
            (
                "我们在订单关闭后收到了您的付款，将予以退款。".to_owned(),
                "We received your payment after the order closed; it will be refunded.".to_owned(),
            ),
        ),
        None if cancelled && order.status == OrderStatus::Pending => {
            let by =
                crate::console::beijing_display(order.created_at + crate::checkout::MIN_CLOSE_AGE);
            (
                ("正在取消订单", "Cancelling the order"),
                (
                    format!("微信支付允许时（{by} 前）订单即关闭，商品随即释放，您不会被扣款。"),
                    format!(
                        "The order closes at WeChat Pay as soon as WeChat allows (by {by}, UTC+8); \
                         the goods then go back on sale. You will not be charged."
                    ),
                ),
            )
        }
        None if cancelled => (
            ("订单已取消", "The order was cancelled"),
            (
                "您没有被扣款，商品已释放。".to_owned(),
                "You were not charged; the goods are back on sale.".to_owned(),
            ),
        ),
        None => (
            ("订单已超时关闭", "The order has expired"),
            (
                "支付时间已过，商品已释放，您没有被扣款。".to_owned(),
                "The time to pay is over and the goods were released. You were not charged."
                    .to_owned(),
            ),
        ),
    };
    let buy_again = late.is_none() && order.status == OrderStatus::Closed;
    let refund_of = late.map(|late| late.transaction_id);
    render(&FailedPage {
        out_trade_no: no.to_string(),
        headline,
        detail,
        buy_again,
        refund_of,
        chrome: state.chrome(&req),
    })
    .map(no_store)
}
