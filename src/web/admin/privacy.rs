//! The buyer's privacy in the console: a buyer's details downloaded
//! (`POST /admin/orders/{no}/buyer/export`) or deleted (`POST /admin/orders/{no}/buyer/delete`)
//! from the order's page, and the access log (`/admin/privacy`). Both forms are behind the
//! session and its CSRF token, as everything under `/admin`.

use actix_web::http::header::{self, LOCATION};
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::{chrome, AdminChrome, Session};
use crate::console::privacy::buyer_json;
use crate::console::{beijing_display, ConsoleError};
use crate::web::shop::render;
use crate::web::{no_store, AppState, WebError};

/// Every order of the order's buyer with the details given, as a JSON download.
pub async fn export(
    state: web::Data<AppState>,
    session: web::ReqData<Session>,
    no: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let data = state.console.export_buyer(&no, &session.token).await?;
    let body = serde_json::to_vec_pretty(&buyer_json(&data))
        .map_err(|e| WebError::Console(ConsoleError::Invalid(e.to_string())))?;
    Ok(no_store(
        HttpResponse::Ok()
            .content_type("application/json; charset=utf-8")
            .insert_header((
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"buyer-{}.json\"", no.as_str()),
            ))
            .body(body),
    ))
}

#[derive(Debug, Deserialize)]
pub struct DeleteForm {
    /// The box the merchant ticks to mean it.
    confirm: Option<String>,
}

/// Deletes the details of the order's buyer from every order of theirs, then back to the order.
pub async fn delete(
    state: web::Data<AppState>,
    session: web::ReqData<Session>,
    no: web::Path<String>,
    form: web::Form<DeleteForm>,
) -> Result<HttpResponse, WebError> {
    if form.confirm.as_deref() != Some("1") {
        return Err(WebError::Console(ConsoleError::Invalid(
            "tick the box to confirm the buyer's details are to be deleted".into(),
        )));
    }
    state.console.delete_buyer(&no, &session.token).await?;
    Ok(HttpResponse::SeeOther()
        .insert_header((LOCATION, format!("/admin/orders/{}", no.as_str())))
        .finish())
}

struct AccessRow {
    at: String,
    session: String,
    action: String,
    subject: String,
}

#[derive(Template)]
#[template(path = "admin/privacy.html")]
struct PrivacyPage {
    chrome: AdminChrome,
    rows: Vec<AccessRow>,
    listed: i64,
    keys: crate::console::ContactKeyUse,
}

/// The access log, newest first.
pub async fn access_log(
    state: web::Data<AppState>,
    session: web::ReqData<Session>,
) -> Result<HttpResponse, WebError> {
    let rows = state
        .console
        .contact_access()
        .await?
        .into_iter()
        .map(|a| AccessRow {
            at: beijing_display(a.at),
            session: a.session,
            action: a.action,
            subject: a.subject,
        })
        .collect();
    let keys = state.console.contact_key_use().await?;
    Ok(no_store(render(&PrivacyPage {
        chrome: chrome(&state, &session),
        keys,
        rows,
        listed: crate::console::privacy::ACCESS_LISTED,
    })?))
}
