//! HTTP: the routes shoppers, WeChat Pay and operators reach. Handlers translate between HTTP
//! and the store, protocol and payments modules; the rules live there.

pub mod api;
mod assets;
mod error;
pub mod notify;
pub mod ops;
mod pay;
mod qr;
mod shop;

use actix_web::web;
use url::Url;

use crate::payments::gate::QueryGate;
use crate::payments::Payments;
use crate::store::{OrderDesk, Store};
use crate::wxpay::types::OrderQueryResponse;
use crate::wxpay::{Client, Merchant};
pub use error::WebError;

/// What an order query told us, shared by the polls that asked together. `None` when WeChat
/// could not be asked (the outcome is unknown).
pub type QueryOutcome = Option<OrderQueryResponse>;

/// Everything handlers need, shared by every worker.
pub struct AppState {
    pub store: Store,
    /// Order creation, group-committed.
    pub orders: OrderDesk,
    pub wechat: Client,
    pub payments: Payments,
    /// Throttles and shares order queries of the status endpoint.
    pub queries: QueryGate<QueryOutcome>,
    pub qr: qr::QrCache,
    pub checkout: Checkout,
}

/// Fixed facts of this shop's checkout.
#[derive(Debug, Clone)]
pub struct Checkout {
    pub merchant: Merchant,
    pub notify_url: Url,
    /// `spbill_create_ip`: for Native payments, the IP of the machine calling WeChat Pay. It is
    /// part of a unifiedorder's parameters, so it must not change between re-entries.
    pub spbill_create_ip: String,
    /// In sandbox mode, the sandbox's base URL, for the pay page's link to its scan page.
    pub sandbox_base: Option<Url>,
    /// Time a shopper has to pay (`ORDER_TTL_SECS`).
    pub order_ttl: std::time::Duration,
    /// About when the reconciliation job closes an unpaid order with a prepay
    /// (`RECONCILE_MAX_ATTEMPTS` unpaid queries, `RECONCILE_INTERVAL_SECS` apart), if that
    /// comes before its expiry: the pay page counts down to the earlier of the two.
    pub unpaid_close_after: std::time::Duration,
}

impl AppState {
    pub fn new(store: Store, wechat: Client, payments: Payments, checkout: Checkout) -> Self {
        AppState {
            orders: OrderDesk::start(store.clone()),
            store,
            wechat,
            payments,
            queries: QueryGate::new(crate::payments::gate::QUERY_EVERY),
            qr: qr::QrCache::default(),
            checkout,
        }
    }
}

/// Registers every route of the shop.
pub fn routes(cfg: &mut web::ServiceConfig) {
    // Routes are tried in this order: the hot, fixed paths (every shopper polls the status every
    // 3 s; WeChat's notifies) first, before the order-number patterns that need a regex each.
    cfg.route("/weixin/pay/status/query", web::get().to(api::status_query))
        .service(
            web::resource("/weixin/pay/notify/url")
                .app_data(web::PayloadConfig::new(notify::MAX_NOTIFY_BYTES))
                .route(web::post().to(notify::receive)),
        )
        .route("/", web::get().to(shop::catalogue))
        .route("/orders", web::post().to(shop::place_order))
        .route("/pay/{out_trade_no}", web::get().to(pay::pay_page))
        .route(
            "/pay/{out_trade_no}/success",
            web::get().to(pay::success_page),
        )
        .route(
            "/pay/{out_trade_no}/failed",
            web::get().to(pay::failed_page),
        )
        .route(
            "/weixin/pay/create/native",
            web::get().to(api::create_native),
        )
        .route("/static/{file}", web::get().to(assets::serve))
        .route("/healthz", web::get().to(ops::healthz))
        .route("/metrics", web::get().to(ops::metrics));
}
