//! The merchant console, `/admin`: sign-in, the dashboard, orders (list, one order's story,
//! shipping, CSV export), products, the daily bill (`bills.rs`), the outgoing events'
//! deliveries (`webhooks.rs`) and the buyer's privacy (`privacy.rs`: a buyer's export and
//! deletion, the access log). Everything under `/admin` but the sign-in page goes
//! through [`require_session`], which sends a browser without a live session to the sign-in page
//! and refuses any form without its session's CSRF token — a route added to the scope is guarded
//! by construction.

mod bills;
mod health;
mod privacy;
mod webhooks;

use actix_web::body::BoxBody;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, LOCATION};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use askama::Template;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use super::pay::beijing_display;
use super::shop::{render, see_other};
use super::{cookie_value, no_store, AppState, WebError};
use crate::checkout::contact::mobile_number;
use crate::console::privacy::Access;
use crate::console::{
    ConsoleError, Dashboard, ListStatus, OrderDetail, OrderFilter, OrderSummary, SESSION_HOURS,
};
use crate::domain::{Fen, OrderStatus, OutTradeNo};

/// The console's session cookie.
pub const SESSION_COOKIE: &str = "admin_session";

/// Every console route (method, a path that reaches it): what the sign-in guard covers. The
/// test that every one of them needs a session walks this list; `routes` registers the same.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/admin"),
    ("GET", "/admin/orders"),
    ("GET", "/admin/orders.csv"),
    ("GET", "/admin/orders/20261130000000000000000000001"),
    ("POST", "/admin/orders/20261130000000000000000000001/ship"),
    (
        "POST",
        "/admin/orders/20261130000000000000000000001/refunds",
    ),
    ("GET", "/admin/products"),
    ("POST", "/admin/products/LJ-250"),
    ("GET", "/admin/bills"),
    ("GET", "/admin/bills/2026-11-29"),
    ("POST", "/admin/bills/run"),
    (
        "POST",
        "/admin/orders/20261130000000000000000000001/buyer/export",
    ),
    (
        "POST",
        "/admin/orders/20261130000000000000000000001/buyer/delete",
    ),
    ("GET", "/admin/privacy"),
    ("GET", "/admin/webhooks"),
    ("GET", "/admin/doctor"),
    ("GET", "/admin/notifies"),
    ("POST", "/admin/webhooks/1/wecom/resend"),
    ("POST", "/admin/logout"),
];

/// A live session, as the guard found it.
#[derive(Debug, Clone)]
pub struct Session {
    token: String,
    csrf: String,
}

/// What every console page shows around its content.
struct AdminChrome {
    shop_name: String,
    csrf: String,
}

fn chrome(state: &AppState, session: &Session) -> AdminChrome {
    AdminChrome {
        shop_name: state.checkout.terms().shop_name.clone(),
        csrf: session.csrf.clone(),
    }
}

/// The guard of everything under `/admin` but the sign-in page.
pub async fn require_session(
    mut req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .expect("the app's state is registered");
    let token = cookie_value(&req, SESSION_COOKIE);
    let session = match &token {
        Some(token) => state.console.session(token).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "reading a console session");
            None
        }),
        None => None,
    };
    let (Some(token), Some(session)) = (token, session) else {
        return Ok(req.into_response(see_other("/admin/login".into())));
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        // A form: from the console's own pages, with this session's CSRF token.
        let refused = |req: ServiceRequest| {
            Ok(req.into_response(forbidden("This form has expired or did not come from the console; reload the page and try again.")))
        };
        if !state.same_origin(req.request()) {
            return refused(req);
        }
        let body = req.extract::<web::Bytes>().await?;
        let presented = url::form_urlencoded::parse(&body)
            .find(|(name, _)| name == "csrf")
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default();
        if !csrf_matches(&session.csrf, &presented) {
            return refused(req);
        }
        req.set_payload(bytes_payload(body));
    }
    req.extensions_mut().insert(Session {
        token,
        csrf: session.csrf,
    });
    next.call(req).await
}

