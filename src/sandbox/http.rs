//! The sandbox over HTTP: WeChat's API paths (with fault injection; `/secapi/pay/refund` only on
//! the TLS listener; `/pay/downloadbill` answering a text table, not XML), the shopper's phone
//! (the H5 page, the OAuth and the JS bridge have their own modules), and the test controls.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::http::header::ContentType;
use actix_web::{web, Either, HttpRequest, HttpResponse};
use askama::Template;
use serde::{Deserialize, Serialize};

use super::api::{msg, Answer, Reply};
use super::bill::BillAnswer;
use super::delivery::{self, PayKey, PayRefusal, Receipt, ShopperAction};
use super::faults::{ApiFault, Faults};
use super::state::{self, Refund};
use super::Sandbox;
use crate::domain::Fen;
use crate::wxpay::{nonce_str, sign, xml, Endpoint, ErrCode, TradeState};

/// WeChat's paths and the shopper's phone; with `controls`, the test controls too.
pub fn routes(cfg: &mut web::ServiceConfig, controls: bool) {
    cfg.app_data(web::PayloadConfig::new(1 << 20))
        .service(
            web::resource("/pay/{api}")
                .route(web::post().to(call))
                .route(web::route().to(require_post)),
        )
        .service(
            web::resource("/secapi/pay/refund")
                .route(web::post().to(secapi_refund))
                .route(web::route().to(require_post)),
        )
        .route("/", web::get().to(index))
        .route("/scan", web::get().to(scan))
        .route("/scan/cancel", web::get().to(cancel))
        .route("/sandbox/pay", web::post().to(pay))
        .configure(super::h5::routes)
        .configure(super::oauth::routes)
        .configure(super::jsbridge::routes)
        .configure(super::v3::routes);
    if controls {
        cfg.route("/sandbox/faults", web::get().to(get_faults))
            .route("/sandbox/faults", web::put().to(put_faults))
            .route("/sandbox/clock", web::post().to(advance_clock))
            .route("/sandbox/stats", web::get().to(stats))
            .route("/sandbox/refund", web::post().to(refund))
            .route("/sandbox/payments", web::get().to(payments))
            .route(
                "/sandbox/orders/{out_trade_no}/trade_state",
                web::post().to(set_trade_state),
            )
            .route("/sandbox/orders/{out_trade_no}", web::get().to(order_view));
    }
}

fn xml_response(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/xml; charset=utf-8")
        .body(body)
}

fn return_fail(message: &str) -> HttpResponse {
    xml_response(xml::encode_pairs([
        ("return_code", "FAIL"),
        ("return_msg", message),
    ]))
}

async fn require_post() -> HttpResponse {
    return_fail(msg::REQUIRE_POST_METHOD)
}

/// One `/pay/` API call.
async fn call(
    sandbox: web::Data<Sandbox>,
    name: web::Path<String>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let endpoint = match name.as_str() {
        "unifiedorder" => Endpoint::UnifiedOrder,
        "orderquery" => Endpoint::OrderQuery,
        "closeorder" => Endpoint::CloseOrder,
        "refundquery" => Endpoint::RefundQuery,
        "downloadbill" => Endpoint::DownloadBill,
        _ => return HttpResponse::NotFound().finish(),
    };
    serve(&sandbox, endpoint, &body, &caller_base(&request)).await
}

/// The sandbox as the caller reached it (`http://host:port/`): the request's `Host`, or the
/// listener's address when that does not form a URL.
pub(super) fn caller_base(request: &HttpRequest) -> url::Url {
    let scheme = if request.app_config().secure() {
        "https"
    } else {
        "http"
    };
    let info = request.connection_info();
    url::Url::parse(&format!("{scheme}://{}/", info.host()))
        .ok()
        .filter(|url| url.path() == "/" && url.query().is_none())
        .unwrap_or_else(|| {
            let addr = request.app_config().local_addr();
            url::Url::parse(&format!("{scheme}://{addr}/")).expect("a socket address forms a URL")
        })
}

