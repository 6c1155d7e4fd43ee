//! Shared test helpers: settings for a fresh server on a free port with its own database.

use std::collections::HashMap;

use tempfile::TempDir;
use wxpay_checkout::config::Settings;
use wxpay_checkout::rt::AppRuntime;

/// The interval of the jobs `TestApp::reconciler` makes: runs meant to query an order again are
/// this far apart.
pub const JOB_INTERVAL: chrono::Duration = chrono::Duration::seconds(10);

/// A fresh database for one test: an SQLite file in `dir`, or — with `TEST_DATABASE=postgres`
/// — a new database in the PostgreSQL cluster at `TEST_POSTGRES_URL`.
pub async fn database_url(dir: &TempDir) -> String {
    if std::env::var("TEST_DATABASE").as_deref() != Ok("postgres") {
        return format!("sqlite://{}/checkout.db", dir.path().display());
    }
    let cluster = std::env::var("TEST_POSTGRES_URL")
        .expect("TEST_DATABASE=postgres needs TEST_POSTGRES_URL (scripts/throwaway-postgres)");
    let name = format!(
        "e2e_{}",
        wxpay_checkout::wxpay::nonce_str().to_ascii_lowercase()
    );
    let admin = sqlx::PgPool::connect(&cluster).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let base = cluster
        .rsplit_once('/')
        .map_or(cluster.as_str(), |(b, _)| b);
    format!("{base}/{name}")
}

/// Whether this run's databases are PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("TEST_DATABASE").as_deref() == Ok("postgres")
}

/// A raw connection to a test database, whichever kind, for set-ups and assertions.
pub async fn raw_pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(url).await.unwrap()
}

/// Settings for a server on a free loopback port with a fresh SQLite file in `dir`, plus any
/// `overrides` (environment variable names as in the README's configuration table).
pub fn settings(dir: &TempDir, overrides: &[(&str, &str)]) -> Settings {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("LISTEN_ADDR".into(), "127.0.0.1:0".into()),
        ("SANDBOX_LISTEN_ADDR".into(), "127.0.0.1:0".into()),
        ("SANDBOX_TLS_LISTEN_ADDR".into(), "127.0.0.1:0".into()),
        ("OPS_LISTEN_ADDR".into(), "127.0.0.1:0".into()),
        (
            "DATABASE_URL".into(),
            format!("sqlite://{}/checkout.db", dir.path().display()),
        ),
    ]);
    for (k, v) in overrides {
        vars.insert(k.to_string(), v.to_string());
    }
    Settings::from_lookup(|name| vars.get(name).cloned()).expect("test settings are valid")
}

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use url::Url;
use wxpay_checkout::config::{SANDBOX_APPID, SANDBOX_KEY, SANDBOX_MCH_ID};
use wxpay_checkout::sandbox::{
    SandboxConfig, SandboxCredentials, SandboxHandle, SandboxServer, V3Credentials,
};
use wxpay_checkout::wxpay::refund::RefundQueryResponse;
use wxpay_checkout::wxpay::types::{Trade, UnifiedOrderRequest};
use wxpay_checkout::wxpay::{
    xml, Client, ClientConfig, Fields, Merchant, RefundStatus, RetryPolicy, SecApi, SignType,
};

/// The demo merchant both sides use in sandbox mode.
pub fn demo_merchant() -> Merchant {
    Merchant {
        appid: SANDBOX_APPID.into(),
        mch_id: SANDBOX_MCH_ID.into(),
        key: SANDBOX_KEY.to_string().into(),
    }
}

/// A standalone sandbox on a free port, stopped when dropped.
pub struct TestSandbox {
    pub base: Url,
    handle: SandboxHandle,
    pub http: reqwest::Client,
    /// With a TLS listener: its base URL and the CA and merchant certificate to reach it.
    pub tls: Option<(Url, SandboxCredentials)>,
    /// What a merchant needs for the v3 API.
    pub v3: V3Credentials,
}

impl TestSandbox {
    /// Starts a sandbox with the demo merchant and the notify schedule in milliseconds.
    pub fn start() -> TestSandbox {
        Self::start_with(|_| {})
    }

    pub fn start_with(adjust: impl FnOnce(&mut SandboxConfig)) -> TestSandbox {
        Self::launch(false, adjust)
    }