/// A body already read, handed back to the request for the handler.
fn bytes_payload(body: web::Bytes) -> actix_web::dev::Payload {
    actix_web::dev::Payload::from(body)
}

fn csrf_matches(own: &str, presented: &str) -> bool {
    use subtle::ConstantTimeEq;
    !own.is_empty() && bool::from(own.as_bytes().ct_eq(presented.as_bytes()))
}

fn forbidden(message: &'static str) -> HttpResponse {
    HttpResponse::Forbidden()
        .content_type("text/plain; charset=utf-8")
        .body(message)
}

#[derive(Template)]
#[template(path = "admin/login.html")]
struct LoginPage {
    shop_name: String,
    problem: Option<String>,
}

pub async fn login_page(state: web::Data<AppState>) -> Result<HttpResponse, WebError> {
    Ok(no_store(render(&LoginPage {
        shop_name: state.checkout.terms().shop_name.clone(),
        problem: None,
    })?))
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    password: Option<String>,
}

pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, WebError> {
    if !state.same_origin(&req) {
        return Err(WebError::CrossOrigin);
    }
    let client = state.shopper(&req);
    let password = form.password.as_deref().unwrap_or_default();
    match state.console.login(password, client.key()).await {
        Ok(session) => {
            let mut cookie = Cookie::build(SESSION_COOKIE, session.token)
                .path("/admin")
                .http_only(true)
                .secure(state.secure_cookies)
                .same_site(SameSite::Strict)
                .finish();
            cookie.set_max_age(actix_web::cookie::time::Duration::hours(SESSION_HOURS));
            let mut response = see_other("/admin".into());
            response.add_cookie(&cookie).map_err(|_| WebError::Cookie)?;
            Ok(response)
        }
        Err(e @ (ConsoleError::WrongPassword | ConsoleError::LockedOut(_))) => {
            let (status, problem) = match e {
                ConsoleError::LockedOut(until) => (
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "Too many failed sign-ins from here. Try again after {}.",
                        beijing_display(until)
                    ),
                ),
                _ => (StatusCode::UNAUTHORIZED, "Wrong password.".to_owned()),
            };
            let mut response = no_store(render(&LoginPage {
                shop_name: state.checkout.terms().shop_name.clone(),
                problem: Some(problem),
            })?);
            *response.status_mut() = status;
            Ok(response)
        }
        Err(e) => Err(WebError::Console(e)),
    }
}

pub async fn logout(
    state: web::Data<AppState>,
    session: web::ReqData<Session>,
) -> Result<HttpResponse, WebError> {
    state.console.logout(&session.token).await?;
    let mut removal = Cookie::build(SESSION_COOKIE, "").path("/admin").finish();
    removal.make_removal();
    let mut response = see_other("/admin/login".into());
    response
        .add_cookie(&removal)
        .map_err(|_| WebError::Cookie)?;
    Ok(response)
}

/// A bar of the dashboard's revenue chart, in the SVG's coordinates.
struct Bar {
    x: i64,
    y: i64,
    height: i64,
    label: String,
    title: String,
}

struct DayRow {
    date: String,
    paid_orders: i64,
    revenue: String,
    refunded: String,
}

#[derive(Template)]
#[template(path = "admin/dashboard.html")]
struct DashboardPage {
    chrome: AdminChrome,
    today_orders: i64,
    today_revenue: String,
    total_orders: i64,
    total_revenue: String,
    pending: i64,
    refund_due: i64,
    refunds_in_progress: i64,
    bill_discrepancies: i64,
    /// How old the last good backup is (`None`: never), and whether that is too old (a day).
    backup_age: Option<String>,
    backup_stale: bool,
    backs_up_itself: bool,
    deliveries_waiting: i64,
    deliveries_failed: i64,
    /// Since when the missing-notify alarm is raised (Beijing time), and the window's figures.
    notify_alarm_since: Option<String>,
    notify_by_asking: i64,
    notifies: i64,
    today_refunded: String,
    bars: Vec<Bar>,
    rows: Vec<DayRow>,
}

