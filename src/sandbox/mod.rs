//! A WeChat Pay v2 sandbox for Native, H5 and JSAPI payment, faithful enough that a third-party
//! SDK pointed at its base URL works unchanged: the same paths, the same validation order and answers, signed
//! XML, WeChat's code_url form, the notify with WeChat's retry schedule, and refunds — the
//! `/secapi/pay/refund` call over TLS with the merchant's client certificate (see
//! [`SandboxServer::start_with_tls`]; on the plain listener it is refused), refunds that settle
//! [`REFUND_SETTLE_SECS`] later, their encrypted refund notify on the same schedule,
//! `/pay/refundquery`, and `/pay/downloadbill`: a day's bill made from its own trades and
//! refunds in WeChat's text format (plain or GZIP). It is the server side of [`crate::wxpay`];
//! of the rest of this crate it uses only [`crate::rt`] (its notify deliveries and refund
//! settlements run on the application runtime) and [`crate::domain::Fen`] (amounts on the scan
//! page and in the bill).
//!
//! Answers follow WeChat's two levels. Anything that fails before the caller is authenticated
//! (not POST, empty body, bad XML, not UTF-8, unknown merchant, bad or missing signature) gets
//! `return_code=FAIL` with a `return_msg` and no `sign` — the caller's key is not trusted yet —
//! and so do parameters WeChat rejects before any business processing (a missing field, a
//! malformed value, a product the merchant has not opened). Business answers are signed with the
//! request's sign type and carry `result_code` and, on failure, `err_code` (`INVALID_REQUEST`,
//! `ORDERPAID`, `ORDERNOTEXIST`, `NOTENOUGH`, …). The bill is the exception WeChat makes: its
//! answer is the table itself, unsigned, and its refusals are unsigned XML with an `error_code`
//! (`No Bill Exist` 20002, `invalid bill_date` 20001, …).
//!
//! One departure from WeChat, on purpose: WeChat makes a day's bill from about 09:00 the next
//! day, while the sandbox serves today's bill too, as it stands at the moment of the request, so
//! demos and tests need not wait a day.
//!
//! State is in memory and bounded (`max_orders`); a restart forgets every order and refund, and
//! refunds still settling are cancelled with the notify deliveries on shutdown.
//!
//! Beside Native it takes H5 (`MWEB`) and JSAPI orders, and stands in for what WeChat puts
//! around them: the page `mweb_url` opens (WeChat's H5 cashier), the official account's
//! `snsapi_base` OAuth at WeChat's paths (the JSAPI payer's openid), and a `WeixinJSBridge` a
//! shop's page loads as a script (the WeChat browser's own bridge, which no other browser has).
//!
//! It also speaks API v3 (JSON, RSA signatures, sealed notifies) for Native, refunds and the
//! trade bill, on the same book of orders (see [`v3`]).
//!
//! Beyond WeChat's own paths it serves the shopper's phone and a few controls for tests.
//!
//! # Routes
//!
//! WeChat Pay's API (XML): `POST /pay/unifiedorder`, `/pay/orderquery`, `/pay/closeorder`,
//! `/pay/refundquery`, `/pay/downloadbill`; `/secapi/pay/refund` (TLS listener only).
//!
//! WeChat Pay's API v3 (JSON, plain listener): `POST /v3/pay/transactions/native`,
//! `GET /v3/pay/transactions/out-trade-no/{no}`, `POST …/{no}/close`,
//! `POST /v3/refund/domestic/refunds`, `GET /v3/refund/domestic/refunds/{no}`,
//! `GET /v3/bill/tradebill` and its `GET /v3/billdownload/file`.
//!
//! The official account's OAuth, at WeChat's paths (on the same listener):
//! - `GET /connect/oauth2/authorize?appid&redirect_uri&response_type=code&scope&state`: `302`
//!   to `redirect_uri` with `code` and `state`. The shopper is the browser: a `sbx_wxuser`
//!   cookie set on the first visit, so one browser keeps one openid (see `oauth.rs`).
//! - `GET /sns/oauth2/access_token?appid&secret&code&grant_type=authorization_code`: JSON,
//!   the openid or WeChat's `errcode` (40013, 40125, 40029, 40163, 40002, …).
//!
//! The shopper's phone:
//! - `GET /scan?code_url=…`, `GET /scan/cancel`: the Native scan page.
//! - `POST /sandbox/pay` (form or JSON; `code_url` or `prepay_id`, `outcome`, `coupon_fee`):
//!   pays an order of any trade type.
//! - `GET /sandbox/mweb?prepay_id&package&redirect_url`: the page `mweb_url` opens (valid
//!   [`MWEB_URL_VALIDITY`]); `POST /sandbox/mweb/pay` and `/sandbox/mweb/cancel` (form:
//!   `prepay_id`, `package`, `redirect_url`): pay or not, then `303` to `redirect_url`.
//! - `GET /sandbox/jsbridge.js`: the `WeixinJSBridge` stand-in; `POST /sandbox/jsapi/check` and
//!   `/sandbox/jsapi/pay` (the `getBrandWCPayRequest` parameters as JSON): what it calls.
//!
//! Controls (with `controls`): `/sandbox/faults`, `/sandbox/clock`, `/sandbox/stats`,
//! `/sandbox/orders/{out_trade_no}`, `/sandbox/orders/{out_trade_no}/trade_state`,
//! `/sandbox/payments`, `/sandbox/refund`.
//!
//! # Layout
//!
//! `api.rs` authenticates a call and answers unifiedorder, closeorder and the queries;
//! `refunds.rs` the refund call and the settlement after it; `bill.rs` the day's bill;
//! `delivery.rs` the shopper's payment and every notify delivery; `h5.rs` the H5 page;
//! `oauth.rs` the official account's OAuth and the openids it issues; `jsbridge.rs` (and
//! `jsbridge.js`) the bridge; `state.rs` what is remembered; `faults.rs` what goes wrong on
//! purpose; `http.rs` the routes; `tls.rs` the CA and certificates; `v3/` API v3 (its keys,
//! routes, calls and notifies).

