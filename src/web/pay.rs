//! The pay page (QR code, countdown, polling) and the result pages; and getting a prepay from
//! WeChat the first time an order is shown.

use std::time::Duration;

use actix_web::http::header::{CacheControl, CacheDirective, LOCATION};
use actix_web::{web, HttpResponse};
use askama::Template;
use chrono::Utc;

use super::shop::html;
use super::{AppState, WebError};
use crate::domain::{OrderStatus, OutTradeNo};
use crate::payments;
use crate::store::{Order, PaymentSource, Prepay};
use crate::wxpay::time::format_beijing;
use crate::wxpay::types::UnifiedOrderRequest;
use crate::wxpay::{ErrCode, WxError};

/// A stored code_url is reused only while it has at least this much life left.
const PREPAY_MARGIN: chrono::Duration = chrono::Duration::seconds(10);
/// How long a page waits for the consumer to apply a payment it just confirmed.
pub const APPLY_WAIT: Duration = Duration::from_secs(2);

/// Reads the order number from the path; anything that is not one is simply not found.
pub fn parse_no(text: &str) -> Result<OutTradeNo, WebError> {
    OutTradeNo::parse(text).map_err(|_| WebError::NotFound("order"))
}

pub async fn load(state: &AppState, no: &OutTradeNo) -> Result<Order, WebError> {
    state
        .store
        .order(no)
        .await?
        .ok_or(WebError::NotFound("order"))
}

/// Where a pending order stands once it has a prepay.
pub enum Prepared {
    /// Ready to pay: the order with a valid prepay.
    Ready(Order),
    /// It turned out to be paid (or was paid meanwhile): the order as it now stands.
    Settled(Order),
    /// Its time is up, or WeChat has closed it.
    Over(Order),
}

/// Makes sure a pending order has a valid prepay, calling unifiedorder the first time only.
/// Two first visits at once both send the same parameters, which WeChat treats as a re-entry
/// and answers with the same prepay.
#[tracing::instrument(skip_all, fields(out_trade_no = %order.out_trade_no))]
pub async fn ensure_prepay(state: &AppState, order: Order) -> Result<Prepared, WebError> {
    if order.status != OrderStatus::Pending {
        return Ok(Prepared::Settled(order));
    }
    let now = Utc::now();
    if order.expires_at <= now {
        return Ok(Prepared::Over(order));
    }
    if order
        .prepay
        .as_ref()
        .is_some_and(|p| p.code_url_expires_at > now + PREPAY_MARGIN)
    {
        return Ok(Prepared::Ready(order));
    }
    let checkout = &state.checkout;
    let request = UnifiedOrderRequest {
        body: order.body.clone(),
        out_trade_no: order.out_trade_no.to_string(),
        total_fee: order.total_fee.0,
        spbill_create_ip: checkout.spbill_create_ip.clone(),
        notify_url: checkout.notify_url.to_string(),
        product_id: order.product_id.clone(),
        attach: None,
        // Fixed by the order, so every re-entry repeats them exactly.
        time_start: Some(format_beijing(order.created_at)),
        time_expire: Some(format_beijing(order.expires_at)),
    };
    let retry = Some(format!("/pay/{}", order.out_trade_no));
    match state.wechat.unified_order(&request).await {
        Ok(answer) => {
            let prepay = Prepay {
                prepay_id: answer.prepay_id,
                code_url: answer.code_url,
                code_url_expires_at: (now + crate::wxpay::PREPAY_VALIDITY).min(order.expires_at),
                sign_type: state.wechat.sign_type(),
            };
            state
                .store
                .record_prepay(&order.out_trade_no, &prepay)
                .await?;
            // Read back: a payment or a close may have landed meanwhile.
            let order = load(state, &order.out_trade_no).await?;
            Ok(match order.status {
                OrderStatus::Pending => Prepared::Ready(order),
                _ => Prepared::Settled(order),
            })
        }
        Err(e) if e.err_code() == Some(&ErrCode::OrderPaid) => {
            tracing::info!(out_trade_no = %order.out_trade_no, "unifiedorder says paid; confirming");
            let order = confirm_by_query(state, order, PaymentSource::Query).await?;
            if order.status == OrderStatus::Pending {
                // WeChat says paid, but no payment for this order's amount could be confirmed
                // (yet): never show it as paid, and never loop back to unifiedorder.
                return Err(WebError::WechatUnavailable(
                    "paid at WeChat, not confirmed here".into(),
                    Some(format!("/pay/{}", order.out_trade_no)),
                ));
            }
            Ok(Prepared::Settled(order))
        }
        Err(e) if e.err_code() == Some(&ErrCode::OrderClosed) => Ok(Prepared::Over(order)),
        Err(e) if e.is_transient() => {
            tracing::warn!(out_trade_no = %order.out_trade_no, error = %e, "unifiedorder failed");
            Err(WebError::WechatUnavailable(e.to_string(), retry))
        }
        Err(e) => {
            tracing::error!(out_trade_no = %order.out_trade_no, error = %e, "unifiedorder refused");
            Err(refused(e))
        }
    }
}

fn refused(e: WxError) -> WebError {
    WebError::WechatRefused(e.to_string())
}