/// `/secapi/pay/refund`: over TLS, where the handshake has already checked the merchant's
/// certificate; on the plain listener the call is refused and nothing is done.
async fn secapi_refund(
    sandbox: web::Data<Sandbox>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    if !request.app_config().secure() {
        sandbox.counters.refund.fetch_add(1, Ordering::Relaxed);
        return return_fail(msg::REQUIRE_CERTIFICATE);
    }
    let base = caller_base(&request);
    serve(&sandbox, Endpoint::Refund, &body, &base).await
}

/// One API call, its `Date` skewed by the `clock_skew_secs` fault.
async fn serve(
    sandbox: &Arc<Sandbox>,
    endpoint: Endpoint,
    body: &[u8],
    base: &url::Url,
) -> HttpResponse {
    let skew = sandbox.faults().clock_skew_secs;
    let mut response = serve_unskewed(sandbox, endpoint, body, base).await;
    if skew != 0 {
        let date = chrono::Utc::now() + chrono::Duration::seconds(skew);
        let text = date.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&text) {
            response
                .headers_mut()
                .insert(actix_web::http::header::DATE, value);
        }
    }
    response
}

/// One API call: faults (drawn here, for every call), authentication, the call, the answer.
async fn serve_unskewed(
    sandbox: &Arc<Sandbox>,
    endpoint: Endpoint,
    body: &[u8],
    base: &url::Url,
) -> HttpResponse {
    sandbox
        .counters
        .calls(endpoint)
        .fetch_add(1, Ordering::Relaxed);

    let faults = sandbox.faults();
    if faults.latency_ms > 0 {
        tokio::time::sleep(faults.latency()).await;
    }
    let fault = faults.draw_api();
    if fault == ApiFault::Http5xx {
        return HttpResponse::ServiceUnavailable().body("503 Service Unavailable");
    }
    let request = match sandbox.authenticate(body) {
        Ok(request) => request,
        Err(message) => return return_fail(message),
    };
    let reply = match fault {
        // The bill's refusals are unsigned, this one too.
        ApiFault::SystemError if endpoint == Endpoint::DownloadBill => {
            Err(ErrCode::SystemError.as_str().to_owned())
        }
        ApiFault::SystemError => Ok(Reply::Signed(Answer::fail(
            request.sign_type,
            ErrCode::SystemError,
            "系统超时",
        ))),
        ApiFault::OrderNotExist
            if matches!(
                endpoint,
                Endpoint::OrderQuery | Endpoint::CloseOrder | Endpoint::RefundQuery
            ) =>
        {
            Ok(Reply::Signed(Answer::fail(
                request.sign_type,
                ErrCode::OrderNotExist,
                "订单不存在",
            )))
        }
        _ => sandbox.execute(endpoint, &request, base),
    };
    if fault == ApiFault::Timeout {
        // The call took effect; its answer is lost in a connection that never completes.
        tokio::select! {
            _ = sandbox.shutdown.cancelled() => {}
            _ = tokio::time::sleep(Faults::TIMEOUT_HOLD) => {}
        }
    }
    match reply {
        Ok(Reply::Signed(answer)) => render(sandbox, answer),
        Ok(Reply::Bill(bill)) => render_bill(bill),
        Err(message) => return_fail(&message),
    }
}

fn render(sandbox: &Sandbox, answer: Answer) -> HttpResponse {
    let Answer {
        sign_type,
        mut fields,
    } = answer;
    let merchant = &sandbox.config.merchant;
    fields.insert("return_code".into(), "SUCCESS".into());
    fields.insert("return_msg".into(), "OK".into());
    fields.insert("appid".into(), merchant.appid.clone());
    fields.insert("mch_id".into(), merchant.mch_id.clone());
    fields.insert("nonce_str".into(), nonce_str());
    let signature = sign::sign(&fields, &merchant.key, sign_type);
    fields.insert("sign".into(), signature);
    xml_response(xml::encode(&fields))
}

/// The bill as WeChat sends it: the table as text, or GZIP bytes; a refusal as unsigned XML with
/// WeChat's `error_code`, every value in CDATA.
fn render_bill(bill: BillAnswer) -> HttpResponse {
    match bill {
        BillAnswer::Table { bytes, gzip: false } => HttpResponse::Ok()
            .content_type("text/plain;charset=utf-8")
            .body(bytes),
        BillAnswer::Table { bytes, gzip: true } => HttpResponse::Ok()
            .content_type("application/octet-stream")
            .body(bytes),
        BillAnswer::Refused(refusal) => xml_response(xml::encode_pairs_cdata([
            ("return_code", "FAIL"),
            ("return_msg", refusal.return_msg),
            ("error_code", refusal.error_code),
        ])),
    }
}