/// The chart's drawing area, in SVG units.
const CHART_HEIGHT: i64 = 160;
const BAR_STEP: i64 = 40;

fn day_label(day: i64, format: &str) -> String {
    NaiveDate::from_num_days_from_ce_opt(i32::try_from(day + 719_163).unwrap_or(i32::MAX))
        .map_or_else(String::new, |d| d.format(format).to_string())
}

pub async fn dashboard(
    state: web::Data<AppState>,
    session: web::ReqData<Session>,
) -> Result<HttpResponse, WebError> {
    let Dashboard {
        days,
        pending,
        refund_due,
        refunds_in_progress,
        bill_discrepancies,
        last_backup,
        backs_up_itself,
        deliveries_waiting,
        deliveries_failed,
    } = state.console.dashboard(Utc::now()).await?;
    let health = state.checkout.notify_health().await?;
    let most = days.iter().map(|d| d.revenue.0).max().unwrap_or(0).max(1);
    let bars = days
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let height = d.revenue.0 * CHART_HEIGHT / most;
            Bar {
                x: i as i64 * BAR_STEP + 8,
                y: CHART_HEIGHT - height,
                height,
                label: day_label(d.day, "%m-%d"),
                title: format!(
                    "{}: {} orders, {}",
                    day_label(d.day, "%Y-%m-%d"),
                    d.paid_orders,
                    d.revenue
                ),
            }
        })
        .collect();
    let today = days.last().copied();
    let page = DashboardPage {
        chrome: chrome(&state, &session),
        today_orders: today.map_or(0, |d| d.paid_orders),
        today_revenue: today.map_or(Fen(0), |d| d.revenue).to_string(),
        total_orders: days.iter().map(|d| d.paid_orders).sum(),
        total_revenue: Fen(days.iter().map(|d| d.revenue.0).sum()).to_string(),
        pending,
        refund_due,
        refunds_in_progress,
        bill_discrepancies,
        backup_age: last_backup.map(|at| crate::console::age(at, Utc::now())),
        backup_stale: backs_up_itself
            && last_backup.is_none_or(|at| Utc::now() - at > chrono::Duration::days(1)),
        backs_up_itself,
        deliveries_waiting,
        deliveries_failed,
        notify_alarm_since: health.raised_at().map(crate::console::beijing_display),
        notify_by_asking: health.figures.by_asking,
        notifies: health.figures.notifies,
        today_refunded: today.map_or(Fen(0), |d| d.refunded).to_string(),
        bars,
        rows: days
            .iter()
            .rev()
            .map(|d| DayRow {
                date: day_label(d.day, "%Y-%m-%d"),
                paid_orders: d.paid_orders,
                revenue: d.revenue.to_string(),
                refunded: d.refunded.to_string(),
            })
            .collect(),
    };
    Ok(no_store(render(&page)?))
}

/// The order list's query: every field as typed.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    q: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// The last order of the previous page (`created_at-out_trade_no`): keyset pagination.
    page: Option<String>,
}

/// A Beijing date (`2026-11-30`) as the UTC instant its day starts.
fn beijing_midnight(text: &str) -> Option<DateTime<Utc>> {
    let date = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()?;
    let start = date.and_hms_opt(0, 0, 0)?.and_utc();
    Some(start - chrono::Duration::hours(8))
}