/// Asks WeChat about an order and, if it was paid, confirms the payment through the payments
/// channel and waits briefly for it to be applied. Returns the order as it then stands.
pub async fn confirm_by_query(
    state: &AppState,
    order: Order,
    source: PaymentSource,
) -> Result<Order, WebError> {
    let query = match state.wechat.order_query(order.out_trade_no.as_str()).await {
        Ok(query) => query,
        Err(e) if e.is_transient() => {
            return Err(WebError::WechatUnavailable(
                e.to_string(),
                Some(format!("/pay/{}", order.out_trade_no)),
            ))
        }
        Err(e) => return Err(refused(e)),
    };
    apply_query(state, order, &query, source).await
}

/// Confirms the payment a query reports (if any) and returns the order as it then stands.
pub async fn apply_query(
    state: &AppState,
    order: Order,
    query: &crate::wxpay::types::OrderQueryResponse,
    source: PaymentSource,
) -> Result<Order, WebError> {
    let Some(event) = payments::event_from_query(&order, query, source) else {
        return Ok(order);
    };
    let mut applied = state.payments.subscribe();
    let recorded = state.payments.confirm(&event).await?;
    if !recorded.applied {
        payments::wait_applied(&mut applied, &order.out_trade_no, APPLY_WAIT).await;
    }
    load(state, &order.out_trade_no).await
}

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
    sandbox: bool,
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

#[tracing::instrument(name = "pay_page", skip_all, fields(out_trade_no = %no.as_str()))]
pub async fn pay_page(
    state: web::Data<AppState>,
    no: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let no = parse_no(&no)?;
    let order = load(&state, &no).await?;
    let order = match ensure_prepay(&state, order).await? {
        Prepared::Ready(order) => order,
        Prepared::Settled(order) | Prepared::Over(order) => {
            return Ok(see_other(result_location(&order)))
        }
    };
    let Some(prepay) = order.prepay.as_ref() else {
        return Err(WebError::WechatUnavailable(
            "no prepay".into(),
            Some(format!("/pay/{no}")),
        ));
    };
    let items = state.store.order_items(&no).await?;
    let close_by = order.created_at
        + chrono::Duration::from_std(state.checkout.unpaid_close_after)
            .unwrap_or(chrono::Duration::MAX);
    let deadline = order.expires_at.min(close_by);
    let left = (deadline - Utc::now()).num_seconds().max(0);
    let sandbox_scan_url = state.checkout.sandbox_base.as_ref().map(|base| {
        let mut url = base.join("scan").expect("a fixed path joins");
        url.query_pairs_mut()
            .append_pair("code_url", &prepay.code_url);
        url.to_string()
    });
    let page = PayPage {
        out_trade_no: no.to_string(),
        amount: order.total_fee.to_string(),
        qr_svg: state
            .qr
            .svg(&prepay.code_url)
            .ok_or_else(|| WebError::WechatRefused("a code_url too long for a QR code".into()))?,
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
        sandbox: state.checkout.sandbox_base.is_some(),
    };
    let mut response = html(page.render()?);
    response.headers_mut().insert(
        actix_web::http::header::CACHE_CONTROL,
        CacheControl(vec![CacheDirective::NoStore])
            .to_string()
            .parse()
            .expect("a valid header value"),
    );
    Ok(response)
}

#[derive(Template)]
#[template(path = "success.html")]
struct SuccessPage {
    out_trade_no: String,
    amount: String,
    transaction_id: Option<String>,
    pay_time: Option<String>,
    sandbox: bool,
}

#[derive(Template)]
#[template(path = "failed.html")]
struct FailedPage {
    out_trade_no: String,
    headline: &'static str,
    detail: &'static str,
    sandbox: bool,
}

#[tracing::instrument(name = "success_page", skip_all, fields(out_trade_no = %no.as_str()))]
pub async fn success_page(
    state: web::Data<AppState>,
    no: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let no = parse_no(&no)?;
    let order = load(&state, &no).await?;
    if order.status != OrderStatus::Paid {
        return Ok(see_other(format!("/pay/{no}")));
    }
    let page = SuccessPage {
        out_trade_no: no.to_string(),
        amount: order.total_fee.to_string(),
        transaction_id: order.transaction_id,
        pay_time: order
            .pay_time
            .map(|t| format!("{} (UTC+8)", beijing_display(t))),
        sandbox: state.checkout.sandbox_base.is_some(),
    };
    Ok(html(page.render()?))
}

fn beijing_display(t: chrono::DateTime<Utc>) -> String {
    let beijing = chrono::FixedOffset::east_opt(8 * 3600).expect("valid offset");
    t.with_timezone(&beijing)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

#[tracing::instrument(name = "failed_page", skip_all, fields(out_trade_no = %no.as_str()))]
pub async fn failed_page(
    state: web::Data<AppState>,
    no: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let no = parse_no(&no)?;
    let order = load(&state, &no).await?;
    let (headline, detail) = match order.status {
        OrderStatus::Paid => return Ok(see_other(format!("/pay/{no}/success"))),
        OrderStatus::Pending if order.expires_at > Utc::now() => {
            return Ok(see_other(format!("/pay/{no}")))
        }
        OrderStatus::Pending | OrderStatus::Closed => (
            "订单已超时关闭 The order has expired",
            "The time to pay is over and the goods were released. You were not charged.",
        ),
        OrderStatus::Failed => (
            "支付失败 The payment failed",
            "WeChat Pay reported that the payment failed. You were not charged.",
        ),
    };
    let page = FailedPage {
        out_trade_no: no.to_string(),
        headline,
        detail,
        sandbox: state.checkout.sandbox_base.is_some(),
    };
    Ok(html(page.render()?))
}