mod api;
mod bill;
mod delivery;
pub mod faults;
mod h5;
mod http;
mod jsbridge;
mod oauth;
mod refunds;
mod state;
pub mod tls;
pub mod v3;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use secrecy::SecretString;

use crate::rt::AppRuntime;
use crate::wxpay::Merchant;
pub use faults::Faults;
pub use state::PREPAY_VALIDITY;
pub use tls::SandboxCredentials;
pub use v3::{V3Credentials, V3Keys};

/// WeChat's notify retry schedule after a failed delivery (current documentation): 15 retries,
/// 24 h 4 min in all.
pub const NOTIFY_RETRY_SCHEDULE_SECS: [u64; 15] = [
    15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
];

/// How long an accepted refund stays `PROCESSING` before it settles (scaled by `time_scale`).
/// WeChat takes from seconds (to the payer's balance) to days (to a bank card); a minute keeps
/// the shop's wait for the notify or query honest without slowing a demo.
pub const REFUND_SETTLE_SECS: u64 = 60;

/// How long an H5 `mweb_url` opens the payment page, as WeChat's (on the sandbox's clock).
pub const MWEB_URL_VALIDITY: chrono::Duration = chrono::Duration::minutes(5);

/// How long an OAuth `code` may be traded for the openid, once, as WeChat's.
pub const OAUTH_CODE_VALIDITY: chrono::Duration = chrono::Duration::minutes(5);

/// The most H5 tickets and OAuth codes held (each); the oldest are forgotten beyond this.
pub const MAX_PHONE_TOKENS: usize = 10_000;

/// The official account's AppSecret the sandbox accepts unless told otherwise. Not a secret:
/// like the demo merchant key, it is published so a demo works out of the box, and it opens
/// nothing but this sandbox.
pub const DEMO_MP_APPSECRET: &str = "5a4e1b0c9f3d2e7a8b6c4d2f0e1a3b5c";

/// The APIv3 key (32 characters) the sandbox seals v3 notifies with unless told otherwise:
/// published like the demo merchant key, opening nothing but this sandbox's notifies.
pub const DEMO_APIV3_KEY: &str = "wxpaycheckoutsandboxapiv3key2026";