    /// Like [`TestSandbox::start_with`], with a TLS listener for `/secapi/` too.
    pub fn start_tls_with(adjust: impl FnOnce(&mut SandboxConfig)) -> TestSandbox {
        Self::launch(true, adjust)
    }

    fn launch(tls: bool, adjust: impl FnOnce(&mut SandboxConfig)) -> TestSandbox {
        let mut config = SandboxConfig::new(demo_merchant());
        config.time_scale = 0.001;
        config.notify_timeout = Duration::from_secs(2);
        config.controls = true;
        adjust(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let rt = AppRuntime::current();
        let server = if tls {
            let tls_listener = TcpListener::bind("127.0.0.1:0").unwrap();
            SandboxServer::start_with_tls(listener, tls_listener, config, &rt).unwrap()
        } else {
            SandboxServer::start(listener, config, &rt).unwrap()
        };
        let base = server.base_url();
        let tls = server.tls_base_url().zip(server.credentials().cloned());
        let v3 = server.v3_credentials();
        let handle = server.handle();
        tokio::spawn(server.run());
        TestSandbox {
            base,
            handle,
            http: reqwest::Client::new(),
            tls,
            v3,
        }
    }

    pub fn url(&self, path: &str) -> Url {
        self.base.join(path).unwrap()
    }

    /// POSTs a raw body to an API path and decodes the XML answer.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> Fields {
        let response = self
            .http
            .post(self.url(path))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        xml::decode(&response.bytes().await.unwrap()).unwrap()
    }

