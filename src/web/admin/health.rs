//! The console's going-live and staying-live pages: the doctor's examination
//! (`/admin/doctor`, the same checks as `wxpay-checkout doctor`).

use actix_web::{web, HttpResponse};
use askama::Template;

use super::{chrome, AdminChrome, Session};
use crate::checkout::doctor::{Finding, Verdict};
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