async fn index(sandbox: web::Data<Sandbox>) -> HttpResponse {
    let merchant = &sandbox.config.merchant;
    HttpResponse::Ok()
        .content_type(ContentType::plaintext())
        .body(format!(
            "wxpay-checkout WeChat Pay sandbox (API v2 and v3)\n\
         APIs: POST /pay/unifiedorder, /pay/orderquery, /pay/closeorder, /pay/refundquery, \
         /pay/downloadbill, /secapi/pay/refund (TLS with the merchant's client certificate)\n\
         v3: POST /v3/pay/transactions/native, GET /v3/pay/transactions/out-trade-no/{{no}}, \
         POST .../close, POST /v3/refund/domestic/refunds, GET .../refunds/{{no}}, \
         GET /v3/bill/tradebill\n\
         Shopper: GET /scan?code_url=..., POST /sandbox/pay (code_url or prepay_id, \
         outcome=success|fail), GET /sandbox/mweb (H5), GET /sandbox/jsbridge.js (JSAPI)\n\
         OAuth: GET /connect/oauth2/authorize, GET /sns/oauth2/access_token\n\
         Merchant: appid={} mch_id={}\n",
            merchant.appid, merchant.mch_id
        ))
}

#[derive(Debug, Deserialize)]
struct CodeUrl {
    code_url: String,
}

/// What the scan page shows of an order.
struct ScanOrder {
    out_trade_no: String,
    body: String,
    amount: String,
    trade_state: String,
    /// Why it cannot be paid, if it cannot.
    refusal: Option<String>,
}

#[derive(Template)]
#[template(path = "sandbox/scan.html")]
struct ScanPage {
    merchant_name: String,
    code_url: String,
    order: Option<ScanOrder>,
}

#[derive(Template)]
#[template(path = "sandbox/result.html")]
pub(super) struct ResultPage {
    pub ok: bool,
    pub headline: String,
    pub detail: String,
    pub receipt: Option<ReceiptView>,
}

impl ResultPage {
    /// A page that says something went wrong, and nothing else.
    pub fn refusal(headline: &str, detail: impl Into<String>) -> ResultPage {
        ResultPage {
            ok: false,
            headline: headline.into(),
            detail: detail.into(),
            receipt: None,
        }
    }
}

pub(super) struct ReceiptView {
    out_trade_no: String,
    amount: String,
    trade_state: String,
    transaction_id: Option<String>,
}

pub(super) fn render_page(
    page: &impl Template,
    status: actix_web::http::StatusCode,
) -> HttpResponse {
    match page.render() {
        Ok(body) => HttpResponse::build(status)
            .content_type(ContentType::html())
            .body(body),
        Err(e) => {
            tracing::error!(error = %e, "sandbox template failed");
            HttpResponse::InternalServerError().finish()
        }
    }
}

/// The shopper's phone after scanning: merchant, goods, amount, Pay / Cancel.
async fn scan(sandbox: web::Data<Sandbox>, query: web::Query<CodeUrl>) -> HttpResponse {
    let now = sandbox.now();
    let order = sandbox.book().by_code_url(&query.code_url).map(|o| {
        let refusal = delivery::unpayable(o, now);
        ScanOrder {
            out_trade_no: o.out_trade_no.clone(),
            body: o.body.clone(),
            amount: Fen(o.total_fee).yuan(),
            trade_state: o.state.to_string(),
            refusal: refusal.map(|r| r.to_string()),
        }
    });
    let status = if order.is_some() {
        actix_web::http::StatusCode::OK
    } else {
        actix_web::http::StatusCode::NOT_FOUND
    };
    let page = ScanPage {
        merchant_name: sandbox.config.merchant_name.clone(),
        code_url: query.into_inner().code_url,
        order,
    };
    render_page(&page, status)
}

async fn cancel() -> HttpResponse {
    let page = ResultPage {
        ok: false,
        headline: "已取消支付 Payment cancelled".into(),
        detail: "订单仍未支付，可以重新扫码。The order is still unpaid; scan again to pay.".into(),
        receipt: None,
    };
    render_page(&page, actix_web::http::StatusCode::OK)
}

