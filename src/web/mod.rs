//! HTTP: the routes shoppers, WeChat Pay and operators reach. Handlers are thin: each parses
//! the request, calls one flow of the [checkout service](crate::checkout), and translates its
//! answer into a response in one `match`; errors are rendered in one place (`error.rs`) — as a
//! page, as the seed front end's JSON, or as WeChat's notify answer. The rules live in the
//! service; nothing here touches the store or the payments channel.

mod assets;
mod error;
pub mod notify;
pub mod ops;
mod pay;
mod qr;
mod seed;
mod shop;

use actix_web::web;
use url::Url;

use crate::checkout::Checkout;
pub use error::WebError;

/// Everything handlers need, shared by every worker.
pub struct AppState {
    pub checkout: Checkout,
    pub qr: qr::QrCache,
    /// In sandbox mode, the sandbox's base URL, for the pay page's link to its scan page.
    pub sandbox_base: Option<Url>,
}

impl AppState {
    pub fn new(checkout: Checkout, sandbox_base: Option<Url>) -> Self {
        AppState {
            checkout,
            qr: qr::QrCache::default(),
            sandbox_base,
        }
    }

    /// Whether pages carry the sandbox's banner and links.
    fn sandbox(&self) -> bool {
        self.sandbox_base.is_some()
    }
}

/// Registers every route of the shop.
pub fn routes(cfg: &mut web::ServiceConfig) {
    // Routes are tried in this order: the hot, fixed paths (every shopper polls the status every
    // 3 s; WeChat's notifies) first, before the order-number patterns that need a regex each.
    cfg.route(
        "/weixin/pay/status/query",
        web::get().to(seed::status_query),
    )
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
        web::get().to(seed::create_native),
    )
    .route("/static/{file}", web::get().to(assets::serve))
    .route("/healthz", web::get().to(ops::healthz))
    .route("/metrics", web::get().to(ops::metrics));
}