/// How the sandbox is set up.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The one merchant the sandbox knows.
    pub merchant: Merchant,
    /// Shown to the shopper on the scan page.
    pub merchant_name: String,
    /// Multiplies every wait of the notify schedule and the refund settlement: `0.001` turns
    /// 15 s into 15 ms.
    pub time_scale: f64,
    pub faults: Faults,
    /// Orders remembered; the oldest are forgotten beyond this.
    pub max_orders: usize,
    /// How long one notify delivery may take before it counts as failed.
    pub notify_timeout: Duration,
    /// Whether the test controls are served (`/sandbox/faults`, `/sandbox/clock`,
    /// `/sandbox/stats`, `/sandbox/orders/…`, `/sandbox/payments`, `/sandbox/refund`).
    pub controls: bool,
    /// The one notify URL orders may give (the built-in sandbox's shop): a sandbox must not be
    /// a relay for signed POSTs to anywhere. `None`: any (the standalone sandbox, a dev tool).
    pub notify_only: Option<url::Url>,
    /// The one `notify_url` refunds may give (the built-in sandbox's shop's refund notify
    /// URL), for the same reason. `None`: any.
    pub refund_notify_only: Option<url::Url>,
    /// The official account's AppSecret `/sns/oauth2/access_token` requires (the account is the
    /// merchant's `appid`).
    pub mp_appsecret: SecretString,
    /// The merchant's APIv3 key (32 characters): seals v3 notifies' resources.
    pub apiv3_key: SecretString,
    /// WeChat Pay's and the merchant's v3 keys. Given, the merchant's is also the key of the
    /// TLS client certificate (one API certificate for both APIs, as WeChat's; the standalone
    /// sandbox always gives them). `None`: the set made once per process ([`V3Keys::shared`]),
    /// on the first v3 call — a shop or test that never speaks v3 does not wait for two RSA
    /// keys at each start — and the certificate has a key of its own.
    pub v3_keys: Option<V3Keys>,
}

impl SandboxConfig {
    pub fn new(merchant: Merchant) -> Self {
        SandboxConfig {
            merchant,
            merchant_name: "wxpay-checkout 演示商户".into(),
            time_scale: 1.0,
            faults: Faults::default(),
            max_orders: 100_000,
            notify_timeout: Duration::from_secs(5),
            controls: false,
            notify_only: None,
            refund_notify_only: None,
            mp_appsecret: SecretString::from(DEMO_MP_APPSECRET),
            apiv3_key: SecretString::from(DEMO_APIV3_KEY),
            v3_keys: None,
        }
    }
}

/// Calls received per API, for tests and operators.
#[derive(Debug, Default)]
struct Counters {
    unifiedorder: AtomicU64,
    orderquery: AtomicU64,
    closeorder: AtomicU64,
    refundquery: AtomicU64,
    refund: AtomicU64,
    downloadbill: AtomicU64,
    notify_attempts: AtomicU64,
    refund_notify_attempts: AtomicU64,
    /// Mis-signed probe notifies the shop refused (right) and acknowledged (wrong).
    probe_notifies_refused: AtomicU64,
    probe_notifies_acknowledged: AtomicU64,
    /// v3 calls received, and those refused for their `Authorization` (`SIGN_ERROR`).
    v3_calls: AtomicU64,
    v3_sign_errors: AtomicU64,
}

impl Counters {
    fn calls(&self, endpoint: crate::wxpay::Endpoint) -> &AtomicU64 {
        use crate::wxpay::Endpoint;
        match endpoint {
            Endpoint::UnifiedOrder => &self.unifiedorder,
            Endpoint::OrderQuery => &self.orderquery,
            Endpoint::CloseOrder => &self.closeorder,
            Endpoint::RefundQuery => &self.refundquery,
            Endpoint::Refund => &self.refund,
            Endpoint::DownloadBill => &self.downloadbill,
        }
    }
}

/// The sandbox's shared state.
pub struct Sandbox {
    config: SandboxConfig,
    book: Mutex<state::Book>,
    /// H5 tickets (the `package` of an `mweb_url`) and OAuth codes. Locked after `book` when
    /// both are held, never before.
    tickets: Mutex<state::Bounded<h5::Ticket>>,
    codes: Mutex<state::Bounded<oauth::Code>>,
    /// v3 trade bills made and waiting to be downloaded by their token.
    bill_files: Mutex<state::Bounded<v3::BillFile>>,
    /// The v3 keys and the APIv3 key (which seals v3 notifies).
    v3_keys: OnceLock<V3Keys>,
    apiv3_key: crate::wxpay::v3::ApiV3Key,
    faults: Mutex<Faults>,
    /// Seconds added to the real clock (`POST /sandbox/clock`), to reach expiries in tests.
    clock_offset_secs: AtomicI64,
    counters: Counters,
    notify_http: reqwest::Client,
    /// Notify deliveries and refund settlements in flight; cancelled on shutdown.
    deliveries: TaskTracker,
    /// Where deliveries run and their connections live (see [`crate::rt`]).
    rt: AppRuntime,
    shutdown: CancellationToken,
}

