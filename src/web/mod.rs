//! HTTP: the routes shoppers, WeChat Pay and operators reach. Handlers are thin: each parses
//! the request, calls one flow of the [checkout service](crate::checkout), and translates its
//! answer into a response in one `match`; errors are rendered in one place (`error.rs`) — as a
//! page, as the seed front end's JSON, or as WeChat's notify answer. The rules live in the
//! service; nothing here touches the store or the payments channel.

pub mod admin;
mod assets;
mod cart;
pub mod error;
mod events;
pub mod limits;
pub mod notify;
pub mod ops;
mod pay;
mod phone;
mod qr;
mod receipt;
mod seed;
mod shop;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpMessage, HttpResponse};
use url::Url;

use crate::checkout::{Cart, Checkout, Order, Shopper};
pub use error::WebError;

/// What every page shows around its content: the shop's name (`SHOP_NAME`), the link to the
/// cart with how many items it holds, and, in sandbox mode, a banner.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub shop_name: String,
    pub sandbox: bool,
    pub cart_items: i64,
    /// The ICP filing number and the customer-service contact (China's page rules).
    pub icp_beian: Option<String>,
    pub shop_contact: Option<String>,
}

/// The cookie that holds the shopper's cart.
const CART_COOKIE: &str = "cart";
/// How long an untouched cart is kept.
const CART_DAYS: i64 = 30;
/// The cookie, scoped to one order's pay pages, that lets the browser which placed the order
/// see its receipt link on the success page (anyone may know an order number; only the buyer's
/// browser holds this).
const RECEIPT_COOKIE: &str = "receipt";

/// A cookie's value, as the request carries it.
fn cookie_value(req: &impl HttpMessage, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.trim_matches('"').to_owned())
}

/// The cart a request carries (empty without one).
fn cart_of(req: &impl HttpMessage) -> Cart {
    cookie_value(req, CART_COOKIE)
        .map(|v| Cart::decode(&v))
        .unwrap_or_default()
}

/// Everything handlers need, shared by every worker.
pub struct AppState {
    pub checkout: Checkout,
    /// The merchant console.
    pub console: crate::console::Console,
    pub qr: qr::QrCache,
    /// In sandbox mode, the sandbox's base URL, for the pay page's link to its scan page.
    pub sandbox_base: Option<Url>,
    /// The shop's own origin (`PUBLIC_BASE_URL`'s): forms are taken only from its pages.
    pub origin: String,
    /// Proxies whose `X-Forwarded-For` names the client (`TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Cookies are `Secure` when shoppers reach the shop over https.
    pub secure_cookies: bool,
}

impl AppState {
    pub fn new(
        checkout: Checkout,
        console: crate::console::Console,
        sandbox_base: Option<Url>,
        public_base_url: &Url,
        trusted_proxies: Vec<ipnet::IpNet>,
    ) -> Self {
        AppState {
            checkout,
            console,
            qr: qr::QrCache::default(),
            sandbox_base,
            origin: public_base_url.origin().ascii_serialization(),
            trusted_proxies,
            secure_cookies: public_base_url.scheme() == "https",
        }
    }

