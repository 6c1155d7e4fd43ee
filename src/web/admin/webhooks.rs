//! The console's outgoing events: every delivery to the merchant's webhooks and chat robots,
//! what each attempt got (`/admin/webhooks`), and sending one again
//! (`POST /admin/webhooks/{seq}/{target}/resend`).

use actix_web::http::header::LOCATION;
use actix_web::{web, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::{chrome, AdminChrome, Session};
use crate::checkout::{DeliveryState, DeliveryView};
use crate::console::beijing_display;
use crate::web::shop::render;
use crate::web::{no_store, AppState, WebError};

/// Deliveries on one page.
const PAGE: i64 = 50;

struct Row {
    seq: i64,
    event_id: String,
    kind: String,
    out_trade_no: String,
    target: String,
    target_id: String,
    state: &'static str,
    attempts: i64,
    last: String,
    next: String,
    created: String,
}

pub(super) fn state_label(state: DeliveryState) -> &'static str {
    match state {
        DeliveryState::Pending => "待发送 Pending",
        DeliveryState::Delivered => "已送达 Delivered",
        DeliveryState::Failed => "已放弃 Gave up",
    }
}

fn row(view: DeliveryView) -> Row {
    let d = view.delivery;
    let last = match (&d.last_at, &d.last_result) {
        (Some(at), Some(result)) => format!("{result} · {}", beijing_display(*at)),
        _ => String::new(),
    };
    Row {
        seq: d.seq,
        event_id: d.event_id,
        kind: d.kind,
        out_trade_no: d.out_trade_no.unwrap_or_default(),
        target: view
            .target_label
            .unwrap_or_else(|| format!("{} (不再配置 no longer configured)", d.target)),
        target_id: d.target,
        state: state_label(d.state),
        attempts: d.attempts,
        last,
        next: if d.state == DeliveryState::Pending {
            beijing_display(d.next_at)
        } else {
            String::new()
        },
        created: beijing_display(d.created_at),
    }
}

#[derive(Template)]
#[template(path = "admin/webhooks.html")]
struct WebhooksPage {
    chrome: AdminChrome,
    targets: Vec<(String, String)>,
    pending: i64,
    failed: i64,
    filter: String,
    rows: Vec<Row>,
    /// The next page's `before`, when there may be one.
    older: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    before: Option<i64>,
}

pub async fn list(
    state: web::Data<AppState>,
    session: web::ReqData<Session>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, WebError> {
    let filter = query.state.as_deref().and_then(DeliveryState::parse);
    let views = state
        .checkout
        .deliveries(filter, query.before, PAGE)
        .await?;
    let counts = state.checkout.delivery_counts().await?;
    let older = (views.len() as i64 == PAGE)
        .then(|| views.last().map(|v| v.delivery.seq))
        .flatten();
    let page = WebhooksPage {
        chrome: chrome(&state, &session),
        targets: state.checkout.outbox_targets(),
        pending: counts.pending,
        failed: counts.failed,
        filter: filter.map_or("", DeliveryState::as_str).to_owned(),
        rows: views.into_iter().map(row).collect(),
        older,
    };
    Ok(no_store(render(&page)?))
}

/// Sends a delivery again now, then shows the list.
pub async fn resend(
    state: web::Data<AppState>,
    path: web::Path<(i64, String)>,
) -> Result<HttpResponse, WebError> {
    let (seq, target) = path.into_inner();
    state.checkout.resend_delivery(seq, &target).await?;
    Ok(HttpResponse::SeeOther()
        .insert_header((LOCATION, "/admin/webhooks"))
        .finish())
}