/// A payment from the phone: the order by `code_url` (Native) or `prepay_id` (any).
#[derive(Debug, Deserialize)]
struct PayRequest {
    #[serde(default)]
    code_url: Option<String>,
    #[serde(default)]
    prepay_id: Option<String>,
    #[serde(default)]
    outcome: Option<String>,
    /// A coupon paying this much of the order (fen); the shopper pays the rest.
    #[serde(default, deserialize_with = "optional_fen")]
    coupon_fee: Option<i64>,
}

/// An optional amount in fen, from JSON (a number) or a form (text; empty means none).
fn optional_fen<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Fen {
        Number(i64),
        Text(String),
    }
    match Option::<Fen>::deserialize(d)? {
        None => Ok(None),
        Some(Fen::Number(n)) => Ok(Some(n)),
        Some(Fen::Text(t)) if t.trim().is_empty() => Ok(None),
        Some(Fen::Text(t)) => t
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom("coupon_fee must be a whole number of fen")),
    }
}

#[derive(Debug, Serialize)]
struct PayJson {
    ok: bool,
    out_trade_no: Option<String>,
    trade_state: Option<String>,
    transaction_id: Option<String>,
    total_fee: Option<i64>,
    error: Option<String>,
}

/// The shopper confirms on the phone. Form posts get a page, JSON posts get JSON.
async fn pay(
    sandbox: web::Data<Sandbox>,
    body: Either<web::Json<PayRequest>, web::Form<PayRequest>>,
) -> HttpResponse {
    let (request, wants_json) = match body {
        Either::Left(json) => (json.into_inner(), true),
        Either::Right(form) => (form.into_inner(), false),
    };
    let outcome = match request.outcome.as_deref() {
        None | Some("" | "success" | "pay") => ShopperAction::Pay,
        Some("fail" | "payerror") => ShopperAction::Fail,
        Some(_) => {
            return HttpResponse::BadRequest()
                .content_type(ContentType::plaintext())
                .body("outcome must be success or fail\n")
        }
    };
    let key = match (request.code_url.as_deref(), request.prepay_id.as_deref()) {
        (Some(code_url), None) => PayKey::CodeUrl(code_url),
        (None, Some(prepay_id)) => PayKey::PrepayId(prepay_id),
        _ => {
            return HttpResponse::BadRequest()
                .content_type(ContentType::plaintext())
                .body("give code_url or prepay_id, not both\n")
        }
    };
    let sandbox: Arc<Sandbox> = Arc::clone(&sandbox);
    let result = delivery::pay(&sandbox, key, outcome, request.coupon_fee);
    let status = match &result {
        Ok(_) => actix_web::http::StatusCode::OK,
        Err(PayRefusal::UnknownCode | PayRefusal::UnknownPrepay) => {
            actix_web::http::StatusCode::NOT_FOUND
        }
        Err(PayRefusal::BadCoupon) => actix_web::http::StatusCode::BAD_REQUEST,
        Err(_) => actix_web::http::StatusCode::CONFLICT,
    };
    if wants_json {
        let json = match result {
            Ok(r) => PayJson {
                ok: r.trade_state == TradeState::Success,
                out_trade_no: Some(r.out_trade_no),
                trade_state: Some(r.trade_state.to_string()),
                transaction_id: r.transaction_id,
                total_fee: Some(r.total_fee),
                error: None,
            },
            Err(e) => PayJson {
                ok: false,
                out_trade_no: None,
                trade_state: None,
                transaction_id: None,
                total_fee: None,
                error: Some(e.to_string()),
            },
        };
        return HttpResponse::build(status).json(json);
    }
    let page = match result {
        Ok(receipt) => receipt_page(receipt),
        Err(e) => ResultPage::refusal(CANNOT_PAY, e.to_string()),
    };
    render_page(&page, status)
}

/// The headline of a refused payment.
pub(super) const CANNOT_PAY: &str = "无法支付 Cannot pay";