impl Sandbox {
    fn new(config: SandboxConfig, rt: &AppRuntime) -> anyhow::Result<Self> {
        let apiv3_key = crate::wxpay::v3::ApiV3Key::new(&config.apiv3_key)?;
        let v3_keys = OnceLock::new();
        if let Some(keys) = &config.v3_keys {
            v3_keys.get_or_init(|| keys.clone());
        }
        let notify_http = reqwest::Client::builder()
            .timeout(config.notify_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("Mozilla/4.0 (wxpay-checkout sandbox notify)")
            .build()?;
        Ok(Sandbox {
            book: Mutex::new(state::Book::new(config.max_orders)),
            tickets: Mutex::new(state::Bounded::new(MAX_PHONE_TOKENS)),
            codes: Mutex::new(state::Bounded::new(MAX_PHONE_TOKENS)),
            bill_files: Mutex::new(state::Bounded::new(v3::MAX_BILL_FILES)),
            v3_keys,
            apiv3_key,
            faults: Mutex::new(config.faults),
            clock_offset_secs: AtomicI64::new(0),
            counters: Counters::default(),
            notify_http,
            deliveries: TaskTracker::new(),
            rt: rt.clone(),
            shutdown: CancellationToken::new(),
            config,
        })
    }

    /// The sandbox's clock: real time plus any offset set by a test.
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::seconds(self.clock_offset_secs.load(Ordering::Relaxed))
    }

    fn faults(&self) -> Faults {
        *self.faults.lock().expect("faults lock")
    }

    fn book(&self) -> std::sync::MutexGuard<'_, state::Book> {
        self.book.lock().expect("sandbox book lock")
    }

    fn tickets(&self) -> std::sync::MutexGuard<'_, state::Bounded<h5::Ticket>> {
        self.tickets.lock().expect("sandbox tickets lock")
    }

    fn codes(&self) -> std::sync::MutexGuard<'_, state::Bounded<oauth::Code>> {
        self.codes.lock().expect("sandbox codes lock")
    }

    /// The v3 keys: the configured ones, or the process's, made now if they are not yet.
    fn v3_keys(&self) -> &V3Keys {
        self.v3_keys.get_or_init(V3Keys::shared)
    }

    /// The Unix time v3 answers and notifies are signed at: WeChat's clock, which is the real
    /// one unless the `clock_skew_secs` fault puts it off (the sandbox's test clock, moved to
    /// reach expiries, judges requests' timestamps but does not stamp answers).
    fn v3_timestamp(&self) -> i64 {
        Utc::now().timestamp() + self.faults().clock_skew_secs
    }

    /// Whether the browser may be sent to `target` (an H5 `redirect_url`, an OAuth
    /// `redirect_uri`): an absolute http(s) URL and, for the built-in sandbox, on its shop's
    /// origin — a sandbox must not be an open redirect.
    fn redirect_target(&self, target: &str) -> Option<url::Url> {
        let url = url::Url::parse(target).ok()?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return None;
        }
        match &self.config.notify_only {
            Some(shop) if shop.origin() != url.origin() => None,
            _ => Some(url),
        }
    }

    /// A schedule wait scaled by `time_scale`.
    fn scaled(&self, secs: u64) -> Duration {
        Duration::from_secs_f64(secs as f64 * self.config.time_scale)
    }
}

/// A running sandbox.
pub struct SandboxServer {
    addr: SocketAddr,
    /// The TLS listener's address, when there is one.
    tls_addr: Option<SocketAddr>,
    credentials: Option<SandboxCredentials>,
    server: actix_web::dev::Server,
    sandbox: web::Data<Sandbox>,
}

impl SandboxServer {
    /// Starts serving plain HTTP on `listener`; notify deliveries run on `rt`.
    pub fn start(
        listener: TcpListener,
        config: SandboxConfig,
        rt: &AppRuntime,
    ) -> anyhow::Result<SandboxServer> {
        Self::serve(listener, None, config, rt)
    }

