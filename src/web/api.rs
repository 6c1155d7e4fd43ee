//! The seed-compatible JSON routes. They answer the seed front end's `Result` shape:
//! `{"flag": bool, "code": 20000 | 20001, "message": str, "data": …}`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};

use super::pay::{self, Prepared};
use super::{AppState, WebError};
use crate::domain::OrderStatus;
use crate::store::{Order, PaymentSource};
use crate::wxpay::TradeState;

pub const OK: i32 = 20000;
pub const ERROR: i32 = 20001;

#[derive(Debug, Serialize)]
pub struct ResultBody<T: Serialize> {
    pub flag: bool,
    pub code: i32,
    pub message: String,
    pub data: Option<T>,
}

fn ok<T: Serialize>(data: T) -> HttpResponse {
    HttpResponse::Ok().json(ResultBody {
        flag: true,
        code: OK,
        message: "OK".into(),
        data: Some(data),
    })
}

fn fail(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(ResultBody::<()> {
        flag: false,
        code: ERROR,
        message: message.into(),
        data: None,
    })
}

fn fail_from(e: WebError) -> HttpResponse {
    let status = e.status_code();
    if status.is_server_error() {
        tracing::error!(error = %e, "JSON request failed");
    }
    let (headline, detail) = e.explain();
    fail(status, format!("{headline}: {detail}"))
}

#[derive(Debug, Deserialize)]
pub struct CreateNativeQuery {
    out_trade_no: Option<String>,
    /// The seed front end sends it; it must agree with the stored amount, which is the one used.
    total_fee: Option<String>,
}

#[derive(Debug, Serialize)]
struct NativeData {
    code_url: String,
    out_trade_no: String,
    total_fee: i64,
}

/// `GET /weixin/pay/create/native`: the order's code_url (placing the unifiedorder the first
/// time).
#[tracing::instrument(skip_all, fields(out_trade_no = query.out_trade_no.as_deref().unwrap_or_default()))]
pub async fn create_native(
    state: web::Data<AppState>,
    query: web::Query<CreateNativeQuery>,
) -> HttpResponse {
    match create_native_inner(&state, query.into_inner()).await {
        Ok(data) => ok(data),
        Err(response) => response,
    }
}

async fn create_native_inner(
    state: &AppState,
    query: CreateNativeQuery,
) -> Result<NativeData, HttpResponse> {
    let no = query.out_trade_no.as_deref().unwrap_or_default();
    let no = pay::parse_no(no).map_err(fail_from)?;
    let order = pay::load(state, &no).await.map_err(fail_from)?;
    if let Some(claimed) = query.total_fee.as_deref() {
        if claimed.trim().parse::<i64>().ok() != Some(order.total_fee.0) {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "total_fee does not match the order's amount",
            ));
        }
    }
    match pay::ensure_prepay(state, order).await.map_err(fail_from)? {
        Prepared::Ready(order) => {
            let prepay = order.prepay.expect("a ready order has a prepay");
            Ok(NativeData {
                code_url: prepay.code_url,
                out_trade_no: order.out_trade_no.to_string(),
                total_fee: order.total_fee.0,
            })
        }
        Prepared::Settled(order) | Prepared::Over(order) => Err(fail(
            StatusCode::CONFLICT,
            format!("the order is {}", trade_state(&order)),
        )),
    }
}

#[derive(Debug, Deserialize)]
pub struct StatusQuery {
    out_trade_no: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct StatusData {
    pub out_trade_no: String,
    pub trade_state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_end: Option<String>,
    pub total_fee: i64,
}

/// The order's state in WeChat's words.
fn trade_state(order: &Order) -> TradeState {
    match order.status {
        OrderStatus::Pending => TradeState::NotPay,
        OrderStatus::Paid => TradeState::Success,
        OrderStatus::Closed => TradeState::Closed,
        OrderStatus::Failed => TradeState::PayError,
    }
}

/// `GET /weixin/pay/status/query`: the shop's own record. While it is unpaid and has a prepay,
/// WeChat is asked — at most once every few seconds per order, one query shared by concurrent
/// polls — and a payment it reports is confirmed through the payments channel.
#[tracing::instrument(skip_all, fields(out_trade_no = query.out_trade_no.as_deref().unwrap_or_default()))]
pub async fn status_query(
    state: web::Data<AppState>,
    query: web::Query<StatusQuery>,
) -> HttpResponse {
    let no = query.out_trade_no.as_deref().unwrap_or_default();
    let result = async {
        let no = pay::parse_no(no)?;
        let order = pay::load(&state, &no).await?;
        refresh(&state, order).await
    }
    .await;
    match result {
        Ok(order) => ok(StatusData {
            out_trade_no: order.out_trade_no.to_string(),
            trade_state: trade_state(&order).to_string(),
            transaction_id: order.transaction_id.clone(),
            time_end: order.pay_time.map(crate::wxpay::time::format_beijing),
            total_fee: order.total_fee.0,
        }),
        Err(e) => fail_from(e),
    }
}

/// Asks WeChat about a pending order with a prepay (throttled), confirming a reported payment.
async fn refresh(state: &AppState, order: Order) -> Result<Order, WebError> {
    if order.status != OrderStatus::Pending || order.prepay.is_none() {
        return Ok(order);
    }
    let wechat = state.wechat.clone();
    let key = order.out_trade_no.to_string();
    let no = key.clone();
    let answer = state
        .queries
        .run(&key, || async move {
            match wechat.order_query(&no).await {
                Ok(answer) => Some(answer),
                Err(e) => {
                    tracing::warn!(out_trade_no = %no, error = %e, "order query failed");
                    None
                }
            }
        })
        .await
        .flatten();
    match answer {
        Some(answer) => pay::apply_query(state, order, &answer, PaymentSource::Query).await,
        None => Ok(order),
    }
}