pub(super) fn receipt_page(r: Receipt) -> ResultPage {
    let ok = r.trade_state == TradeState::Success;
    ResultPage {
        ok,
        headline: if ok {
            "支付成功 Payment successful".into()
        } else {
            "支付失败 Payment failed".into()
        },
        detail: if ok {
            "微信支付正在通知商户。WeChat Pay is notifying the merchant.".into()
        } else {
            "银行拒绝了这笔付款（PAYERROR）。The bank declined the payment.".into()
        },
        receipt: Some(ReceiptView {
            out_trade_no: r.out_trade_no,
            amount: Fen(r.total_fee).yuan(),
            trade_state: r.trade_state.to_string(),
            transaction_id: r.transaction_id,
        }),
    }
}

async fn get_faults(sandbox: web::Data<Sandbox>) -> HttpResponse {
    HttpResponse::Ok().json(sandbox.faults())
}

async fn put_faults(sandbox: web::Data<Sandbox>, faults: web::Json<Faults>) -> HttpResponse {
    let faults = faults.into_inner();
    if let Err(e) = faults.validate() {
        return HttpResponse::BadRequest().body(e.to_string());
    }
    *sandbox.faults.lock().expect("faults lock") = faults;
    HttpResponse::Ok().json(faults)
}

#[derive(Debug, Deserialize)]
struct ClockAdvance {
    advance_secs: i64,
}

/// Moves the sandbox's clock forward (never back), to reach expiries in tests.
async fn advance_clock(sandbox: web::Data<Sandbox>, body: web::Json<ClockAdvance>) -> HttpResponse {
    if body.advance_secs < 0 {
        return HttpResponse::BadRequest().body("the clock only moves forward");
    }
    let offset = sandbox
        .clock_offset_secs
        .fetch_add(body.advance_secs, Ordering::Relaxed)
        + body.advance_secs;
    HttpResponse::Ok().json(serde_json::json!({ "offset_secs": offset }))
}

async fn stats(sandbox: web::Data<Sandbox>) -> HttpResponse {
    let c = &sandbox.counters;
    HttpResponse::Ok().json(serde_json::json!({
        "unifiedorder": c.unifiedorder.load(Ordering::Relaxed),
        "orderquery": c.orderquery.load(Ordering::Relaxed),
        "closeorder": c.closeorder.load(Ordering::Relaxed),
        "refundquery": c.refundquery.load(Ordering::Relaxed),
        "refund": c.refund.load(Ordering::Relaxed),
        "downloadbill": c.downloadbill.load(Ordering::Relaxed),
        "notify_attempts": c.notify_attempts.load(Ordering::Relaxed),
        "refund_notify_attempts": c.refund_notify_attempts.load(Ordering::Relaxed),
        "probe_notifies_refused": c.probe_notifies_refused.load(Ordering::Relaxed),
        "probe_notifies_acknowledged": c.probe_notifies_acknowledged.load(Ordering::Relaxed),
        "v3_calls": c.v3_calls.load(Ordering::Relaxed),
        "v3_sign_errors": c.v3_sign_errors.load(Ordering::Relaxed),
        "orders": sandbox.book().len(),
        "mweb_tickets": sandbox.tickets().len(),
        "oauth_codes": sandbox.codes().len(),
    }))
}

#[derive(Debug, Deserialize)]
struct RefundRequest {
    out_trade_no: String,
}

/// The merchant refunds a paid order in WeChat's merchant platform, outside the shop: its
/// `trade_state` becomes `REFUND`. No refund notify follows (one made there has no request
/// `notify_url`).
async fn refund(sandbox: web::Data<Sandbox>, body: web::Json<RefundRequest>) -> HttpResponse {
    let now = sandbox.now();
    let mut book = sandbox.book();
    match book.get(&body.out_trade_no) {
        Some(order) if order.state == TradeState::Success => {
            // Refunded in full, at once: the refund query lists it.
            let n = order.refunds.len() + 1;
            let refund = Refund {
                entry: crate::wxpay::refund::RefundEntry {
                    out_refund_no: format!("MP{}{n:02}", order.out_trade_no),
                    refund_id: state::new_refund_id(now),
                    refund_fee: order.total_fee,
                    status: crate::wxpay::RefundStatus::Success,
                    success_time: Some(state::refund_success_time(now)),
                },
                notify_url: None,
                created_at: now,
                notify_attempts: 0,
                notify_acknowledged: false,
                v3: false,
            };
            let no = order.out_trade_no.clone();
            book.add_refund(&no, refund);
            HttpResponse::Ok().json(serde_json::json!({ "trade_state": "REFUND" }))
        }
        Some(order) => HttpResponse::Conflict().json(serde_json::json!({
            "error": format!("the order is {}, not SUCCESS", order.state)
        })),
        None => HttpResponse::NotFound().json(serde_json::json!({ "error": "no such order" })),
    }
}