impl ListQuery {
    fn filter(&self) -> Result<OrderFilter, WebError> {
        fn text(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|v| !v.is_empty())
        }
        let bad = |what: &str| WebError::Console(ConsoleError::Invalid(what.to_owned()));
        let status = text(&self.status)
            .map(|s| ListStatus::parse(s).ok_or_else(|| bad("unknown status")))
            .transpose()?;
        let search = text(&self.q).map(|q| mobile_number(q).unwrap_or_else(|| q.to_owned()));
        let from = text(&self.from)
            .map(|d| beijing_midnight(d).ok_or_else(|| bad("from: a date like 2026-11-30")))
            .transpose()?;
        let to = text(&self.to)
            .map(|d| {
                beijing_midnight(d)
                    .map(|t| t + chrono::Duration::days(1))
                    .ok_or_else(|| bad("to: a date like 2026-11-30"))
            })
            .transpose()?;
        let after = text(&self.page)
            .map(|p| {
                let (secs, no) = p.split_once('-').ok_or_else(|| bad("page"))?;
                let secs: i64 = secs.parse().map_err(|_| bad("page"))?;
                let no = OutTradeNo::parse(no).map_err(|_| bad("page"))?;
                let at = DateTime::from_timestamp(secs, 0).ok_or_else(|| bad("page"))?;
                Ok::<_, WebError>((at, no))
            })
            .transpose()?;
        Ok(OrderFilter {
            status,
            search,
            from,
            to,
            after,
        })
    }

    /// The query string of this list without its page, for links.
    fn without_page(&self) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("status", &self.status),
            ("q", &self.q),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if let Some(value) = value.as_deref().filter(|v| !v.trim().is_empty()) {
                query.append_pair(name, value);
            }
        }
        query.finish()
    }
}

struct OrderRow {
    out_trade_no: String,
    placed: String,
    status: &'static str,
    amount: String,
    name: String,
    phone: String,
    goods: String,
}

