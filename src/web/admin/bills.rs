//! The console's daily bill: every day's reconciliation against WeChat's trade bill
//! (`/admin/bills`), one day's discrepancies (`/admin/bills/{day}`), and running a day now
//! (`POST /admin/bills/run`, the checkout's flow — the same as `wxpay-checkout bill DATE`).

use actix_web::http::header::LOCATION;
use actix_web::{web, HttpResponse};
use askama::Template;
use chrono::{NaiveDate, Utc};
use serde::Deserialize;

use super::{chrome, AdminChrome, Session};
use crate::console::{charges, day_state, kind_label, ConsoleError, BILL_DAYS_LISTED};
use crate::web::shop::render;
use crate::web::{no_store, AppState, WebError};

struct DayRow {
    day: String,
    state: String,
    lines: i64,
    payments: String,
    refunds: String,
    matched: i64,
    open: i64,
    failed: bool,
}

#[derive(Template)]
#[template(path = "admin/bills.html")]
struct BillsPage {
    chrome: AdminChrome,
    days: Vec<DayRow>,
    /// Yesterday, Beijing: the form's default.
    yesterday: String,
}

pub async fn bills(
    state: web::Data<AppState>,
    session: web::ReqData<Session>,
) -> Result<HttpResponse, WebError> {
    let days = state
        .checkout
        .bill_days(BILL_DAYS_LISTED)
        .await?
        .into_iter()
        .map(|d| DayRow {
            day: d.day.to_string(),
            state: day_state(&d),
            lines: d.figures.lines,
            payments: format!("{} · {}", d.figures.payments, d.figures.payments_fee),
            refunds: format!("{} · {}", d.figures.refunds, d.figures.refunds_fee),
            matched: d.figures.matched,
            open: d.open_discrepancies,
            failed: d.last_error.is_some(),
        })
        .collect();
    let yesterday = crate::wxpay::time::beijing_date(Utc::now())
        .pred_opt()
        .map_or_else(String::new, |d| d.to_string());
    let page = BillsPage {
        chrome: chrome(&state, &session),
        days,
        yesterday,
    };
    Ok(no_store(render(&page)?))
}

struct DiscrepancyRow {
    kind: &'static str,
    reference: String,
    out_trade_no: String,
    wechat_fee: String,
    shop_fee: String,
    detail: String,
    action: String,
    resolved: String,
}

#[derive(Template)]
#[template(path = "admin/bill_day.html")]
struct BillDayPage {
    chrome: AdminChrome,
    day: String,
    state: String,
    lines: i64,
    payments: String,
    refunds: String,
    charges: String,
    matched: i64,
    attempts: i64,
    discrepancies: Vec<DiscrepancyRow>,
}

fn parse_day(text: &str) -> Result<NaiveDate, WebError> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| {
        WebError::Console(ConsoleError::Invalid(
            "日期格式 A day is written like 2026-11-29.".into(),
        ))
    })
}

pub async fn bill_day(
    state: web::Data<AppState>,
    session: web::ReqData<Session>,
    day: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let day = parse_day(&day)?;
    let Some((found, discrepancies)) = state.checkout.bill_day(day).await? else {
        return Err(WebError::Checkout(
            crate::checkout::CheckoutError::NotFound(crate::checkout::Missing::BillDay),
        ));
    };
    let amount = |fee: Option<crate::domain::Fen>| fee.map_or_else(String::new, |f| f.to_string());
    let page = BillDayPage {
        chrome: chrome(&state, &session),
        day: found.day.to_string(),
        state: day_state(&found),
        lines: found.figures.lines,
        payments: format!(
            "{} · {}",
            found.figures.payments, found.figures.payments_fee
        ),
        refunds: format!("{} · {}", found.figures.refunds, found.figures.refunds_fee),
        charges: charges(found.figures.charges).to_string(),
        matched: found.figures.matched,
        attempts: found.attempts,
        discrepancies: discrepancies
            .into_iter()
            .map(|d| DiscrepancyRow {
                kind: kind_label(d.kind),
                reference: d.reference,
                out_trade_no: d.out_trade_no.unwrap_or_default(),
                wechat_fee: amount(d.wechat_fee),
                shop_fee: amount(d.shop_fee),
                detail: d.detail,
                action: d.action,
                resolved: d
                    .resolved_at
                    .map_or_else(String::new, crate::console::beijing_display),
            })
            .collect(),
    };
    Ok(no_store(render(&page)?))
}

#[derive(Debug, Deserialize)]
pub struct RunForm {
    day: String,
}

/// Runs a day now (again), then shows it.
pub async fn run(
    state: web::Data<AppState>,
    form: web::Form<RunForm>,
) -> Result<HttpResponse, WebError> {
    let day = parse_day(&form.day)?;
    let done = state.checkout.reconcile_bill_day(day).await?;
    Ok(HttpResponse::SeeOther()
        .insert_header((LOCATION, format!("/admin/bills/{}", done.day)))
        .finish())
}