#[derive(Debug, Deserialize)]
struct TradeStateRequest {
    trade_state: String,
}

/// Puts an unpaid order in any `trade_state` — one WeChat may add and a shop does not know yet
/// (not a WeChat API; for tests). Paid orders keep their payment.
async fn set_trade_state(
    sandbox: web::Data<Sandbox>,
    no: web::Path<String>,
    body: web::Json<TradeStateRequest>,
) -> HttpResponse {
    let state = TradeState::from(body.trade_state.as_str());
    if body.trade_state.is_empty() || body.trade_state.len() > 32 {
        return HttpResponse::BadRequest().body("trade_state is 1 to 32 characters");
    }
    let mut book = sandbox.book();
    match book.get_mut(&no) {
        Some(order) if order.payment.is_none() => {
            order.state = state;
            HttpResponse::Ok().json(serde_json::json!({ "trade_state": order.state.as_str() }))
        }
        Some(_) => HttpResponse::Conflict().json(serde_json::json!({ "error": "paid" })),
        None => HttpResponse::NotFound().json(serde_json::json!({ "error": "no such order" })),
    }
}

/// Every payment the sandbox took (not a WeChat API; for tests): what the merchant's books must
/// account for.
async fn payments(sandbox: web::Data<Sandbox>) -> HttpResponse {
    let book = sandbox.book();
    let paid: Vec<_> = book
        .all()
        .filter_map(|o| {
            let payment = o.payment.as_ref()?;
            Some(serde_json::json!({
                "out_trade_no": o.out_trade_no,
                "transaction_id": payment.transaction_id,
                "total_fee": o.total_fee,
                "trade_state": o.state.as_str(),
            }))
        })
        .collect();
    HttpResponse::Ok().json(paid)
}

/// What the sandbox holds about one order (not a WeChat API; for tests and debugging).
async fn order_view(sandbox: web::Data<Sandbox>, no: web::Path<String>) -> HttpResponse {
    let book = sandbox.book();
    let Some(o) = book.get(&no) else {
        return HttpResponse::NotFound().json(serde_json::json!({ "error": "no such order" }));
    };
    let param = |name: &str| o.params.get(name).cloned();
    HttpResponse::Ok().json(serde_json::json!({
        "out_trade_no": o.out_trade_no,
        "trade_type": o.trade_type(),
        "trade_state": o.state.as_str(),
        "total_fee": o.total_fee,
        "sign_type": o.sign_type.as_str(),
        "spbill_create_ip": param("spbill_create_ip"),
        "scene_info": param("scene_info"),
        "openid": o.jsapi_openid(),
        // Only a Native order's code_url was ever told to the merchant.
        "code_url": (o.trade_type() == "NATIVE").then_some(&o.code_url),
        "prepay_id": o.prepay_id,
        "transaction_id": o.payment.as_ref().map(|p| p.transaction_id.clone()),
        "time_end": o.payment.as_ref().map(|p| crate::wxpay::time::format_beijing(p.time_end)),
        "notify_attempts": o.notify_attempts,
        "notify_acknowledged": o.notify_acknowledged,
        "created_at": o.created_at.to_rfc3339(),
        "api": if o.v3.is_some() { "v3" } else { "v2" },
        "refunds": o.refunds.iter().map(|r| serde_json::json!({
            "out_refund_no": r.entry.out_refund_no,
            "refund_id": r.entry.refund_id,
            "refund_fee": r.entry.refund_fee,
            "refund_status": r.entry.status.as_str(),
            "success_time": r.entry.success_time,
            "notify_url": r.notify_url,
            "notify_attempts": r.notify_attempts,
            "notify_acknowledged": r.notify_acknowledged,
            "created_at": r.created_at.to_rfc3339(),
        })).collect::<Vec<_>>(),
    }))
}
