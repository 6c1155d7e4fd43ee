//! The WeChat browser's `WeixinJSBridge`, which no other browser has, stood in for by a script
//! the shop's page loads from the sandbox (`GET /sandbox/jsbridge.js`, the code in
//! `jsbridge.js`). Its `getBrandWCPayRequest` sends the page's signed parameters here: `check`
//! verifies them as WeChat's client does (appId, signType, paySign under the merchant key, a
//! timeStamp within a day, a payable JSAPI prepay) and tells the sheet what to show; `pay`
//! verifies them again and pays through [`delivery::pay`], the scan page's path.
//!
//! The shop's page is on another origin: the script posts `text/plain` JSON (a simple request,
//! no preflight) and these answers carry `Access-Control-Allow-Origin: *`. They use no cookie,
//! so a wildcard gives a page nothing it could not get by asking itself.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::delivery::{self, PayKey, ShopperAction};
use super::Sandbox;
use crate::domain::Fen;
use crate::wxpay::jsapi::BrandWcPayRequest;

/// The bridge's code: `window.WeixinJSBridge`, then the `WeixinJSBridgeReady` event.
const SCRIPT: &str = include_str!("jsbridge.js");

/// The longest parameters accepted (six short fields).
const MAX_BODY: usize = 4 * 1024;

/// How far `timeStamp` may lie from the sandbox's clock.
const TIMESTAMP_SLACK_SECS: i64 = 24 * 3600;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/sandbox/jsbridge.js", web::get().to(script))
        .service(
            web::resource("/sandbox/jsapi/check")
                .route(web::post().to(check))
                .route(web::method(actix_web::http::Method::OPTIONS).to(preflight)),
        )
        .service(
            web::resource("/sandbox/jsapi/pay")
                .route(web::post().to(pay))
                .route(web::method(actix_web::http::Method::OPTIONS).to(preflight)),
        );
}

async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(SCRIPT)
}

/// For a page that sends `application/json` after all.
async fn preflight() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "POST"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, "content-type"))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
        .finish()
}

/// What the pay sheet shows, or why there is none.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Answer {
    Sheet {
        ok: bool,
        merchant: String,
        body: String,
        total_fee: i64,
        /// `total_fee` in yuan, `12.50`.
        amount: String,
        out_trade_no: String,
    },
    Paid {
        ok: bool,
        out_trade_no: String,
        transaction_id: Option<String>,
    },
    Refused {
        ok: bool,
        err_desc: String,
    },
}

fn answer(status: actix_web::http::StatusCode, answer: &Answer) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(answer)
}

fn refused(err_desc: impl Into<String>) -> HttpResponse {
    answer(
        actix_web::http::StatusCode::BAD_REQUEST,
        &Answer::Refused {
            ok: false,
            err_desc: err_desc.into(),
        },
    )
}

/// The order the parameters pay, checked; or why the bridge refuses them.
struct Payable {
    prepay_id: String,
    out_trade_no: String,
    body: String,
    total_fee: i64,
}

impl Sandbox {
    /// WeChat's client-side checks of `getBrandWCPayRequest`'s parameters, in its order: their
    /// shape, the appId, the sign type and signature, the time, then the prepay.
    fn brand_wcpay_request(&self, body: &[u8]) -> Result<Payable, String> {
        if body.len() > MAX_BODY {
            return Err("参数过长 (the parameters are too long)".into());
        }
        let request: BrandWcPayRequest = serde_json::from_slice(body).map_err(|e| {
            format!("缺少参数或参数格式错误 (appId, timeStamp, nonceStr, package, signType, paySign as strings: {e})")
        })?;
        if request.app_id != self.config.merchant.appid {
            return Err("appId错误 (not the merchant's appid)".into());
        }
        if request.sign_type.parse::<crate::wxpay::SignType>().is_err() {
            return Err("signType错误 (MD5 or HMAC-SHA256)".into());
        }
        if !request.verify(&self.config.merchant.key) {
            return Err("支付验证签名失败 (paySign does not match)".into());
        }
        let now = self.now().timestamp();
        let on_time = request
            .time_stamp
            .parse::<i64>()
            .is_ok_and(|t| (t - now).abs() <= TIMESTAMP_SLACK_SECS);
        if !on_time {
            return Err("timeStamp错误 (Unix seconds within a day of now)".into());
        }
        let Some(prepay_id) = request.prepay_id() else {
            return Err("package错误 (prepay_id=…)".into());
        };
        let book = self.book();
        let Some(order) = book.by_prepay_id(prepay_id) else {
            return Err("prepay_id无效 (unknown prepay_id)".into());
        };
        if order.trade_type() != "JSAPI" {
            return Err(format!(
                "prepay_id不是JSAPI支付的 (a {} order)",
                order.trade_type()
            ));
        }
        if let Some(why) = delivery::unpayable(order, self.now()) {
            return Err(why.to_string());
        }
        Ok(Payable {
            prepay_id: prepay_id.to_owned(),
            out_trade_no: order.out_trade_no.clone(),
            body: order.body.clone(),
            total_fee: order.total_fee,
        })
    }
}

/// `POST /sandbox/jsapi/check`: what the sheet shows.
async fn check(sandbox: web::Data<Sandbox>, body: web::Bytes) -> HttpResponse {
    match sandbox.brand_wcpay_request(&body) {
        Ok(order) => answer(
            actix_web::http::StatusCode::OK,
            &Answer::Sheet {
                ok: true,
                merchant: sandbox.config.merchant_name.clone(),
                body: order.body,
                total_fee: order.total_fee,
                amount: Fen(order.total_fee).yuan(),
                out_trade_no: order.out_trade_no,
            },
        ),
        Err(why) => refused(why),
    }
}

/// `POST /sandbox/jsapi/pay`: the shopper pressed Pay on the sheet.
async fn pay(sandbox: web::Data<Sandbox>, body: web::Bytes) -> HttpResponse {
    let order = match sandbox.brand_wcpay_request(&body) {
        Ok(order) => order,
        Err(why) => return refused(why),
    };
    let sandbox = sandbox.into_inner();
    match delivery::pay(
        &sandbox,
        PayKey::PrepayId(&order.prepay_id),
        ShopperAction::Pay,
        None,
    ) {
        Ok(receipt) => answer(
            actix_web::http::StatusCode::OK,
            &Answer::Paid {
                ok: true,
                out_trade_no: receipt.out_trade_no,
                transaction_id: receipt.transaction_id,
            },
        ),
        Err(why) => refused(why.to_string()),
    }
}
