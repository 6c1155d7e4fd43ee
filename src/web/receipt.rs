//! The shopper's receipt: `/orders/{out_trade_no}?t=…`, reachable only with the order's
//! unguessable token (a wrong or missing one is a 404, like a missing order).

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::pay::beijing_display;
use super::shop::render;
use super::{no_store, AppState, Chrome, WebError};
use crate::checkout::{loggable, Receipt};
use crate::domain::OrderStatus;

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    t: Option<String>,
}

struct ItemView {
    name: String,
    unit_price: String,
    num: i64,
    line_total: String,
}

#[derive(Template)]
#[template(path = "receipt.html")]
struct ReceiptPage {
    out_trade_no: String,
    placed_at: String,
    /// `pending`, `paid`, `shipped`, `closed` or `refund_due`: the status's CSS class.
    state: &'static str,
    status: &'static str,
    items: Vec<ItemView>,
    total: String,
    paid_at: Option<String>,
    transaction_id: Option<String>,
    coupon: Option<String>,
    shipment: Option<(String, String, String)>,
    refund_of: Option<String>,
    /// Each contact field given: its label and value.
    contact: Vec<(&'static str, String)>,
    chrome: Chrome,
}

fn label(field: &str) -> &'static str {
    match field {
        "name" => "收货人 Name",
        "phone" => "手机号码 Mobile",
        "address" => "收货地址 Address",
        "email" => "电子邮箱 Email",
        _ => "备注 Note",
    }
}

#[tracing::instrument(name = "receipt_page", skip_all, fields(out_trade_no = %loggable(&no)))]
pub async fn receipt_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    no: web::Path<String>,
    query: web::Query<TokenQuery>,
) -> Result<HttpResponse, WebError> {
    let token = query.t.as_deref().unwrap_or_default();
    let Receipt {
        order,
        items,
        contact,
        refund_of,
    } = state.checkout.receipt(&no, token).await?;
    let (state_class, status) = match (order.status, &order.shipment) {
        (OrderStatus::Paid, Some(_)) => ("shipped", "已发货 Shipped"),
        (OrderStatus::Paid, None) => ("paid", "已付款，待发货 Paid, to be shipped"),
        (OrderStatus::Pending, _) => ("pending", "待付款 Awaiting payment"),
        (OrderStatus::Closed, _) if order.refund_due => (
            "refund_due",
            "已关闭，款项将退回 Closed; your payment will be refunded",
        ),
        (OrderStatus::Closed, _) => ("closed", "已关闭，未扣款 Closed; you were not charged"),
    };
    let page = ReceiptPage {
        out_trade_no: order.out_trade_no.to_string(),
        placed_at: beijing_display(order.created_at),
        state: state_class,
        status,
        items: items
            .iter()
            .map(|i| ItemView {
                name: i.name.clone(),
                unit_price: i.unit_price.to_string(),
                num: i.num,
                line_total: crate::domain::Fen(i.unit_price.0.saturating_mul(i.num)).to_string(),
            })
            .collect(),
        total: order.total_fee.to_string(),
        paid_at: order.pay_time.map(beijing_display),
        transaction_id: order.transaction_id.clone(),
        coupon: order.coupon_fee.filter(|c| c.0 > 0).map(|c| c.to_string()),
        shipment: order.shipment.as_ref().map(|s| {
            (
                s.carrier.clone(),
                s.tracking_no.clone(),
                beijing_display(s.at),
            )
        }),
        refund_of,
        contact: contact
            .fields()
            .into_iter()
            .filter_map(|(field, value)| Some((label(field), value?.to_owned())))
            .collect(),
        chrome: state.chrome(&req),
    };
    Ok(no_store(render(&page)?))
}
