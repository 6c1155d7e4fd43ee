//! H5 payment's page: what `mweb_url` opens in the phone's browser, standing in for WeChat's
//! H5 cashier (which hands over to the WeChat app). The `package` in `mweb_url` is a ticket
//! valid [`MWEB_URL_VALIDITY`] on the sandbox's clock, as WeChat's is; paying goes through
//! [`delivery::pay`], the same path as the scan page, and the browser returns to the shop's
//! `redirect_url` whether the shopper paid or cancelled.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use askama::Template;
use chrono::{DateTime, Utc};
use rand::Rng;
use serde::Deserialize;

use super::delivery::{self, PayKey, PayRefusal, ShopperAction};
use super::http::{receipt_page, render_page, ResultPage, CANNOT_PAY};
use super::{Sandbox, MWEB_URL_VALIDITY};
use crate::domain::Fen;

/// What an `mweb_url`'s `package` stands for.
#[derive(Debug)]
pub struct Ticket {
    prepay_id: String,
}

/// WeChat's H5 cashier's texts: an `mweb_url` older than 5 minutes (or not WeChat's), and a
/// `redirect_url` it will not go to.
const EXPIRED: &str = "支付请求已失效，请重新发起支付";
const EXPIRED_DETAIL: &str =
    "The mweb_url is older than 5 minutes, or unknown: place the order again for a fresh one.";
const BAD_REDIRECT: &str = "redirect_url参数错误";

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/sandbox/mweb", web::get().to(page))
        .route("/sandbox/mweb/pay", web::post().to(pay))
        .route("/sandbox/mweb/cancel", web::post().to(cancel));
}

impl Sandbox {
    /// A fresh `mweb_url` for `prepay_id`: `{base}sandbox/mweb?prepay_id=…&package=…`, the
    /// ticket a 10-digit number as WeChat's.
    pub(super) fn mweb_url(&self, base: &url::Url, prepay_id: &str, now: DateTime<Utc>) -> String {
        let package = rand::rng()
            .random_range(1_000_000_000u64..10_000_000_000)
            .to_string();
        self.tickets().insert(
            package.clone(),
            Ticket {
                prepay_id: prepay_id.to_owned(),
            },
            now + MWEB_URL_VALIDITY,
        );
        let mut url = base.join("sandbox/mweb").expect("a fixed path joins");
        url.query_pairs_mut()
            .append_pair("prepay_id", prepay_id)
            .append_pair("package", &package);
        url.into()
    }

    /// Whether `package` is a live ticket for `prepay_id`.
    fn ticket_valid(&self, prepay_id: &str, package: &str) -> bool {
        self.tickets()
            .get(package, self.now())
            .is_some_and(|t| t.prepay_id == prepay_id)
    }
}

/// The page's query, and its forms' fields.
#[derive(Debug, Deserialize)]
struct Mweb {
    prepay_id: String,
    package: String,
    #[serde(default)]
    redirect_url: Option<String>,
}

impl Mweb {
    /// The shop's page to return to: `Ok(None)` without one, `Err` (why, for the page) for
    /// one the sandbox will not send the browser to.
    fn redirect(&self, sandbox: &Sandbox) -> Result<Option<url::Url>, &'static str> {
        match self.redirect_url.as_deref().filter(|u| !u.is_empty()) {
            None => Ok(None),
            Some(target) => sandbox.redirect_target(target).map(Some).ok_or(
                if sandbox.config.notify_only.is_some() {
                    "redirect_url must be an absolute http(s) URL on the shop's own origin."
                } else {
                    "redirect_url must be an absolute http(s) URL."
                },
            ),
        }
    }
}

fn bad_redirect(detail: &str) -> HttpResponse {
    render_page(
        &ResultPage::refusal(BAD_REDIRECT, detail),
        StatusCode::BAD_REQUEST,
    )
}