impl OrderRow {
    fn of(o: &OrderSummary) -> OrderRow {
        OrderRow {
            out_trade_no: o.out_trade_no.to_string(),
            placed: beijing_display(o.created_at),
            status: o.status.as_str(),
            amount: o.total_fee.to_string(),
            name: o.name.clone().unwrap_or_default(),
            phone: o.phone.clone().unwrap_or_default(),
            goods: o.body.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "admin/orders.html")]
struct OrdersPage {
    chrome: AdminChrome,
    orders: Vec<OrderRow>,
    statuses: Vec<&'static str>,
    status: String,
    q: String,
    from: String,
    to: String,
    /// The link to the next page, when there may be one.
    next: Option<String>,
    /// The CSV of the same filters.
    csv: String,
}

pub async fn orders(
    state: web::Data<AppState>,
    session: web::ReqData<Session>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, WebError> {
    let filter = query.filter()?;
    let orders = state.console.orders(&filter).await?;
    record_shown(&state, &session, &query, &orders, Access::List).await?;
    let base = query.without_page();
    let next = (orders.len() as i64 == crate::console::PAGE_SIZE)
        .then(|| orders.last())
        .flatten()
        .map(|last| {
            let page = format!("{}-{}", last.created_at.timestamp(), last.out_trade_no);
            let mut link = format!("/admin/orders?{base}");
            if !base.is_empty() {
                link.push('&');
            }
            link.push_str("page=");
            link.push_str(&page);
            link
        });
    let page = OrdersPage {
        chrome: chrome(&state, &session),
        orders: orders.iter().map(OrderRow::of).collect(),
        statuses: ListStatus::ALL.iter().map(|s| s.as_str()).collect(),
        status: query.status.clone().unwrap_or_default(),
        q: query.q.clone().unwrap_or_default(),
        from: query.from.clone().unwrap_or_default(),
        to: query.to.clone().unwrap_or_default(),
        next,
        csv: format!("/admin/orders.csv?{base}"),
    };
    Ok(no_store(render(&page)?))
}

/// Notes in the access log that a list page or CSV showed buyers, when it did: how many
/// orders with contacts, and the filters — but not a search's text, which may be a phone
/// number or a name.
async fn record_shown(
    state: &AppState,
    session: &Session,
    query: &ListQuery,
    orders: &[crate::console::OrderSummary],
    access: Access,
) -> Result<(), WebError> {
    let with_contacts = orders
        .iter()
        .filter(|o| o.name.is_some() || o.phone.is_some())
        .count();
    if with_contacts == 0 {
        return Ok(());
    }
    let filters = ListQuery {
        q: query.q.as_ref().map(|_| "…".to_owned()),
        ..query.clone()
    }
    .without_page();
    let subject = format!(
        "{with_contacts} orders{}{filters}",
        if filters.is_empty() { "" } else { " · " }
    );
    state
        .console
        .record_access(&session.token, access, &subject)
        .await?;
    Ok(())
}

/// The same list as CSV, every page of it: UTF-8 with a byte-order mark (so Excel reads the
/// Chinese), amounts in yuan, times in Beijing time.
pub async fn orders_csv(
    state: web::Data<AppState>,
    session: web::ReqData<Session>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, WebError> {
    let mut filter = query.filter()?;
    filter.after = None;
    let orders = state.console.all_orders(&filter).await?;
    record_shown(&state, &session, &query, &orders, Access::Csv).await?;
    let body = crate::console::orders_csv(&orders, true)
        .map_err(|e| WebError::Console(ConsoleError::Invalid(e.to_string())))?;
    Ok(no_store(
        HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header((
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"orders-{}.csv\"",
                    Utc::now().format("%Y%m%d")
                ),
            ))
            .body(body),
    ))
}

struct EventRow {
    at: String,
    kind: String,
    actor: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "admin/order.html")]
struct OrderPage {
    chrome: AdminChrome,
    out_trade_no: String,
    status: String,
    amount: String,
    placed: String,
    transaction_id: Option<String>,
    paid_at: Option<String>,
    cash_coupon: Option<String>,
    wechat_state: Option<String>,
    unpaid_queries: i64,
    items: Vec<(String, String, i64, String)>,
    contact: Vec<(&'static str, String)>,
    shipment: Option<(String, String, String)>,
    can_ship: bool,
    timeline: Vec<EventRow>,
    refunds: Vec<RefundRow>,
    /// The order's outgoing events: kind, receiver, state and attempts.
    deliveries: Vec<(String, String, String, i64)>,
    /// What may still be refunded, in yuan (`None`: the order cannot be refunded now).
    refundable: Option<String>,
    /// Money taken for an order that could not take it, still to be sent back.
    late_due: bool,
    /// Refunds need the merchant's client certificate.
    can_refund: bool,
    /// Its payment attempts (ways of paying, each its own WeChat order): number, trade type,
    /// what it came to, WeChat's last state, when made.
    attempts: Vec<(String, String, &'static str, String, String)>,
}

struct RefundRow {
    out_refund_no: String,
    amount: String,
    state: &'static str,
    reason: String,
    by: String,
    at: String,
    settled: Option<String>,
    failure: Option<String>,
}

pub async fn order(
    state: web::Data<AppState>,
    session: web::ReqData<Session>,
    no: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let OrderDetail {
        order,
        items,
        contact,
        timeline,
        refunds,
    } = state.console.order(&no).await?;
    if !contact.is_empty() {
        // The page shows the buyer's details: the access log says which session saw them.
        state
            .console
            .record_access(&session.token, Access::View, order.out_trade_no.as_str())
            .await?;
    }
    let deliveries = state
        .checkout
        .order_deliveries(&order.out_trade_no)
        .await?
        .into_iter()
        .map(|v| {
            let d = v.delivery;
            (
                d.kind,
                v.target_label.unwrap_or(d.target),
                webhooks::state_label(d.state).to_owned(),
                d.attempts,
            )
        })
        .collect();
    let attempts = state
        .checkout
        .attempts(&order)
        .await?
        .into_iter()
        .map(|a| {
            let came_to = if order.paid_no.as_ref() == Some(&a.attempt_no)
                || (order.paid_no.is_none()
                    && order.status == OrderStatus::Paid
                    && a.attempt_no == order.out_trade_no)
            {
                "paid the order"
            } else if a.closed_at.is_some() {
                "over at WeChat"
            } else if a.prepay.is_some() {
                "open"
            } else {
                "not made"
            };
            // The payer's openid, masked: never shown whole.
            let way = match &a.openid {
                Some(openid) => format!(
                    "{} · {}",
                    a.way.trade_type(),
                    crate::wxpay::oauth::masked_openid(openid)
                ),
                None => a.way.trade_type().to_owned(),
            };
            (
                a.attempt_no.to_string(),
                way,
                came_to,
                a.wechat_state.unwrap_or_default(),
                beijing_display(a.created_at),
            )
        })
        .collect();
    let remaining = Fen(order.total_fee.0 - order.refunded_fee.0);
    let status = ListStatus::of(
        order.status,
        order.refund_due,
        order.shipment.is_some(),
        order.refunded_fee.0 > 0,
    );
    let page = OrderPage {
        attempts,
        chrome: chrome(&state, &session),
        out_trade_no: order.out_trade_no.to_string(),
        status: match status {
            ListStatus::Refunded if order.refunded_fee < order.total_fee => {
                format!(
                    "refunded in part ({} of {})",
                    order.refunded_fee, order.total_fee
                )
            }
            _ => status.as_str().to_owned(),
        },
        amount: order.total_fee.to_string(),
        placed: beijing_display(order.created_at),
        transaction_id: order.transaction_id.clone(),
        paid_at: order.pay_time.map(beijing_display),
        cash_coupon: match (order.cash_fee, order.coupon_fee) {
            (Some(cash), Some(coupon)) if coupon.0 > 0 => {
                Some(format!("{cash} cash + {coupon} coupon"))
            }
            _ => None,
        },
        wechat_state: order.wechat_state.clone(),
        unpaid_queries: order.reconcile_attempts,
        items: items
            .iter()
            .map(|i| {
                (
                    i.name.clone(),
                    i.unit_price.to_string(),
                    i.num,
                    Fen(i.unit_price.0.saturating_mul(i.num)).to_string(),
                )
            })
            .collect(),
        contact: contact
            .fields()
            .into_iter()
            .filter_map(|(field, value)| Some((field, value?.to_owned())))
            .collect(),
        shipment: order.shipment.as_ref().map(|s| {
            (
                s.carrier.clone(),
                s.tracking_no.clone(),
                beijing_display(s.at),
            )
        }),
        // A partly refunded order may still be sent (a discount, one item missing).
        can_ship: matches!(status, ListStatus::Paid | ListStatus::Refunded)
            && order.shipment.is_none(),
        timeline: timeline
            .into_iter()
            .map(|e| EventRow {
                at: beijing_display(e.at),
                kind: e.kind,
                actor: e.actor,
                detail: e.detail,
            })
            .collect(),
        refunds: refunds
            .into_iter()
            .map(|r| RefundRow {
                amount: r.refund_fee.to_string(),
                state: r.state.as_str(),
                reason: r.reason,
                by: r.requested_by,
                at: beijing_display(r.created_at),
                settled: r.settled_at.map(beijing_display),
                failure: r.failure,
                out_refund_no: r.out_refund_no,
            })
            .collect(),
        deliveries,
        refundable: (order.status == crate::domain::OrderStatus::Paid && remaining.0 > 0)
            .then(|| remaining.yuan()),
        late_due: order.refund_due,
        can_refund: state.checkout.can_refund(),
    };
    Ok(no_store(render(&page)?))
}

#[derive(Debug, Deserialize)]
pub struct RefundForm {
    /// Yuan; empty: all that is left.
    amount: Option<String>,
    reason: Option<String>,
    restock: Option<String>,
    /// Refund the late payment (money taken for an order that could not take it) in full.
    late: Option<String>,
}

/// A full or partial refund from the order's page: recorded, then asked of WeChat; the page
/// shows where it stands.
pub async fn refund(
    state: web::Data<AppState>,
    req: HttpRequest,
    no: web::Path<String>,
    form: web::Form<RefundForm>,
) -> Result<HttpResponse, WebError> {
    let actor = format!("merchant (console, {})", state.shopper(&req).key());
    if form.late.is_some() {
        state.checkout.refund_late_payment(&no, &actor).await?;
    } else {
        let amount = match form.amount.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(crate::console::parse_amount(text)?),
        };
        state
            .checkout
            .refund(
                &no,
                amount,
                form.reason.as_deref().unwrap_or_default(),
                form.restock.is_some(),
                &actor,
            )
            .await?;
    }
    Ok(HttpResponse::SeeOther()
        .insert_header((LOCATION, format!("/admin/orders/{}", no.as_str())))
        .finish())
}

#[derive(Debug, Deserialize)]
pub struct ShipForm {
    carrier: Option<String>,
    tracking_no: Option<String>,
}

pub async fn ship(
    state: web::Data<AppState>,
    req: HttpRequest,
    no: web::Path<String>,
    form: web::Form<ShipForm>,
) -> Result<HttpResponse, WebError> {
    let actor = format!("merchant (console, {})", state.shopper(&req).key());
    state
        .console
        .ship(
            &no,
            form.carrier.as_deref().unwrap_or_default(),
            form.tracking_no.as_deref().unwrap_or_default(),
            &actor,
        )
        .await?;
    Ok(HttpResponse::SeeOther()
        .insert_header((LOCATION, format!("/admin/orders/{}", no.as_str())))
        .finish())
}

struct ProductRow {
    sku: String,
    name: String,
    price: String,
    stock: i64,
    active: bool,
}

#[derive(Template)]
#[template(path = "admin/products.html")]
struct ProductsPage {
    chrome: AdminChrome,
    products: Vec<ProductRow>,
}

pub async fn products(
    state: web::Data<AppState>,
    session: web::ReqData<Session>,
) -> Result<HttpResponse, WebError> {
    let products = state
        .console
        .products()
        .await?
        .into_iter()
        .map(|p| ProductRow {
            sku: p.sku,
            name: p.name,
            price: p.price.yuan(),
            stock: p.stock,
            active: p.active,
        })
        .collect();
    Ok(no_store(render(&ProductsPage {
        chrome: chrome(&state, &session),
        products,
    })?))
}

#[derive(Debug, Deserialize)]
pub struct ProductForm {
    price: Option<String>,
    stock: Option<String>,
    active: Option<String>,
}

pub async fn update_product(
    state: web::Data<AppState>,
    sku: web::Path<String>,
    form: web::Form<ProductForm>,
) -> Result<HttpResponse, WebError> {
    state
        .console
        .update_product(
            &sku,
            form.price.as_deref().unwrap_or_default(),
            form.stock.as_deref().unwrap_or_default(),
            form.active.is_some(),
        )
        .await?;
    Ok(see_other("/admin/products".into()))
}

/// Registers the console: the sign-in page, then everything else behind the guard.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/admin/login")
            .route(web::get().to(login_page))
            .route(web::post().to(login)),
    )
    .service(
        web::scope("/admin")
            .wrap(actix_web::middleware::from_fn(require_session))
            .route("", web::get().to(dashboard))
            .route("/orders", web::get().to(orders))
            .route("/orders.csv", web::get().to(orders_csv))
            .route("/orders/{out_trade_no}", web::get().to(order))
            .route("/orders/{out_trade_no}/ship", web::post().to(ship))
            .route("/orders/{out_trade_no}/refunds", web::post().to(refund))
            .route(
                "/orders/{out_trade_no}/buyer/export",
                web::post().to(privacy::export),
            )
            .route(
                "/orders/{out_trade_no}/buyer/delete",
                web::post().to(privacy::delete),
            )
            .route("/privacy", web::get().to(privacy::access_log))
            .route("/products", web::get().to(products))
            .route("/products/{sku}", web::post().to(update_product))
            .route("/bills", web::get().to(bills::bills))
            .route("/bills/run", web::post().to(bills::run))
            .route("/bills/{day}", web::get().to(bills::bill_day))
            .route("/webhooks", web::get().to(webhooks::list))
            .route(
                "/webhooks/{seq}/{target}/resend",
                web::post().to(webhooks::resend),
            )
            .route("/doctor", web::get().to(health::doctor))
            .route("/notifies", web::get().to(health::notifies))
            .route("/logout", web::post().to(logout)),
    );
}
