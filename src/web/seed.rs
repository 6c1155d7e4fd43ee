//! The seed-compatible JSON routes. They answer the seed front end's `Result` shape:
//! `{"flag": bool, "code": 20000 | 20001, "message": str, "data": …}`.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::error::json_failure;
use super::AppState;
use crate::checkout::{loggable, trade_state, NativeCode};

pub const OK: i32 = 20000;
pub const ERROR: i32 = 20001;

#[derive(Debug, Serialize)]
pub struct ResultBody<T: Serialize> {
    pub flag: bool,
    pub code: i32,
    pub message: String,
    pub data: Option<T>,
}

/// Order data: never stored by a cache.
fn ok<T: Serialize>(data: T) -> HttpResponse {
    super::no_store(HttpResponse::Ok().json(ResultBody {
        flag: true,
        code: OK,
        message: "OK".into(),
        data: Some(data),
    }))
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
#[tracing::instrument(skip_all, fields(out_trade_no = %loggable(query.out_trade_no.as_deref().unwrap_or_default())))]
pub async fn create_native(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    query: web::Query<CreateNativeQuery>,
) -> HttpResponse {
    let no = query.out_trade_no.as_deref().unwrap_or_default();
    match state
        .checkout
        .native_code(no, query.total_fee.as_deref(), &state.shopper(&req))
        .await
    {
        Ok(NativeCode {
            code_url,
            out_trade_no,
            total_fee,
        }) => ok(NativeData {
            code_url,
            out_trade_no: out_trade_no.to_string(),
            total_fee: total_fee.0,
        }),
        Err(e) => json_failure(&e),
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

/// `GET /weixin/pay/status/query`: the order's payment status (see
/// [`Checkout::status`](crate::checkout::Checkout::status)).
#[tracing::instrument(skip_all, fields(out_trade_no = %loggable(query.out_trade_no.as_deref().unwrap_or_default())))]
pub async fn status_query(
    state: web::Data<AppState>,
    query: web::Query<StatusQuery>,
) -> HttpResponse {
    let no = query.out_trade_no.as_deref().unwrap_or_default();
    match state.checkout.status(no).await {
        Ok(order) => ok(StatusData {
            out_trade_no: order.out_trade_no.to_string(),
            trade_state: trade_state(&order).to_string(),
            transaction_id: order.transaction_id.clone(),
            time_end: order.pay_time.map(crate::wxpay::time::format_beijing),
            total_fee: order.total_fee.0,
        }),
        Err(e) => json_failure(&e),
    }
}