fn expired() -> HttpResponse {
    render_page(
        &ResultPage::refusal(EXPIRED, EXPIRED_DETAIL),
        StatusCode::GONE,
    )
}

/// What the page shows of the order.
struct MwebOrder {
    out_trade_no: String,
    body: String,
    amount: String,
    trade_state: String,
    /// Why it cannot be paid, if it cannot.
    refusal: Option<String>,
}

#[derive(Template)]
#[template(path = "sandbox/mweb.html")]
struct MwebPage {
    merchant_name: String,
    order: MwebOrder,
    prepay_id: String,
    package: String,
    redirect_url: Option<String>,
}

/// `GET /sandbox/mweb`: merchant, goods, amount; Pay / Cancel.
async fn page(sandbox: web::Data<Sandbox>, query: web::Query<Mweb>) -> HttpResponse {
    let query = query.into_inner();
    let redirect = match query.redirect(&sandbox) {
        Ok(redirect) => redirect,
        Err(why) => return bad_redirect(why),
    };
    if !sandbox.ticket_valid(&query.prepay_id, &query.package) {
        return expired();
    }
    let now = sandbox.now();
    let order = sandbox
        .book()
        .by_prepay_id(&query.prepay_id)
        .map(|o| MwebOrder {
            out_trade_no: o.out_trade_no.clone(),
            body: o.body.clone(),
            amount: Fen(o.total_fee).yuan(),
            trade_state: o.state.to_string(),
            refusal: delivery::unpayable(o, now).map(|r| r.to_string()),
        });
    // A live ticket names a known prepay unless the order was forgotten since.
    let Some(order) = order else {
        return expired();
    };
    let page = MwebPage {
        merchant_name: sandbox.config.merchant_name.clone(),
        order,
        prepay_id: query.prepay_id,
        package: query.package,
        redirect_url: redirect.map(String::from),
    };
    render_page(&page, StatusCode::OK)
}

fn see_other(to: &url::Url) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((actix_web::http::header::LOCATION, to.as_str()))
        .finish()
}

/// `POST /sandbox/mweb/pay`: pays as the scan page does, then back to the shop.
async fn pay(sandbox: web::Data<Sandbox>, form: web::Form<Mweb>) -> HttpResponse {
    let redirect = match form.redirect(&sandbox) {
        Ok(redirect) => redirect,
        Err(why) => return bad_redirect(why),
    };
    if !sandbox.ticket_valid(&form.prepay_id, &form.package) {
        return expired();
    }
    let sandbox = sandbox.into_inner();
    let result = delivery::pay(
        &sandbox,
        PayKey::PrepayId(&form.prepay_id),
        ShopperAction::Pay,
        None,
    );
    match (result, redirect) {
        (Ok(_), Some(to)) => see_other(&to),
        (Ok(receipt), None) => render_page(&receipt_page(receipt), StatusCode::OK),
        (Err(e), _) => {
            let status = match e {
                PayRefusal::UnknownPrepay => StatusCode::NOT_FOUND,
                _ => StatusCode::CONFLICT,
            };
            render_page(&ResultPage::refusal(CANNOT_PAY, e.to_string()), status)
        }
    }
}

/// `POST /sandbox/mweb/cancel`: back to the shop, unpaid.
async fn cancel(sandbox: web::Data<Sandbox>, form: web::Form<Mweb>) -> HttpResponse {
    let redirect = match form.redirect(&sandbox) {
        Ok(redirect) => redirect,
        Err(why) => return bad_redirect(why),
    };
    // Only for an order the sandbox holds: the redirect is not a service to anyone.
    if sandbox.book().by_prepay_id(&form.prepay_id).is_none() {
        return expired();
    }
    match redirect {
        Some(to) => see_other(&to),
        None => render_page(
            &ResultPage::refusal(
                "已取消 Cancelled",
                "订单仍未支付。The order is still unpaid; return to the shop to pay.",
            ),
            StatusCode::OK,
        ),
    }
}
