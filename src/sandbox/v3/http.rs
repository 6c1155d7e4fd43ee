//! The v3 routes: each request's `Authorization` checked first (nothing of it is trusted
//! before), the faults every call has, the call (`api.rs`), and the answer signed with WeChat
//! Pay's key — refusals too, `{"code","message"}` with WeChat's HTTP status.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::super::faults::{ApiFault, Faults};
use super::super::http::caller_base;
use super::super::Sandbox;
use super::api::{Refusal, Reply};
use crate::wxpay::v3::auth::{Authorization, Request, SignedHeaders};
use crate::wxpay::v3::notify::random_text;
use crate::wxpay::v3::types::ErrorAnswer;

/// The largest v3 request body taken; WeChat's are a few KiB.
const MAX_BODY: usize = 64 * 1024;

/// Which call a route is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Native,
    Query,
    Close,
    Refund,
    RefundQuery,
    TradeBill,
    BillFile,
}

/// The v3 paths, on the plain listener.
pub fn routes(cfg: &mut web::ServiceConfig) {
    let to = |call: Call| {
        move |sandbox: web::Data<Sandbox>, request: HttpRequest, body: web::Bytes| async move {
            serve(&sandbox, call, &request, &body).await
        }
    };
    cfg.service(
        web::scope("/v3")
            .app_data(web::PayloadConfig::new(MAX_BODY))
            .route("/pay/transactions/native", web::post().to(to(Call::Native)))
            .route(
                "/pay/transactions/out-trade-no/{no}",
                web::get().to(to(Call::Query)),
            )
            .route(
                "/pay/transactions/out-trade-no/{no}/close",
                web::post().to(to(Call::Close)),
            )
            .route("/refund/domestic/refunds", web::post().to(to(Call::Refund)))
            .route(
                "/refund/domestic/refunds/{no}",
                web::get().to(to(Call::RefundQuery)),
            )
            .route("/bill/tradebill", web::get().to(to(Call::TradeBill)))
            .route("/billdownload/file", web::get().to(to(Call::BillFile))),
    );
}

async fn serve(
    sandbox: &Arc<Sandbox>,
    call: Call,
    request: &HttpRequest,
    body: &[u8],
) -> HttpResponse {
    sandbox.counters.v3_calls.fetch_add(1, Ordering::Relaxed);
    let faults = sandbox.faults();
    if faults.latency_ms > 0 {
        tokio::time::sleep(faults.latency()).await;
    }
    let fault = faults.draw_api();
    if fault == ApiFault::Http5xx {
        return HttpResponse::ServiceUnavailable().body("503 Service Unavailable");
    }
    let body = match authenticate(sandbox, request, body) {
        Ok(body) => body,
        Err(refusal) => {
            sandbox
                .counters
                .v3_sign_errors
                .fetch_add(1, Ordering::Relaxed);
            return render(sandbox, Err(refusal));
        }
    };
    let no = request.match_info().get("no").unwrap_or_default();
    let query = request.query_string();
    let result =
        match fault {
            ApiFault::SystemError => Err(Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "SYSTEM_ERROR",
                "系统异常，请稍后重试",
            )),
            ApiFault::OrderNotExist if matches!(call, Call::Query | Call::Close) => Err(
                Refusal::new(StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在"),
            ),
            _ => match call {
                Call::Native => sandbox.v3_native(body),
                Call::Query => sandbox.v3_query(no, query),
                Call::Close => sandbox.v3_close(no, body),
                Call::Refund => sandbox.v3_refund(body),
                Call::RefundQuery => sandbox.v3_refund_query(no),
                Call::TradeBill => sandbox.v3_trade_bill(query, &caller_base(request)),
                Call::BillFile => sandbox.v3_bill_file(query),
            },
        };
    if fault == ApiFault::Timeout {
        // The call took effect; its answer is lost in a connection that never completes.
        tokio::select! {
            _ = sandbox.shutdown.cancelled() => {}
            _ = tokio::time::sleep(Faults::TIMEOUT_HOLD) => {}
        }
    }
    render(sandbox, result)
}

/// WeChat's check of a request's `Authorization`: the scheme, the merchant, the serial number of
/// its certificate, a timestamp within 5 minutes of the sandbox's clock, and the signature over
/// the method, the path and query as sent, the timestamp, the nonce and the body. The body,
/// checked, as text.
fn authenticate<'b>(
    sandbox: &Sandbox,
    request: &HttpRequest,
    body: &'b [u8],
) -> Result<&'b str, Refusal> {
    let refuse = |why: &str| {
        tracing::debug!(why, "sandbox v3 request refused: SIGN_ERROR");
        Refusal::new(StatusCode::UNAUTHORIZED, "SIGN_ERROR", "签名错误")
    };
    let header = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| refuse("no Authorization"))?;
    let authorization = Authorization::parse(header).map_err(|e| refuse(&e.to_string()))?;
    let keys = sandbox.v3_keys();
    if authorization.mchid != sandbox.config.merchant.mch_id {
        return Err(refuse("another mchid"));
    }
    if authorization.serial_no != keys.serial_no() {
        return Err(refuse("another certificate serial"));
    }
    let text = std::str::from_utf8(body).map_err(|_| refuse("body not UTF-8"))?;
    let path_and_query = request.uri().path_and_query().map_or("/", |p| p.as_str());
    authorization
        .verify(
            keys.merchant_public(),
            Request {
                method: request.method().as_str(),
                path_and_query,
                body: text,
            },
            sandbox.now().timestamp(),
        )
        .map_err(|e| refuse(&e.to_string()))?;
    Ok(text)
}

/// The answer: signed JSON (or a signed empty `204`), a signed refusal, or the unsigned bill.
fn render(sandbox: &Sandbox, result: Result<Reply, Refusal>) -> HttpResponse {
    let (status, body) = match result {
        Ok(Reply::File(file)) => {
            let content_type = if file.gzip {
                "application/octet-stream"
            } else {
                "text/plain;charset=utf-8"
            };
            return HttpResponse::Ok()
                .content_type(content_type)
                .insert_header(("Request-ID", request_id()))
                .body(file.bytes.to_vec());
        }
        Ok(Reply::Json(body)) => (StatusCode::OK, body),
        Ok(Reply::NoContent) => (StatusCode::NO_CONTENT, Vec::new()),
        Err(refusal) => {
            let answer = ErrorAnswer {
                code: refusal.code.to_owned(),
                message: refusal.message,
                detail: None,
            };
            (
                refusal.status,
                serde_json::to_vec(&answer).expect("an error serialises"),
            )
        }
    };
    let keys = sandbox.v3_keys();
    let headers = SignedHeaders::sign(
        keys.pay_signer(),
        keys.pay_key_id(),
        &body,
        sandbox.v3_timestamp(),
        &random_text(32),
    );
    let mut response = HttpResponse::build(status);
    response.insert_header(("Request-ID", request_id()));
    for (name, value) in headers.pairs() {
        response.insert_header((name, value));
    }
    if body.is_empty() {
        response.finish()
    } else {
        response.content_type("application/json").body(body)
    }
}

/// A `Request-ID` as WeChat sends with every answer (what its support asks for).
fn request_id() -> String {
    hex::encode_upper(rand::random::<[u8; 20]>())
}
