//! The shopper's receipt: `/orders/{out_trade_no}?t=…`, reachable only with the order's
//! unguessable token (a wrong or missing one is a 404, like a missing order).

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::pay::beijing_display;
use super::shop::render;
use super::{no_store, AppState, Chrome, WebError};
use crate::checkout::{loggable, Receipt};
use crate::checkout::{Refund, RefundState};
use crate::domain::OrderStatus;

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    t: Option<String>,
}

struct RefundView {
    amount: String,
    /// `refund-succeeded`, `refund-processing`, …: the state's CSS class.
    class: &'static str,
    state: &'static str,
    asked: String,
    settled: Option<String>,
}

fn refund_state(state: RefundState) -> &'static str {
    match state {
        RefundState::Requested | RefundState::Processing => "退款处理中 In progress",
        RefundState::Succeeded => "已退款 Refunded",
        RefundState::Closed => "未退款 Not refunded",
        RefundState::Change => "退款异常，商户处理中 The shop is sorting it out",
    }
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
    /// Whether the late payment went back already.
    late_refunded: bool,
    refunds: Vec<RefundView>,
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
        refunds,
    } = state.checkout.receipt(&no, token).await?;
    let live: Vec<&Refund> = refunds
        .iter()
        .filter(|r| r.state != RefundState::Closed)
        .collect();
    let all_back = !live.is_empty() && live.iter().all(|r| r.state == RefundState::Succeeded);
    let late_refunded = live
        .iter()
        .any(|r| r.late && r.state == RefundState::Succeeded);
    let (state_class, status) = match (order.status, &order.shipment) {
        (OrderStatus::Paid, _) if order.refunded_fee >= order.total_fee && all_back => {
            ("refunded", "已退款 Refunded")
        }
        (OrderStatus::Paid, _) if !live.is_empty() && all_back => {
            ("refunded", "部分退款 Partly refunded")
        }
        (OrderStatus::Paid, _) if !live.is_empty() => ("refunded", "退款处理中 Refund in progress"),
        (OrderStatus::Closed, _) if late_refunded => (
            "closed",
            "已关闭，款项已退回 Closed; your payment was refunded",
        ),
        (OrderStatus::Closed, _) if !live.is_empty() => (
            "refund_due",
            "已关闭，退款处理中 Closed; your refund is on its way",
        ),
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
        late_refunded,
        refunds: refunds
            .iter()
            .map(|r| RefundView {
                amount: r.refund_fee.to_string(),
                class: r.state.as_str(),
                state: refund_state(r.state),
                asked: beijing_display(r.created_at),
                settled: r.settled_at.map(beijing_display),
            })
            .collect(),
        contact: contact
            .fields()
            .into_iter()
            .filter_map(|(field, value)| Some((label(field), value?.to_owned())))
            .collect(),
        chrome: state.chrome(&req),
    };
    Ok(no_store(render(&page)?))
}