    /// A cookie of the shop's: never readable by scripts, sent on the shop's own navigation.
    pub(crate) fn cookie(
        &self,
        name: &'static str,
        value: String,
        path: String,
    ) -> Cookie<'static> {
        Cookie::build(name, value)
            .path(path)
            .http_only(true)
            .secure(self.secure_cookies)
            .same_site(SameSite::Lax)
            .finish()
    }

    /// The cookie holding `cart` (one that removes it when the cart is empty).
    fn cart_cookie(&self, cart: &Cart) -> Cookie<'static> {
        let mut cookie = self.cookie(CART_COOKIE, cart.encode(), "/".into());
        if cart.is_empty() {
            cookie.make_removal();
        } else {
            cookie.set_max_age(actix_web::cookie::time::Duration::days(CART_DAYS));
        }
        cookie
    }

    /// The cookie that shows the order's receipt link on its success page, to this browser.
    fn receipt_cookie(&self, order: &Order) -> Option<Cookie<'static>> {
        let token = order.receipt_token.clone()?;
        let mut cookie = self.cookie(
            RECEIPT_COOKIE,
            token,
            format!("/pay/{}", order.out_trade_no),
        );
        cookie.set_max_age(actix_web::cookie::time::Duration::days(7));
        Some(cookie)
    }

    /// Who is asking: the peer's address, or — when the peer is a trusted proxy — the last
    /// address in `X-Forwarded-For` that is not one of the trusted proxies (entries before it
    /// are the client's own say, and anyone can write them).
    pub(crate) fn shopper(&self, req: &actix_web::HttpRequest) -> Shopper {
        Shopper::from_ip(self.client_ip(req))
    }

    /// The client's address: the peer's, or — behind a trusted proxy — the last address in
    /// `X-Forwarded-For` that is not a trusted proxy. (H5 payment sends it to WeChat as
    /// `spbill_create_ip`.)
    pub(crate) fn client_ip(&self, req: &actix_web::HttpRequest) -> std::net::IpAddr {
        let peer = req
            .peer_addr()
            .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |a| a.ip());
        let trusted = |ip: &std::net::IpAddr| self.trusted_proxies.iter().any(|n| n.contains(ip));
        let mut client = peer;
        if trusted(&peer) {
            let forwarded = req
                .headers()
                .get_all("x-forwarded-for")
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .collect::<Vec<_>>();
            for hop in forwarded.iter().rev() {
                let Ok(ip) = hop.parse::<std::net::IpAddr>() else {
                    break;
                };
                client = ip;
                if !trusted(&ip) {
                    break;
                }
            }
        }
        client
    }

    /// Whether a state-changing form comes from the shop's own pages: the browser's
    /// `Sec-Fetch-Site` when it sends one, else the `Origin` (the shop's public origin, or the
    /// one the request itself was made to). Clients that send neither (scripts, the seed front
    /// end's server) are not browsers another site could steer.
    fn same_origin(&self, req: &actix_web::HttpRequest) -> bool {
        let headers = req.headers();
        if let Some(site) = headers.get("sec-fetch-site") {
            return matches!(site.as_bytes(), b"same-origin" | b"none");
        }
        let Some(origin) = headers.get(header::ORIGIN) else {
            return true;
        };
        let origin = origin.to_str().unwrap_or_default();
        let info = req.connection_info();
        origin == self.origin || origin == format!("{}://{}", info.scheme(), info.host())
    }

    /// Whether pages carry the sandbox's banner and links.
    fn sandbox(&self) -> bool {
        self.sandbox_base.is_some()
    }

    /// What every page shows around its content, for the shopper who asked.
    fn chrome(&self, req: &impl HttpMessage) -> Chrome {
        Chrome {
            shop_name: self.checkout.terms().shop_name.clone(),
            sandbox: self.sandbox(),
            cart_items: cart_of(req).lines().iter().map(|l| l.num).sum(),
            icp_beian: self.checkout.terms().icp_beian.clone(),
            shop_contact: self.checkout.terms().shop_contact.clone(),
        }
    }
}

/// The Content-Security-Policy of every response: scripts, styles and requests from the shop
/// itself only (no inline script anywhere; the QR code is inline SVG, drawn with attributes),
/// forms posting only to the shop, and no framing (the Buy button cannot be clickjacked).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// Security headers on every response of the shop (a handler's own value wins).
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "same-origin"))
}

/// Marks a response that carries an order's data as never to be stored by a cache.
pub(crate) fn no_store(mut response: HttpResponse) -> HttpResponse {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
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
    .service(
        web::resource("/weixin/pay/refund/notify")
            .app_data(web::PayloadConfig::new(notify::MAX_NOTIFY_BYTES))
            .route(web::post().to(notify::receive_refund)),
    )
    .service(
        web::resource("/weixin/pay/v3/notify")
            .app_data(web::PayloadConfig::new(notify::MAX_NOTIFY_BYTES))
            .route(web::post().to(notify::receive_v3)),
    )
    .route("/", web::get().to(shop::catalogue))
    .route("/orders", web::post().to(shop::place_order))
    .route(
        "/orders/{out_trade_no}",
        web::get().to(receipt::receipt_page),
    )
    .route("/cart", web::get().to(cart::cart_page))
    .route("/cart", web::post().to(cart::add))
    .route("/cart/update", web::post().to(cart::update))
    .route("/checkout", web::get().to(cart::checkout_page))
    .route("/checkout", web::post().to(cart::checkout))
    .route("/pay/{out_trade_no}", web::get().to(pay::pay_page))
    .route("/pay/{out_trade_no}/events", web::get().to(events::events))
    .route("/pay/{out_trade_no}/cancel", web::post().to(pay::cancel))
    .route("/pay/{out_trade_no}/again", web::post().to(pay::buy_again))
    .route("/pay/{out_trade_no}/h5", web::get().to(phone::pay_h5))
    .route(
        "/pay/{out_trade_no}/wechat",
        web::get().to(phone::oauth_start),
    )
    .route(
        "/pay/{out_trade_no}/wechat/back",
        web::get().to(phone::oauth_back),
    )
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
    .configure(admin::routes)
    // Any other URL: the shop's own 404 page (routes that answer JSON give their own 404s).
    .default_service(web::to(no_such_page));
}

async fn no_such_page() -> Result<HttpResponse, WebError> {
    Err(WebError::NoSuchPage)
}

/// The operations routes, served on `OPS_LISTEN_ADDR` — not on the public shop port, where they
/// would show order volumes and count an attacker's rejected forgeries to anyone.
pub fn ops_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(ops::healthz))
        .route("/metrics", web::get().to(ops::metrics));
}