    /// Starts serving plain HTTP on `listener` and, on `tls_listener`, TLS that requires the
    /// merchant's client certificate (a CA and the certificates are made now: see
    /// [`SandboxServer::credentials`]). `/secapi/pay/refund` is answered only there; on the plain
    /// listener it is `return_code=FAIL`, as WeChat answers a call without the certificate.
    pub fn start_with_tls(
        listener: TcpListener,
        tls_listener: TcpListener,
        config: SandboxConfig,
        rt: &AppRuntime,
    ) -> anyhow::Result<SandboxServer> {
        Self::serve(listener, Some(tls_listener), config, rt)
    }

    fn serve(
        listener: TcpListener,
        tls_listener: Option<TcpListener>,
        config: SandboxConfig,
        rt: &AppRuntime,
    ) -> anyhow::Result<SandboxServer> {
        let addr = listener.local_addr()?;
        let sandbox = web::Data::new(Sandbox::new(config, rt)?);
        let tls = match &tls_listener {
            Some(l) => Some(tls::SandboxTls::generate(
                &sandbox.config.merchant.mch_id,
                l.local_addr()?.ip(),
                sandbox
                    .config
                    .v3_keys
                    .as_ref()
                    .map(|keys| (keys.merchant_private_pem(), keys.serial_no())),
            )?),
            None => None,
        };
        let tls_addr = tls_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()?;
        let data = sandbox.clone();
        let controls = sandbox.config.controls;
        // Signals are left to the owner, which stops the sandbox through its handle.
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .configure(|cfg| http::routes(cfg, controls))
        })
        .workers(2)
        .disable_signals()
        .listen(listener)?;
        let mut credentials = None;
        if let (Some(tls_listener), Some(tls)) = (tls_listener, tls) {
            server = server.listen_rustls_0_23(tls_listener, tls.server_config)?;
            credentials = Some(tls.credentials);
        }
        Ok(SandboxServer {
            addr,
            tls_addr,
            credentials,
            server: server.run(),
            sandbox,
        })
    }

    /// The TLS listener's base URL (`https://addr/`), where `/secapi/` is served.
    pub fn tls_base_url(&self) -> Option<url::Url> {
        self.tls_addr.map(|addr| {
            url::Url::parse(&format!("https://{addr}/")).expect("a socket address forms a URL")
        })
    }

    /// The sandbox CA and the merchant certificate it issued, with a TLS listener.
    pub fn credentials(&self) -> Option<&SandboxCredentials> {
        self.credentials.as_ref()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the merchant needs to call the v3 API (at [`SandboxServer::base_url`]; no client
    /// certificate): its API key and serial, WeChat Pay's public key and id, the APIv3 key.
    pub fn v3_credentials(&self) -> V3Credentials {
        let keys = self.sandbox.v3_keys();
        let merchant = &self.sandbox.config.merchant;
        V3Credentials {
            appid: merchant.appid.clone(),
            mchid: merchant.mch_id.clone(),
            serial_no: keys.serial_no().to_owned(),
            merchant_private_pem: keys.merchant_private_pem().clone(),
            pay_public_pem: keys.pay_public_pem().to_owned(),
            pay_key_id: keys.pay_key_id().to_owned(),
            apiv3_key: self.sandbox.config.apiv3_key.clone(),
        }
    }

    /// The v3 keys the sandbox uses, to be written beside the certificate
    /// ([`V3Keys::write_to`]).
    pub fn v3_keys(&self) -> &V3Keys {
        self.sandbox.v3_keys()
    }

    /// The base URL clients use (`http://addr/`).
    pub fn base_url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}/", self.addr)).expect("a socket address forms a URL")
    }

    /// A handle that stops the server and its deliveries.
    pub fn handle(&self) -> SandboxHandle {
        SandboxHandle {
            server: self.server.handle(),
            sandbox: self.sandbox.clone(),
        }
    }

    /// Serves until stopped through a [`SandboxHandle`], then waits for deliveries to end.
    pub async fn run(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.sandbox.shutdown.cancel();
        self.sandbox.deliveries.close();
        self.sandbox.deliveries.wait().await;
        result
    }
}

/// Stops a running sandbox.
#[derive(Clone)]
pub struct SandboxHandle {
    server: actix_web::dev::ServerHandle,
    sandbox: web::Data<Sandbox>,
}

impl SandboxHandle {
    pub async fn stop(&self) {
        self.sandbox.shutdown.cancel();
        self.server.stop(true).await;
    }
}
