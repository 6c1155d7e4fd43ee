//! The console's going-live and staying-live pages: the doctor's examination
//! (`/admin/doctor`, the same checks as `wxpay-checkout doctor`) and notify health
//! (`/admin/notifies`: the missing-notify alarm, the window's figures and the notify log).

use actix_web::{web, HttpResponse};
use askama::Template;

use serde::Deserialize;

use super::{chrome, AdminChrome, Session};
use crate::checkout::doctor::{Finding, Verdict};
use crate::console::beijing_display;
use crate::web::shop::render;
use crate::web::{no_store, AppState, WebError};

#[derive(Template)]
#[template(path = "admin/doctor.html")]
struct DoctorPage {
    chrome: AdminChrome,
    api_base: String,
    mch_id: String,
    appid: String,
    sandbox: bool,
    failed: bool,
    findings: Vec<FindingRow>,
}

struct FindingRow {
    verdict: &'static str,
    label: &'static str,
    finding: Finding,
}

/// Runs the doctor now: one orderquery to WeChat and a probe POST to each notify URL.
pub async fn doctor(
    state: web::Data<AppState>,
    session: web::ReqData<Session>,
) -> Result<HttpResponse, WebError> {
    let examination = state.checkout.doctor().await;
    let page = DoctorPage {
        chrome: chrome(&state, &session),
        failed: examination.failed(),
        api_base: examination.api_base,
        mch_id: examination.mch_id,
        appid: examination.appid,
        sandbox: state.sandbox_base.is_some(),
        findings: examination
            .findings
            .into_iter()
            .map(|finding| FindingRow {
                verdict: finding.verdict.as_str(),
                label: match finding.verdict {
                    Verdict::Ok => "正常 OK",
                    Verdict::Warn => "注意 Warning",
                    Verdict::Fail => "故障 Problem",
                },
                finding,
            })
            .collect(),
    };
    Ok(no_store(render(&page)?))
}

/// Log lines on one page.
const LOG_PAGE: i64 = 100;

struct LogRow {
    at: String,
    kind: &'static str,
    outcome: &'static str,
    reason: String,
    out_trade_no: String,
    count: i64,
}

#[derive(Template)]
#[template(path = "admin/notifies.html")]
struct NotifiesPage {
    chrome: AdminChrome,
    raised_since: Option<String>,
    last_change: Option<String>,
    window_minutes: u64,
    min_payments: u32,
    by_notify: i64,
    by_asking: i64,
    notifies: i64,
    refused: i64,
    rows: Vec<LogRow>,
    older: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct LogQuery {
    before: Option<i64>,
}

pub async fn notifies(
    state: web::Data<AppState>,
    session: web::ReqData<Session>,
    query: web::Query<LogQuery>,
) -> Result<HttpResponse, WebError> {
    let health = state.checkout.notify_health().await?;
    let log = state.checkout.notify_log(query.before, LOG_PAGE).await?;
    let older = (log.len() as i64 == LOG_PAGE)
        .then(|| log.last().map(|l| l.id))
        .flatten();
    let page = NotifiesPage {
        chrome: chrome(&state, &session),
        raised_since: health.raised_at().map(beijing_display),
        last_change: health.alarm.as_ref().map(|a| beijing_display(a.changed_at)),
        window_minutes: health.terms.window.as_secs().div_ceil(60),
        min_payments: health.terms.min_payments,
        by_notify: health.figures.by_notify,
        by_asking: health.figures.by_asking,
        notifies: health.figures.notifies,
        refused: health.figures.refused,
        rows: log
            .into_iter()
            .map(|l| LogRow {
                at: beijing_display(l.entry.at),
                kind: match l.entry.kind {
                    "refund" => "退款 refund",
                    _ => "支付 payment",
                },
                outcome: match l.entry.outcome {
                    "accepted" => "已接收 accepted",
                    "duplicate" => "重复 duplicate",
                    _ => "已拒绝 refused",
                },
                reason: l.entry.reason.unwrap_or_default(),
                out_trade_no: l.entry.out_trade_no.unwrap_or_default(),
                count: l.entry.count,
            })
            .collect(),
        older,
    };
    Ok(no_store(render(&page)?))
}