    pub async fn json(&self, path: &str) -> serde_json::Value {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The shopper pays (`outcome` "success" or "fail") through the JSON form of the pay route.
    pub async fn pay(&self, code_url: &str, outcome: &str) -> (u16, serde_json::Value) {
        let response = self
            .http
            .post(self.url("sandbox/pay"))
            .json(&serde_json::json!({ "code_url": code_url, "outcome": outcome }))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    pub async fn set_faults(&self, faults: serde_json::Value) {
        let response = self
            .http
            .put(self.url("sandbox/faults"))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    pub async fn advance_clock(&self, secs: i64) {
        let response = self
            .http
            .post(self.url("sandbox/clock"))
            .json(&serde_json::json!({ "advance_secs": secs }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    /// The crate's client, with the merchant certificate for the sandbox's TLS listener
    /// (started with [`TestSandbox::start_tls_with`]), trying each call once.
    pub fn tls_client_with(&self, sign_type: SignType, timeout: Duration) -> Client {
        let (tls_base, credentials) = self.tls.clone().expect("a sandbox with TLS");
        let mut config = ClientConfig::new(self.base.clone(), demo_merchant(), sign_type);
        config.timeout = timeout;
        config.retry = RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        };
        config.extra_root_pem = Some(credentials.ca_pem);
        config.secapi = Some(SecApi {
            base_url: tls_base,
            cert: credentials.merchant,
        });
        Client::new(config, &AppRuntime::current()).unwrap()
    }

    /// [`TestSandbox::tls_client_with`] MD5 and a 5 s timeout.
    pub fn tls_client(&self) -> Client {
        self.tls_client_with(SignType::Md5, Duration::from_secs(5))
    }

    /// Places an order of `total_fee` fen and pays it as the shopper, through the sandbox's own
    /// HTTP API; returns the transaction_id.
    pub async fn paid_order(&self, client: &Client, no: &str, total_fee: i64) -> String {
        let prepay = client
            .unified_order(&native_order(no, total_fee))
            .await
            .unwrap();
        let (status, paid) = self
            .pay(prepay.code_url.as_deref().unwrap(), "success")
            .await;
        assert_eq!(status, 200, "{paid}");
        paid["transaction_id"].as_str().unwrap().to_owned()
    }
}

/// The order's refunds once none is `PROCESSING` any more (within 10 s).
pub async fn settled_refunds(client: &Client, no: &str) -> RefundQueryResponse {
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = client.refund_query(no).await.unwrap();
        if answer
            .refunds
            .iter()
            .all(|r| r.status != RefundStatus::Processing)
        {
            return answer;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "still processing: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A Native order of `total_fee` fen whose notifies go nowhere (port 9, the discard port).
pub fn native_order(no: &str, total_fee: i64) -> UnifiedOrderRequest {
    UnifiedOrderRequest {
        body: "龙井茶".into(),
        out_trade_no: no.into(),
        total_fee,
        spbill_create_ip: "127.0.0.1".into(),
        notify_url: "http://127.0.0.1:9/weixin/pay/notify/url".into(),
        trade: Trade::Native {
            product_id: "1".into(),
        },
        attach: None,
        time_start: None,
        time_expire: None,
    }
}

impl Drop for TestSandbox {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        tokio::spawn(async move { handle.stop().await });
    }
}

/// A signature computed independently of the crate's signing code, straight from the
/// documented algorithm.
pub fn independent_sign(pairs: &[(&str, &str)], key: &str, hmac: bool) -> String {
    let mut sorted: Vec<_> = pairs
        .iter()
        .filter(|(k, v)| *k != "sign" && !v.is_empty())
        .collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut text = sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    text.push_str("&key=");
    text.push_str(key);
    if hmac {
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(text.as_bytes());
        hex::encode_upper(mac.finalize().into_bytes())
    } else {
        hex::encode_upper(Md5::digest(text.as_bytes()))
    }
}

/// XML written by hand (not by the crate's encoder): every value in CDATA.
pub fn hand_xml(pairs: &[(&str, &str)]) -> String {
    let mut doc = String::from("<xml>\n");
    for (k, v) in pairs {
        doc.push_str(&format!("  <{k}><![CDATA[{v}]]></{k}>\n"));
    }
    doc.push_str("</xml>");
    doc
}

/// Hand-built XML for `pairs` plus a `sign` computed independently.
pub fn hand_signed(pairs: &[(&str, &str)], key: &str, hmac: bool) -> String {
    let signature = independent_sign(pairs, key, hmac);
    let mut all = pairs.to_vec();
    all.push(("sign", &signature));
    hand_xml(&all)
}

/// Checks an answer's signature independently of the crate.
pub fn independently_verified(answer: &Fields, key: &str, hmac: bool) -> bool {
    let pairs: Vec<(&str, &str)> = answer
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    answer.get("sign").map(String::as_str) == Some(independent_sign(&pairs, key, hmac).as_str())
}

/// A merchant's notify endpoint for tests: records every delivery and answers FAIL to the
/// first `fail_first` of them, SUCCESS afterwards.
#[derive(Clone)]
pub struct NotifyReceiver {
    pub url: Url,
    pub deliveries: Arc<Mutex<Vec<Fields>>>,
}

impl NotifyReceiver {
    pub fn start(fail_first: usize) -> NotifyReceiver {
        Self::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), fail_first)
    }

    pub fn start_on(listener: TcpListener, fail_first: usize) -> NotifyReceiver {
        let url = Url::parse(&format!(
            "http://{}/weixin/pay/notify/url",
            listener.local_addr().unwrap()
        ))
        .unwrap();
        let deliveries: Arc<Mutex<Vec<Fields>>> = Arc::default();
        let recorded = deliveries.clone();
        let server = HttpServer::new(move || {
            let recorded = recorded.clone();
            App::new().route(
                "/weixin/pay/notify/url",
                web::post().to(move |body: web::Bytes| {
                    let recorded = recorded.clone();
                    async move {
                        let fields = xml::decode(&body).expect("the sandbox sends valid XML");
                        let n = {
                            let mut all = recorded.lock().unwrap();
                            all.push(fields);
                            all.len()
                        };
                        let code = if n <= fail_first { "FAIL" } else { "SUCCESS" };
                        HttpResponse::Ok().content_type("text/xml").body(format!(
                            "<xml><return_code><![CDATA[{code}]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"
                        ))
                    }
                }),
            )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        NotifyReceiver { url, deliveries }
    }

    pub fn count(&self) -> usize {
        self.deliveries.lock().unwrap().len()
    }

    pub fn all(&self) -> Vec<Fields> {
        self.deliveries.lock().unwrap().clone()
    }
}

/// Polls `condition` every 10 ms until it holds or `deadline` passes.
pub async fn wait_until(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

use wxpay_checkout::startup::Application;

/// The real shop on a free port with a fresh SQLite file and the built-in sandbox (notify
/// schedule in milliseconds), plus a raw connection to its database for assertions.
pub struct TestApp {
    pub addr: std::net::SocketAddr,
    /// Where `/healthz` and `/metrics` are served.
    pub ops: std::net::SocketAddr,
    pub sandbox: Url,
    /// Follows no redirects, so tests see the 303s.
    pub http: reqwest::Client,
    pub db: sqlx::AnyPool,
    pub database_url: String,
    _dir: TempDir,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(&[]).await
    }

    pub async fn spawn_with(overrides: &[(&str, &str)]) -> TestApp {
        let dir = TempDir::new().unwrap();
        let database_url = match overrides.iter().find(|(name, _)| *name == "DATABASE_URL") {
            Some((_, url)) => url.to_string(),
            None => database_url(&dir).await,
        };
        // The app's own job stays out of the way: tests drive reconciliation themselves.
        let mut vars = vec![
            ("SANDBOX_TIME_SCALE", "0.001"),
            ("SANDBOX_CONTROLS", "1"),
            // Every test shopper is 127.0.0.1: per-client limits only where a test asks.
            ("PENDING_ORDERS_PER_CLIENT", "0"),
            ("ORDER_RATE_PER_MINUTE", "0"),
            ("RECONCILE_INTERVAL_SECS", "3600"),
            ("DATABASE_URL", database_url.as_str()),
            ("ADMIN_PASSWORD_HASH", admin_password_hash()),
        ];
        vars.extend_from_slice(overrides);
        let app = Application::build(&settings(&dir, &vars)).await.unwrap();
        let addr = app.addr();
        let ops = app.ops_addr();
        let sandbox = app.api_base().clone();
        tokio::spawn(app.run());
        let db = raw_pool(&database_url).await;
        TestApp {
            addr,
            ops,
            sandbox,
            http: no_redirects(),
            db,
            database_url,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// GET an operations path (`/healthz`, `/metrics`).
    pub async fn ops_get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("http://{}{}", self.ops, path))
            .send()
            .await
            .unwrap()
    }

    pub fn sandbox_url(&self, path: &str) -> Url {
        self.sandbox.join(path).unwrap()
    }

    /// Places an order through the buy form, with a buyer's contact; the response as it came
    /// (a 303 when it worked).
    pub async fn buy(&self, sku_id: &str, num: &str) -> reqwest::Response {
        self.http
            .post(self.url("/orders"))
            .form(&buy_form(sku_id, num))
            .send()
            .await
            .unwrap()
    }

    /// POSTs a bare buy form (a product and a quantity, no contact).
    pub async fn buy_bare(&self, sku_id: &str, num: &str) -> reqwest::Response {
        self.http
            .post(self.url("/orders"))
            .form(&[("sku_id", sku_id), ("num", num)])
            .send()
            .await
            .unwrap()
    }

    /// Places an order and returns its number.
    pub async fn place_order(&self, sku_id: i64, num: i64) -> String {
        let response = self.buy(&sku_id.to_string(), &num.to_string()).await;
        assert_eq!(response.status(), 303);
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        location.strip_prefix("/pay/").unwrap().to_owned()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    /// The order's status JSON (`data` of the seed Result).
    pub async fn status(&self, no: &str) -> serde_json::Value {
        let body: serde_json::Value = self
            .get(&format!("/weixin/pay/status/query?out_trade_no={no}"))
            .await
            .json()
            .await
            .unwrap();
        body["data"].clone()
    }

    /// What the sandbox holds of an order.
    pub async fn sandbox_order(&self, no: &str) -> serde_json::Value {
        self.http
            .get(self.sandbox_url(&format!("sandbox/orders/{no}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn sandbox_stats(&self) -> serde_json::Value {
        self.http
            .get(self.sandbox_url("sandbox/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Moves the sandbox's clock forward (its 5-minute close rule, the H5 page's life).
    pub async fn advance_sandbox_clock(&self, secs: i64) {
        let response = self
            .http
            .post(self.sandbox_url("sandbox/clock"))
            .json(&serde_json::json!({ "advance_secs": secs }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    pub async fn set_faults(&self, faults: serde_json::Value) {
        let response = self
            .http
            .put(self.sandbox_url("sandbox/faults"))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    /// Pays an order's code_url in the sandbox as the shopper.
    pub async fn pay_in_sandbox(&self, code_url: &str) -> serde_json::Value {
        self.pay_in_sandbox_as(code_url, "success").await
    }

    /// The shopper's action on the phone: `outcome` is `success` or `fail` (declined).
    pub async fn pay_in_sandbox_as(&self, code_url: &str, outcome: &str) -> serde_json::Value {
        self.http
            .post(self.sandbox_url("sandbox/pay"))
            .json(&serde_json::json!({ "code_url": code_url, "outcome": outcome }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Opens the pay page (placing the unifiedorder) and returns the order's code_url as the
    /// sandbox knows it.
    pub async fn open_pay_page(&self, no: &str) -> String {
        let page = self.get(&format!("/pay/{no}")).await;
        assert_eq!(page.status(), 200);
        self.sandbox_order(no).await["code_url"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn stock(&self, product_id: i64) -> i64 {
        sqlx::query_scalar("SELECT stock FROM products WHERE id = $1")
            .bind(product_id)
            .fetch_one(&self.db)
            .await
            .unwrap()
    }

    pub async fn order_row(&self, no: &str) -> (String, Option<String>, Option<i64>) {
        sqlx::query_as(
            "SELECT status, transaction_id, pay_time FROM orders WHERE out_trade_no = $1",
        )
        .bind(no)
        .fetch_one(&self.db)
        .await
        .unwrap()
    }

    /// Polls the order's stored status until it is `want`.
    pub async fn wait_for_status(&self, no: &str, want: &str, deadline: Duration) -> bool {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            if self.order_row(no).await.0 == want {
                return true;
            }
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

use wxpay_checkout::checkout::reconcile::Reconciler;

impl TestApp {
    /// A reconciliation job of its own over the shop's database and sandbox — a second
    /// instance, as another replica would run, with its own checkout service and payments
    /// consumer — run by hand with `run_once(now)`; an order it queried is due again
    /// [`JOB_INTERVAL`] later.
    pub async fn reconciler(&self, max_attempts: u32) -> Reconciler {
        self.reconciler_with(Some(max_attempts)).await
    }

    /// The same job with `RECONCILE_MAX_ATTEMPTS` as given (`None`: unset, the default).
    pub async fn reconciler_with(&self, max_attempts: Option<u32>) -> Reconciler {
        self.reconciler_as(demo_merchant(), max_attempts).await
    }

    /// The same job calling WeChat as `merchant` (a misconfigured one, say).
    pub async fn reconciler_as(&self, merchant: Merchant, max_attempts: Option<u32>) -> Reconciler {
        let terms = test_terms(JOB_INTERVAL.to_std().unwrap(), max_attempts);
        self.reconciler_on(merchant, terms).await
    }

    /// The same job under `terms`.
    pub async fn reconciler_on(
        &self,
        merchant: Merchant,
        terms: wxpay_checkout::checkout::Terms,
    ) -> Reconciler {
        Reconciler::new(self.checkout_on(merchant, terms).await)
    }

    /// A checkout service of its own over the shop's database and sandbox (another replica's).
    pub async fn checkout_on(
        &self,
        merchant: Merchant,
        terms: wxpay_checkout::checkout::Terms,
    ) -> wxpay_checkout::checkout::Checkout {
        let wechat = wxpay_checkout::wxpay::Client::new(
            wxpay_checkout::wxpay::ClientConfig::new(
                self.sandbox.clone(),
                merchant,
                wxpay_checkout::wxpay::SignType::Md5,
            ),
            &AppRuntime::current(),
        )
        .unwrap();
        self.checkout_through(wechat.into(), terms).await
    }

    /// A checkout service of its own over the shop's database, reaching WeChat through `wechat`.
    pub async fn checkout_through(
        &self,
        wechat: wxpay_checkout::checkout::Gateway,
        terms: wxpay_checkout::checkout::Terms,
    ) -> wxpay_checkout::checkout::Checkout {
        let rt = AppRuntime::current();
        let store = wxpay_checkout::store::Store::connect(&self.database_url, &rt)
            .await
            .unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let (checkout, _background) =
            wxpay_checkout::checkout::Checkout::start(store, wechat, terms, &rt, &shutdown);
        checkout
    }

    /// When the order was created.
    pub async fn created_at(&self, no: &str) -> chrono::DateTime<chrono::Utc> {
        let secs: i64 = sqlx::query_scalar("SELECT created_at FROM orders WHERE out_trade_no = $1")
            .bind(no)
            .fetch_one(&self.db)
            .await
            .unwrap();
        chrono::DateTime::from_timestamp(secs, 0).unwrap()
    }
}

/// The merchant console's password in every `TestApp`.
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

/// [`ADMIN_PASSWORD`]'s argon2 hash, made once per test run.
pub fn admin_password_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| wxpay_checkout::console::hash_password(ADMIN_PASSWORD).unwrap())
}

/// A buyer's contact that passes the default `CHECKOUT_FIELDS` (name, phone, address).
pub const CONTACT: [(&str, &str); 3] = [
    ("name", "王小明"),
    ("phone", "+86 138 0013 8000"),
    ("address", "浙江省杭州市西湖区龙井路 1 号"),
];

/// The direct buy's form: a product, a quantity and [`CONTACT`].
pub fn buy_form(sku_id: &str, num: &str) -> Vec<(&'static str, String)> {
    let mut form = vec![("sku_id", sku_id.to_owned()), ("num", num.to_owned())];
    form.extend(CONTACT.iter().map(|(k, v)| (*k, (*v).to_owned())));
    form
}

/// A browser's HTTP client: keeps cookies (the cart, the receipt's, the console's session) and
/// follows no redirects, so tests see each 303.
pub fn cookie_browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The success page of a paid order as `http` (the buyer's browser) sees it, once the shop's own
/// view has caught up with the database (its order cache is invalidated just after the commit
/// a test may already see), within 10 s.
pub async fn success_page(app: &TestApp, http: &reqwest::Client, no: &str) -> String {
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let response = http
            .get(app.url(&format!("/pay/{no}/success")))
            .send()
            .await
            .unwrap();
        let status = response.status();
        if status == 200 {
            return response.text().await.unwrap();
        }
        assert!(tokio::time::Instant::now() < until, "status {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An HTTP client that follows no redirects, so tests see the 303s.
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Places an order for one unit of `sku` at the shop on `base`; returns its pay page path
/// (`/pay/{out_trade_no}`).
pub async fn place_order_at(http: &reqwest::Client, base: &str, sku: &str) -> String {
    let placed = http
        .post(format!("{base}/orders"))
        .form(&buy_form(sku, "1"))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), 303);
    placed.headers()["location"].to_str().unwrap().to_owned()
}

/// Pays order `no` through the sandbox at `sandbox` (its base URL, ending in `/`), by the
/// code_url the sandbox holds for it; returns the sandbox's answer (transaction_id, total_fee…).
pub async fn pay_at_sandbox(http: &reqwest::Client, sandbox: &str, no: &str) -> serde_json::Value {
    let order: serde_json::Value = http
        .get(format!("{sandbox}sandbox/orders/{no}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    http.post(format!("{sandbox}sandbox/pay"))
        .json(&serde_json::json!({ "code_url": order["code_url"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Asks a child process to stop, as a container runtime does (SIGTERM).
pub fn sigterm(child: &std::process::Child) {
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Polls a `SELECT COUNT(*) …` until it is zero, failing after `deadline`.
pub async fn wait_for_zero(db: &sqlx::AnyPool, count_sql: &str, deadline: Duration) {
    wait_for_count(db, count_sql, 0, deadline).await;
}

/// Polls a `SELECT COUNT(*) …` until it is `want`, failing after `deadline`.
pub async fn wait_for_count(db: &sqlx::AnyPool, count_sql: &str, want: i64, deadline: Duration) {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let count: i64 = sqlx::query_scalar(count_sql).fetch_one(db).await.unwrap();
        if count == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "still {count} after {deadline:?}: {count_sql}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A checkout's terms for a service a test builds itself.
pub fn test_terms(
    reconcile_interval: Duration,
    reconcile_max_attempts: Option<u32>,
) -> wxpay_checkout::checkout::Terms {
    wxpay_checkout::checkout::Terms {
        shop_name: "茶舍 Tea House".into(),
        icp_beian: None,
        shop_contact: None,
        notify_alarm: Default::default(),
        refund_notify_url: "http://127.0.0.1:9/weixin/pay/refund/notify"
            .parse()
            .unwrap(),
        auto_refund_late_payments: false,
        notify_url: "http://127.0.0.1:9/weixin/pay/notify/url".parse().unwrap(),
        spbill_create_ip: "127.0.0.1".into(),
        order_ttl: Duration::from_secs(600),
        reconcile_interval,
        bill_fetch_at: chrono::NaiveTime::from_hms_opt(10, 30, 0).unwrap(),
        reconcile_max_attempts,
        pending_per_client: 0,
        order_rate_per_minute: 0,
        checkout_fields: Vec::new(),
        outbox: Default::default(),
        privacy: Default::default(),
        push: Default::default(),
        phones: wxpay_checkout::checkout::PhoneTerms {
            h5: false,
            oauth: None,
            public_base_url: "http://127.0.0.1:9/".parse().unwrap(),
        },
    }
}
