//! Settings from the environment, exactly as the README's configuration table lists them. A bad value stops
//! start-up with one line naming the variable; the API key is a `SecretString` and no message
//! or `Debug` output ever contains it.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::domain::ContactField;
use crate::sandbox::Faults;
use crate::webhooks::{Secret, Target, TargetKind};
use crate::wxpay::{Merchant, SignType};

/// Demo merchant used on both sides in sandbox mode. Not a secret: it only opens the sandbox.
pub const SANDBOX_APPID: &str = "wx8888888888888888";
pub const SANDBOX_MCH_ID: &str = "1900000109";
pub const SANDBOX_KEY: &str = "8934e7d15453e97507ef794cf7b0519d";
/// The demo official account's AppSecret (JSAPI's OAuth), shared with the sandbox. Not a secret.
pub const SANDBOX_MP_APPSECRET: &str = crate::sandbox::DEMO_MP_APPSECRET;

/// Where payments go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No merchant credentials: the built-in sandbox is started and used.
    Sandbox,
    /// Merchant credentials configured: WeChat Pay (or whatever `WEIXIN_API_BASE` names).
    Live,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything the server needs, read once at start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Mode,
    /// `SHOP_NAME`: on every page and first in WeChat's `body`.
    pub shop_name: String,
    /// `ICP_BEIAN` and `SHOP_CONTACT`: in every page's footer.
    pub footer: Footer,
    pub listen_addr: SocketAddr,
    /// `OPS_LISTEN_ADDR`: `/healthz` and `/metrics`.
    pub ops_listen_addr: SocketAddr,
    pub database_url: String,
    /// `PUBLIC_BASE_URL` when set; see [`Settings::public_base_url`].
    pub public_base_url: Option<Url>,
    pub merchant: Merchant,
    /// `WEIXIN_NOTIFYURL` when set; see [`Settings::notify_url`].
    pub notify_url: Option<Url>,
    /// WeChat Pay's base URL. With `builtin_sandbox` it names the sandbox's configured address;
    /// start-up replaces it with the address actually bound.
    pub api_base: Url,
    /// Paying on a phone: `WEIXIN_H5`, `WEIXIN_MP_APPSECRET` and the OAuth hosts.
    pub phones: PhoneSettings,
    /// Sandbox mode without `WEIXIN_API_BASE`: `serve` starts the built-in sandbox.
    pub builtin_sandbox: bool,
    pub sandbox: SandboxSettings,
    pub sign_type: SignType,
    /// `WEIXIN_API_VERSION`: which of WeChat Pay's APIs the shop speaks.
    pub api_version: ApiVersion,
    /// API v3's credentials (`WEIXIN_APIV3_KEY`, `WEIXIN_MCH_SERIAL`, `WEIXIN_MCH_PRIVATE_KEY`,
    /// `WEIXIN_PAY_PUBLIC_KEY`, `WEIXIN_PAY_PUBLIC_KEY_ID`): set with v3, except in built-in
    /// sandbox mode, where the sandbox hands the shop its own.
    pub v3: Option<V3Settings>,
    pub sandbox_listen_addr: SocketAddr,
    /// `SANDBOX_TLS_LISTEN_ADDR`: the sandbox's TLS listener, which requires the merchant's
    /// client certificate (`/secapi/`).
    pub sandbox_tls_listen_addr: SocketAddr,
    /// `WEIXIN_CERT_P12`, or `WEIXIN_CERT_PEM` + `WEIXIN_KEY_PEM`: the merchant's API client
    /// certificate, needed for refunds. Ignored in built-in sandbox mode (the sandbox issues
    /// its own).
    pub cert_files: Option<CertFiles>,
    /// `WEIXIN_CA_PEM`: a CA trusted for WeChat's servers besides the public roots — only for
    /// a sandbox's own TLS listener.
    pub ca_pem_file: Option<std::path::PathBuf>,
    /// `WEIXIN_REFUND_NOTIFYURL` when set; see [`Settings::refund_notify_url`].
    pub refund_notify_url: Option<Url>,
    /// `AUTO_REFUND_LATE_PAYMENTS`: money WeChat took for an order that could not take it is
    /// refunded in full automatically.
    pub auto_refund_late_payments: bool,
    pub order_ttl: Duration,
    pub reconcile_interval: Duration,
    /// `BILL_FETCH_AT`: when (Beijing time) yesterday's trade bill is fetched and reconciled.
    pub bill_fetch_at: chrono::NaiveTime,
    /// `BACKUP_DIR`, `BACKUP_EVERY`, `BACKUP_KEEP`: scheduled backups of an SQLite database.
    pub backups: Option<BackupSchedule>,
    /// `RECONCILE_MAX_ATTEMPTS`; unset, an unpaid order is closed once its time is up (the
    /// shopper gets the whole `ORDER_TTL_SECS`).
    pub reconcile_max_attempts: Option<u32>,
    /// `REQUEST_BODY_TIMEOUT_SECS`: how long a request body may take to arrive.
    pub request_body_timeout: Duration,
    /// `PENDING_ORDERS_PER_CLIENT` (0: per-client limits off) and `ORDER_RATE_PER_MINUTE`
    /// (0: no rate limit).
    pub pending_per_client: u32,
    pub order_rate_per_minute: u32,
    /// `TRUSTED_PROXIES`: the proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `CATALOGUE_FILE`: a catalogue imported (upserted by sku) at start-up.
    pub catalogue_file: Option<std::path::PathBuf>,
    /// `CHECKOUT_FIELDS`: the contact the checkout asks for, in form order (empty: none).
    pub checkout_fields: Vec<ContactField>,
    /// `CONTACT_KEY`: the keys buyers' contact details are sealed with, the first current
    /// (empty: a key generated and kept in the database; see [`Settings::check_contacts`]).
    pub contact_keys: ContactKeySetting,
    /// `CONTACT_RETENTION_DAYS`: a finished order's contact is anonymised this many days on.
    pub contact_retention_days: u32,
    /// `PRIVACY_NOTICE`: the merchant's privacy notice on the contact form (unset: the default).
    pub privacy_notice: Option<String>,
    /// `ADMIN_PASSWORD_HASH`: the console's password as an argon2 PHC string; unset, one is
    /// generated on the first start.
    pub admin_password_hash: Option<String>,
    pub log_format: LogFormat,
    /// `WEBHOOK_URLS`, `WEBHOOK_SECRET`, `WECOM_ROBOT_URL`, `DINGTALK_ROBOT_URL`,
    /// `DINGTALK_ROBOT_SECRET`, `WEBHOOK_RETRY_SCALE`: where events go.
    pub webhooks: WebhookSettings,
    /// `NOTIFY_ALARM_WINDOW_SECS` and `NOTIFY_ALARM_MIN_PAYMENTS`: the missing-notify alarm is
    /// raised when, over the window, at least that many payments were confirmed by asking
    /// WeChat and fewer than half as many notifies arrived.
    pub notify_alarm_window: Duration,
    pub notify_alarm_min_payments: u32,
}

/// What China's rules for web pages ask every page's footer to show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Footer {
    /// `ICP_BEIAN`: the site's ICP filing number (`京ICP备12345678号-1`), linked to MIIT's
    /// filing system as the rules require.
    pub icp_beian: Option<String>,
    /// `SHOP_CONTACT`: how shoppers reach the merchant's customer service.
    pub shop_contact: Option<String>,
}

/// `ICP_BEIAN` and `SHOP_CONTACT`: one line of text each.
fn footer(get: &impl Fn(&str) -> Option<String>) -> Result<Footer, ConfigError> {
    let line = |var: &'static str, most: usize| -> Result<Option<String>, ConfigError> {
        let Some(text) = get(var).map(|t| t.trim().to_owned()) else {
            return Ok(None);
        };
        if text.chars().count() > most || text.chars().any(char::is_control) {
            return Err(error(var, format!("at most {most} characters on one line")));
        }
        Ok(Some(text))
    };
    let icp_beian = line("ICP_BEIAN", 40)?;
    if let Some(number) = &icp_beian {
        if !number.contains("ICP") {
            return Err(error(
                "ICP_BEIAN",
                "must be the ICP filing number as MIIT issued it, e.g. 京ICP备12345678号-1",
            ));
        }
    }
    Ok(Footer {
        icp_beian,
        shop_contact: line("SHOP_CONTACT", 80)?,
    })
}

/// `CONTACT_KEY`'s keys, 32 bytes each. `Debug` shows how many, never a key.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ContactKeySetting(pub Vec<[u8; 32]>);

impl std::fmt::Debug for ContactKeySetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ContactKeySetting({} keys)", self.0.len())
    }
}

/// Most keys `CONTACT_KEY` may hold (the current one and those being rotated out).
const MAX_CONTACT_KEYS: usize = 8;
/// Longest `PRIVACY_NOTICE`, in characters.
pub const MAX_PRIVACY_NOTICE: usize = 2000;

/// `CONTACT_KEY`: base64 keys of 32 bytes, comma-separated, the first current. The value is
/// never echoed.
fn contact_keys(text: &str) -> Result<ContactKeySetting, ConfigError> {
    use base64::Engine;
    let mut keys = Vec::new();
    for (i, part) in text.split(',').map(str::trim).enumerate() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(part)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(part))
            .map_err(|_| {
                error(
                    "CONTACT_KEY",
                    format!(
                        "key {} is not base64 (make one with `openssl rand -base64 32`)",
                        i + 1
                    ),
                )
            })?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| {
            error(
                "CONTACT_KEY",
                format!(
                    "key {} is not 32 bytes (make one with `openssl rand -base64 32`)",
                    i + 1
                ),
            )
        })?;
        keys.push(key);
    }
    if keys.len() > MAX_CONTACT_KEYS {
        return Err(error(
            "CONTACT_KEY",
            format!("at most {MAX_CONTACT_KEYS} keys (the current one first, then old ones)"),
        ));
    }
    Ok(ContactKeySetting(keys))
}

/// Where events go and how they are signed.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// The webhook URLs, then the robots.
    pub targets: Vec<Target>,
    pub secret: Option<Secret>,
    /// `WEBHOOK_RETRY_SCALE`: multiplies the retry schedule (for tests and demos).
    pub retry_scale: f64,
}

/// Most `WEBHOOK_URLS` entries.
const MAX_WEBHOOK_URLS: usize = 10;

fn webhook_settings(get: &impl Fn(&str) -> Option<String>) -> Result<WebhookSettings, ConfigError> {
    let mut targets = Vec::new();
    let urls = get("WEBHOOK_URLS").unwrap_or_default();
    for (n, url) in urls
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|u| !u.is_empty())
        .enumerate()
    {
        // The URL itself is not repeated: it may hold a token.
        let target = Target::new(TargetKind::Webhook, url)
            .map_err(|e| error("WEBHOOK_URLS", format!("entry {}: {e}", n + 1)))?;
        if targets.iter().any(|t: &Target| t.url() == target.url()) {
            return Err(error(
                "WEBHOOK_URLS",
                format!("entry {} is listed twice", n + 1),
            ));
        }
        targets.push(target);
    }
    if targets.len() > MAX_WEBHOOK_URLS {
        return Err(error(
            "WEBHOOK_URLS",
            format!("at most {MAX_WEBHOOK_URLS} URLs"),
        ));
    }
    let secret = match get("WEBHOOK_SECRET").filter(|s| !s.trim().is_empty()) {
        Some(text) => {
            Some(Secret::parse(&text).map_err(|e| error("WEBHOOK_SECRET", e.to_string()))?)
        }
        None if !targets.is_empty() => {
            return Err(error(
                "WEBHOOK_SECRET",
                "is required with WEBHOOK_URLS (make one with `wxpay-checkout webhook-secret`)",
            ))
        }
        None => None,
    };
    for (var, kind) in [
        ("WECOM_ROBOT_URL", TargetKind::WeCom),
        ("DINGTALK_ROBOT_URL", TargetKind::DingTalk),
    ] {
        if let Some(url) = get(var).filter(|u| !u.trim().is_empty()) {
            let mut target = Target::new(kind, &url).map_err(|e| error(var, e.to_string()))?;
            if kind == TargetKind::DingTalk {
                if let Some(secret) = get("DINGTALK_ROBOT_SECRET")
                    .as_deref()
                    .and_then(crate::webhooks::robots::robot_secret)
                {
                    target = target.with_robot_secret(secret);
                }
            }
            targets.push(target);
        }
    }
    let retry_scale: f64 = parse_or(get, "WEBHOOK_RETRY_SCALE", "1")?;
    if !(retry_scale > 0.0 && retry_scale <= 1.0) {
        return Err(error(
            "WEBHOOK_RETRY_SCALE",
            "must be above 0 and at most 1",
        ));
    }
    Ok(WebhookSettings {
        targets,
        secret,
        retry_scale,
    })
}

/// Paying on a phone (see the README's *Paying on a phone*).
#[derive(Debug, Clone)]
pub struct PhoneSettings {
    /// `WEIXIN_H5` (default off; on in sandbox mode): H5 payment in phone browsers.
    pub h5: bool,
    /// `WEIXIN_MP_APPSECRET`: the official account's AppSecret; set, JSAPI payment inside
    /// WeChat is offered (sandbox mode: the demo account's).
    pub mp_appsecret: Option<SecretString>,
    /// `WEIXIN_OAUTH_BASE` (`https://open.weixin.qq.com`) and `WEIXIN_MP_API_BASE`
    /// (`https://api.weixin.qq.com`): where the browser is sent for OAuth, and where the code
    /// is traded for the openid. Sandbox mode: the sandbox.
    pub oauth_base: Url,
    pub mp_api_base: Url,
}

/// The built-in sandbox's own knobs (`SANDBOX_*`), for tests and demos.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    /// `SANDBOX_TIME_SCALE`: multiplies the notify retry schedule (`0.001` → milliseconds).
    pub time_scale: f64,
    /// `SANDBOX_FAULTS`: faults injected from the start.
    pub faults: Faults,
    /// `SANDBOX_MAX_ORDERS`: orders remembered before the oldest are forgotten.
    pub max_orders: usize,
    /// `SANDBOX_PUBLIC=1`: the sandbox (and a shop in sandbox mode) may listen on a non-loopback
    /// address — a demo on purpose. Without it they refuse to start there.
    pub public: bool,
    /// `SANDBOX_CONTROLS=1`: the sandbox's test controls (`/sandbox/faults`, `/sandbox/clock`,
    /// `/sandbox/stats`, `/sandbox/orders/…`, `/sandbox/payments`, `/sandbox/refund`) are served.
    pub controls: bool,
    /// `SANDBOX_CERT_DIR`: where `wxpay-checkout sandbox` writes the merchant's
    /// `apiclient_cert.p12` / `.pem`, `apiclient_key.pem` and its CA's `sandbox_ca.pem`, and for
    /// v3 `pub_key.pem` and `wechatpay_v3.env` (and the v3 keys it finds there are used again).
    pub cert_dir: Option<std::path::PathBuf>,
}

/// Where the merchant's API client certificate is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertFiles {
    /// `apiclient_cert.p12`, password the mch_id.
    P12(std::path::PathBuf),
    /// `apiclient_cert.pem` and `apiclient_key.pem`.
    Pem {
        cert: std::path::PathBuf,
        key: std::path::PathBuf,
    },
}

/// A variable with a bad value. Displays as one line naming the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

fn error(var: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        problem: problem.into(),
    }
}

/// Shortest and longest time a shopper may be given to pay. WeChat requires `time_expire` at
/// least 5 minutes after `time_start`; a `code_url` lives 2 hours, and re-entry may not change
/// `time_expire`, so an order cannot outlive its QR code.
const MIN_ORDER_TTL_SECS: u64 = 300;
const MAX_ORDER_TTL_SECS: u64 = 7200;

impl Settings {
    /// How WeChat and shoppers reach the shop: `PUBLIC_BASE_URL`, or `http://` and the address
    /// the shop listens on (`bound`: with port 0 only the bound listener knows the port).
    pub fn public_base_url(&self, bound: SocketAddr) -> Url {
        self.public_base_url.clone().unwrap_or_else(|| {
            Url::parse(&format!("http://{}/", reachable(bound)))
                .expect("a socket address forms a URL")
        })
    }

    /// The notify URL sent in unifiedorder: `WEIXIN_NOTIFYURL`, or the public base URL and
    /// `/weixin/pay/notify/url`.
    pub fn notify_url(&self, bound: SocketAddr) -> Url {
        self.notify_url.clone().unwrap_or_else(|| {
            self.public_base_url(bound)
                .join(match self.api_version {
                    ApiVersion::V2 => "weixin/pay/notify/url",
                    ApiVersion::V3 => V3_NOTIFY_PATH,
                })
                .expect("a fixed relative path joins onto an http URL")
        })
    }

    /// The refund notify URL sent with each refund: `WEIXIN_REFUND_NOTIFYURL`, or the public
    /// base URL and `/weixin/pay/refund/notify`.
    pub fn refund_notify_url(&self, bound: SocketAddr) -> Url {
        self.refund_notify_url.clone().unwrap_or_else(|| {
            self.public_base_url(bound)
                .join(match self.api_version {
                    ApiVersion::V2 => "weixin/pay/refund/notify",
                    // v3's one notify route takes both, told apart by event_type.
                    ApiVersion::V3 => V3_NOTIFY_PATH,
                })
                .expect("a fixed relative path joins onto an http URL")
        })
    }

    /// Reads API v3's keys from their files (`None` without [`Settings::v3`]). A file that
    /// cannot be read or is not the key expected is an error naming its variable.
    pub fn load_v3(&self) -> anyhow::Result<Option<crate::wxpay::v3::Credentials>> {
        use crate::wxpay::v3::{ApiV3Key, Credentials, MerchantKey, PayPublicKey};
        use anyhow::Context;
        let Some(v3) = &self.v3 else {
            return Ok(None);
        };
        let read = |var: &str, path: &std::path::Path| -> anyhow::Result<String> {
            let meta = std::fs::metadata(path)
                .with_context(|| format!("{var}: cannot read {}", path.display()))?;
            anyhow::ensure!(
                meta.len() <= 64 * 1024,
                "{var}: {} is larger than 64 KiB: not a PEM key",
                path.display()
            );
            std::fs::read_to_string(path)
                .with_context(|| format!("{var}: cannot read {}", path.display()))
        };
        let key = MerchantKey::from_pem(&read("WEIXIN_MCH_PRIVATE_KEY", &v3.private_key)?)
            .with_context(|| format!("WEIXIN_MCH_PRIVATE_KEY {}", v3.private_key.display()))?;
        let pay_key = PayPublicKey::from_pem(
            v3.pay_public_key_id.clone(),
            &read("WEIXIN_PAY_PUBLIC_KEY", &v3.pay_public_key)?,
        )
        .with_context(|| format!("WEIXIN_PAY_PUBLIC_KEY {}", v3.pay_public_key.display()))?;
        Ok(Some(Credentials {
            appid: self.merchant.appid.clone(),
            mchid: self.merchant.mch_id.clone(),
            serial_no: v3.mch_serial.clone(),
            key: std::sync::Arc::new(key),
            pay_key,
            apiv3_key: ApiV3Key::new(&v3.apiv3_key).context("WEIXIN_APIV3_KEY")?,
        }))
    }

    /// Reads the merchant's client certificate from its files, if configured. A file that
    /// cannot be read or opened is an error naming its variable.
    pub fn load_cert(&self) -> anyhow::Result<Option<crate::wxpay::cert::ClientCert>> {
        use crate::wxpay::cert::{ClientCert, MAX_CERT_FILE};
        use anyhow::Context;
        let read = |var: &str, path: &std::path::Path| -> anyhow::Result<Vec<u8>> {
            let meta = std::fs::metadata(path)
                .with_context(|| format!("{var}: cannot read {}", path.display()))?;
            anyhow::ensure!(
                meta.len() <= MAX_CERT_FILE as u64,
                "{var}: {} is larger than {MAX_CERT_FILE} bytes: not a certificate file",
                path.display()
            );
            std::fs::read(path).with_context(|| format!("{var}: cannot read {}", path.display()))
        };
        Ok(Some(match &self.cert_files {
            None => return Ok(None),
            Some(CertFiles::P12(path)) => {
                ClientCert::from_p12(&read("WEIXIN_CERT_P12", path)?, &self.merchant.mch_id)
                    .with_context(|| format!("WEIXIN_CERT_P12 {}", path.display()))?
            }
            Some(CertFiles::Pem { cert, key }) => ClientCert::from_pem(
                &read("WEIXIN_CERT_PEM", cert)?,
                &read("WEIXIN_KEY_PEM", key)?,
            )
            .with_context(|| {
                format!(
                    "WEIXIN_CERT_PEM {} / WEIXIN_KEY_PEM {}",
                    cert.display(),
                    key.display()
                )
            })?,
        }))
    }

    /// `spbill_create_ip` for Native payments: the IP this server calls WeChat Pay from, as
    /// far as it knows it (the listen address; loopback when it listens on all interfaces).
    pub fn spbill_create_ip(&self) -> String {
        reachable(self.listen_addr).ip().to_string()
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests). Unset and empty
    /// are the same.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let listen_addr: SocketAddr = parse_or(&get, "LISTEN_ADDR", "127.0.0.1:8080")?;
        let sandbox_listen_addr: SocketAddr =
            parse_or(&get, "SANDBOX_LISTEN_ADDR", "127.0.0.1:8090")?;
        let ops_listen_addr: SocketAddr = parse_or(&get, "OPS_LISTEN_ADDR", "127.0.0.1:9090")?;
        let sandbox_tls_listen_addr: SocketAddr =
            parse_or(&get, "SANDBOX_TLS_LISTEN_ADDR", "127.0.0.1:8091")?;

        let database_url =
            get("DATABASE_URL").unwrap_or_else(|| "sqlite://data/checkout.db".into());
        if !["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|scheme| database_url.starts_with(scheme))
        {
            return Err(error(
                "DATABASE_URL",
                "must start with sqlite: or postgres://",
            ));
        }

        let public_base_url = get("PUBLIC_BASE_URL")
            .map(|text| http_url("PUBLIC_BASE_URL", &text))
            .transpose()?;

        let api_version = match get("WEIXIN_API_VERSION").as_deref() {
            None | Some("v2") => ApiVersion::V2,
            Some("v3") => ApiVersion::V3,
            Some(_) => return Err(error("WEIXIN_API_VERSION", "must be v2 or v3")),
        };
        let (mode, merchant) = merchant(&get, api_version)?;
        let shop_name = match (get("SHOP_NAME"), mode) {
            (Some(name), _) => name.trim().to_owned(),
            (None, Mode::Sandbox) => "茶舍 Tea House".to_owned(),
            (None, Mode::Live) => {
                return Err(error(
                    "SHOP_NAME",
                    "required with merchant credentials: the name shoppers see on every page \
                     and in WeChat Pay",
                ))
            }
        };
        if shop_name.chars().count() > 40 || shop_name.chars().any(char::is_control) {
            return Err(error(
                "SHOP_NAME",
                "at most 40 characters, no control characters",
            ));
        }

        let footer = footer(&get)?;

        let notify_url = get("WEIXIN_NOTIFYURL")
            .map(|text| http_url("WEIXIN_NOTIFYURL", &text))
            .transpose()?;
        if notify_url
            .as_ref()
            .is_some_and(|url| url.query().is_some() || url.fragment().is_some())
        {
            return Err(error(
                "WEIXIN_NOTIFYURL",
                "WeChat Pay refuses a notify URL with a query string or fragment",
            ));
        }

        let refund_notify_url = get("WEIXIN_REFUND_NOTIFYURL")
            .map(|text| http_url("WEIXIN_REFUND_NOTIFYURL", &text))
            .transpose()?;
        if refund_notify_url
            .as_ref()
            .is_some_and(|url| url.query().is_some() || url.fragment().is_some())
        {
            return Err(error(
                "WEIXIN_REFUND_NOTIFYURL",
                "WeChat Pay refuses a notify URL with a query string or fragment",
            ));
        }
        let path = |var: &str| get(var).map(std::path::PathBuf::from);
        let cert_files =
            match (
                path("WEIXIN_CERT_P12"),
                path("WEIXIN_CERT_PEM"),
                path("WEIXIN_KEY_PEM"),
            ) {
                (None, None, None) => None,
                (Some(p12), None, None) => Some(CertFiles::P12(p12)),
                (None, Some(cert), Some(key)) => Some(CertFiles::Pem { cert, key }),
                (Some(_), _, _) => return Err(error(
                    "WEIXIN_CERT_P12",
                    "set either WEIXIN_CERT_P12 or WEIXIN_CERT_PEM with WEIXIN_KEY_PEM, not both",
                )),
                (None, Some(_), None) => {
                    return Err(error(
                        "WEIXIN_KEY_PEM",
                        "is unset, but WEIXIN_CERT_PEM is set (apiclient_key.pem goes with it)",
                    ))
                }
                (None, None, Some(_)) => {
                    return Err(error(
                        "WEIXIN_CERT_PEM",
                        "is unset, but WEIXIN_KEY_PEM is set (apiclient_cert.pem goes with it)",
                    ))
                }
            };
        let ca_pem_file = path("WEIXIN_CA_PEM");
        let auto_refund_late_payments = match get("AUTO_REFUND_LATE_PAYMENTS") {
            None => true,
            Some(_) => flag(&get, "AUTO_REFUND_LATE_PAYMENTS")?,
        };

        let builtin_sandbox = mode == Mode::Sandbox && get("WEIXIN_API_BASE").is_none();
        let api_base = match get("WEIXIN_API_BASE") {
            Some(text) => http_url("WEIXIN_API_BASE", &text)?,
            None => match mode {
                Mode::Live => Url::parse("https://api.mch.weixin.qq.com/").expect("valid URL"),
                Mode::Sandbox => http_url(
                    "SANDBOX_LISTEN_ADDR",
                    &format!("http://{}/", reachable(sandbox_listen_addr)),
                )?,
            },
        };

        let phones = PhoneSettings {
            h5: match get("WEIXIN_H5") {
                None => mode == Mode::Sandbox,
                Some(_) => flag(&get, "WEIXIN_H5")?,
            },
            mp_appsecret: match (get("WEIXIN_MP_APPSECRET"), mode) {
                (Some(secret), _) => {
                    if secret.len() != 32 || !secret.bytes().all(|b| b.is_ascii_alphanumeric()) {
                        return Err(error(
                            "WEIXIN_MP_APPSECRET",
                            "must be the official account's AppSecret: 32 letters and digits",
                        ));
                    }
                    Some(SecretString::from(secret))
                }
                (None, Mode::Sandbox) => Some(SecretString::from(SANDBOX_MP_APPSECRET)),
                (None, Mode::Live) => None,
            },
            oauth_base: match get("WEIXIN_OAUTH_BASE") {
                Some(text) => http_url("WEIXIN_OAUTH_BASE", &text)?,
                None if mode == Mode::Sandbox => api_base.clone(),
                None => Url::parse(crate::wxpay::oauth::OPEN_BASE).expect("valid URL"),
            },
            mp_api_base: match get("WEIXIN_MP_API_BASE") {
                Some(text) => http_url("WEIXIN_MP_API_BASE", &text)?,
                None if mode == Mode::Sandbox => api_base.clone(),
                None => Url::parse(crate::wxpay::oauth::MP_API_BASE).expect("valid URL"),
            },
        };

        let v3 = v3_settings(&get, api_version, builtin_sandbox)?;
        let mut phones = phones;
        if api_version == ApiVersion::V3 {
            for var in ["WEIXIN_H5", "WEIXIN_MP_APPSECRET"] {
                if get(var).is_some() {
                    return Err(error(
                        var,
                        "API v3 serves Native (QR code) payments only here: unset it, or use \
                         WEIXIN_API_VERSION=v2 for paying on phones",
                    ));
                }
            }
            phones.h5 = false;
            phones.mp_appsecret = None;
        }

        let sign_type = match get("WEIXIN_SIGN_TYPE") {
            None => SignType::Md5,
            Some(text) => text
                .parse()
                .map_err(|_| error("WEIXIN_SIGN_TYPE", "must be MD5 or HMAC-SHA256"))?,
        };

        let order_ttl_secs: u64 = parse_or(&get, "ORDER_TTL_SECS", "600")?;
        if !(MIN_ORDER_TTL_SECS..=MAX_ORDER_TTL_SECS).contains(&order_ttl_secs) {
            return Err(error(
                "ORDER_TTL_SECS",
                format!("must be between {MIN_ORDER_TTL_SECS} and {MAX_ORDER_TTL_SECS} seconds"),
            ));
        }
        let notify_alarm_window: u64 = parse_or(&get, "NOTIFY_ALARM_WINDOW_SECS", "1800")?;
        if !(10..=86_400).contains(&notify_alarm_window) {
            return Err(error(
                "NOTIFY_ALARM_WINDOW_SECS",
                "must be between 10 and 86400 seconds",
            ));
        }
        let notify_alarm_min_payments: u32 = parse_or(&get, "NOTIFY_ALARM_MIN_PAYMENTS", "3")?;
        if notify_alarm_min_payments == 0 {
            return Err(error("NOTIFY_ALARM_MIN_PAYMENTS", "must be at least 1"));
        }
        let reconcile_interval_secs: u64 = parse_or(&get, "RECONCILE_INTERVAL_SECS", "30")?;
        if reconcile_interval_secs == 0 {
            return Err(error("RECONCILE_INTERVAL_SECS", "must be at least 1"));
        }
        let bill_fetch_at = {
            let text = get("BILL_FETCH_AT").unwrap_or_else(|| "10:30".into());
            chrono::NaiveTime::parse_from_str(text.trim(), "%H:%M").map_err(|_| {
                error(
                    "BILL_FETCH_AT",
                    "must be a Beijing time of day like 10:30 (WeChat makes yesterday's bill from \
                     about 09:00)",
                )
            })?
        };
        let webhooks = webhook_settings(&get)?;
        let backups = match get("BACKUP_DIR").filter(|d| !d.trim().is_empty()) {
            None => None,
            Some(dir) => {
                let every = get("BACKUP_EVERY").unwrap_or_else(|| "1h".into());
                let every = parse_every(every.trim()).ok_or_else(|| {
                    error(
                        "BACKUP_EVERY",
                        "must be a period like 30m, 1h or 1d (at most 7d)",
                    )
                })?;
                let keep: usize = parse_or(&get, "BACKUP_KEEP", "24")?;
                if !(1..=10_000).contains(&keep) {
                    return Err(error("BACKUP_KEEP", "must be from 1 to 10000"));
                }
                Some(BackupSchedule {
                    dir: dir.trim().into(),
                    every,
                    keep,
                })
            }
        };
        let reconcile_max_attempts = match get("RECONCILE_MAX_ATTEMPTS") {
            None => None,
            Some(_) => {
                let attempts: u32 = parse_or(&get, "RECONCILE_MAX_ATTEMPTS", "")?;
                if attempts == 0 {
                    return Err(error("RECONCILE_MAX_ATTEMPTS", "must be at least 1"));
                }
                Some(attempts)
            }
        };

        let time_scale: f64 = parse_or(&get, "SANDBOX_TIME_SCALE", "1")?;
        if !(time_scale > 0.0 && time_scale <= 1.0) {
            return Err(error("SANDBOX_TIME_SCALE", "must be above 0 and at most 1"));
        }
        let faults = get("SANDBOX_FAULTS")
            .unwrap_or_default()
            .parse::<Faults>()
            .map_err(|e| error("SANDBOX_FAULTS", e.to_string()))?;
        let max_orders: usize = parse_or(&get, "SANDBOX_MAX_ORDERS", "100000")?;
        if max_orders == 0 {
            return Err(error("SANDBOX_MAX_ORDERS", "must be at least 1"));
        }
        let public = flag(&get, "SANDBOX_PUBLIC")?;
        let controls = flag(&get, "SANDBOX_CONTROLS")?;

        let body_timeout_secs: u64 = parse_or(&get, "REQUEST_BODY_TIMEOUT_SECS", "10")?;
        if !(1..=120).contains(&body_timeout_secs) {
            return Err(error(
                "REQUEST_BODY_TIMEOUT_SECS",
                "must be between 1 and 120 seconds",
            ));
        }

        let pending_per_client: u32 = parse_or(&get, "PENDING_ORDERS_PER_CLIENT", "3")?;
        let order_rate_per_minute: u32 = parse_or(&get, "ORDER_RATE_PER_MINUTE", "10")?;
        let trusted_proxies = get("TRUSTED_PROXIES")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        error(
                            "TRUSTED_PROXIES",
                            format!("{:?} is not an address or CIDR", super_loggable(entry)),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let catalogue_file = get("CATALOGUE_FILE").map(std::path::PathBuf::from);
        if let Some(file) = &catalogue_file {
            let extension = file
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or_default();
            if !["toml", "csv"].contains(&extension.to_ascii_lowercase().as_str()) {
                return Err(error("CATALOGUE_FILE", "must name a .toml or .csv file"));
            }
        }
        // Set but empty means no contact at all (digital goods), unlike the other variables.
        let checkout_fields = checkout_fields(
            lookup("CHECKOUT_FIELDS")
                .as_deref()
                .unwrap_or("name,phone,address"),
        )?;

        let contact_keys = match get("CONTACT_KEY") {
            None => ContactKeySetting::default(),
            Some(text) => contact_keys(&text)?,
        };
        let contact_retention_days: u32 = parse_or(&get, "CONTACT_RETENTION_DAYS", "1095")?;
        if !(1..=36_500).contains(&contact_retention_days) {
            return Err(error(
                "CONTACT_RETENTION_DAYS",
                "must be from 1 to 36500 days",
            ));
        }
        let privacy_notice = get("PRIVACY_NOTICE").map(|v| v.trim().to_owned());
        if privacy_notice
            .as_ref()
            .is_some_and(|n| n.chars().count() > MAX_PRIVACY_NOTICE)
        {
            return Err(error(
                "PRIVACY_NOTICE",
                format!("at most {MAX_PRIVACY_NOTICE} characters"),
            ));
        }

        let admin_password_hash = get("ADMIN_PASSWORD_HASH").map(|v| v.trim().to_owned());
        if let Some(phc) = &admin_password_hash {
            if !phc.starts_with("$argon2") || phc.len() > 200 {
                return Err(error(
                    "ADMIN_PASSWORD_HASH",
                    "must be an argon2 PHC string ($argon2id$…); make one with \
                     `wxpay-checkout admin hash-password`",
                ));
            }
        }

        let log_format = match get("LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(_) => return Err(error("LOG_FORMAT", "must be text or json")),
        };

        Ok(Settings {
            mode,
            shop_name,
            footer,
            listen_addr,
            ops_listen_addr,
            database_url,
            public_base_url,
            merchant,
            notify_url,
            api_base,
            phones,
            builtin_sandbox,
            sandbox: SandboxSettings {
                time_scale,
                faults,
                max_orders,
                public,
                controls,
                cert_dir: path("SANDBOX_CERT_DIR"),
            },
            sign_type,
            api_version,
            v3,
            sandbox_listen_addr,
            sandbox_tls_listen_addr,
            cert_files,
            ca_pem_file,
            refund_notify_url,
            auto_refund_late_payments,
            notify_alarm_window: Duration::from_secs(notify_alarm_window),
            notify_alarm_min_payments,
            order_ttl: Duration::from_secs(order_ttl_secs),
            reconcile_interval: Duration::from_secs(reconcile_interval_secs),
            bill_fetch_at,
            backups,
            webhooks,
            reconcile_max_attempts,
            request_body_timeout: Duration::from_secs(body_timeout_secs),
            pending_per_client,
            order_rate_per_minute,
            trusted_proxies,
            catalogue_file,
            checkout_fields,
            contact_keys,
            contact_retention_days,
            privacy_notice,
            admin_password_hash,
            log_format,
        })
    }
}

/// `CHECKOUT_FIELDS`: a comma-separated list of contact fields, each at most once; empty or
/// `none` for none.
fn checkout_fields(text: &str) -> Result<Vec<ContactField>, ConfigError> {
    let mut fields = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name.eq_ignore_ascii_case("none") && text.trim().eq_ignore_ascii_case("none") {
            break;
        }
        let field = ContactField::parse(&name.to_ascii_lowercase()).ok_or_else(|| {
            error(
                "CHECKOUT_FIELDS",
                format!(
                    "{:?} is not one of name, phone, address, email, note",
                    super_loggable(name)
                ),
            )
        })?;
        if fields.contains(&field) {
            return Err(error(
                "CHECKOUT_FIELDS",
                format!("{} is listed twice", field.as_str()),
            ));
        }
        fields.push(field);
    }
    // Forms show the fields in one order, whatever order they were listed in.
    fields.sort_by_key(|f| ContactField::ALL.iter().position(|a| a == f));
    Ok(fields)
}

/// A value shown in an error, cut short.
fn super_loggable(text: &str) -> String {
    text.chars().take(64).collect()
}

/// A yes/no variable: `1`/`true`/`yes` or `0`/`false`/`no`; unset is no.
fn flag(get: &impl Fn(&str) -> Option<String>, var: &'static str) -> Result<bool, ConfigError> {
    match get(var).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("0" | "false" | "no") => Ok(false),
        Some("1" | "true" | "yes") => Ok(true),
        Some(_) => Err(error(var, "must be 1 or 0")),
    }
}

impl Settings {
    /// Refuses a live v2 shop that would refund late payments automatically without the client
    /// certificate v2's refunds need (the sandbox has its own; v3 signs refunds like any call).
    pub fn check_refunds(&self) -> Result<(), ConfigError> {
        if self.mode == Mode::Live
            && self.api_version == ApiVersion::V2
            && self.auto_refund_late_payments
            && self.cert_files.is_none()
        {
            return Err(error(
                "AUTO_REFUND_LATE_PAYMENTS",
                "late payments are refunded automatically, which needs the merchant's API client \
                 certificate: set WEIXIN_CERT_P12 (or WEIXIN_CERT_PEM and WEIXIN_KEY_PEM), or \
                 AUTO_REFUND_LATE_PAYMENTS=false to refund by hand",
            ));
        }
        Ok(())
    }

    /// Refuses a live shop that asks buyers for contact details without `CONTACT_KEY`: a key
    /// generated into the database would sit next to what it protects. (Sandbox mode, and a
    /// shop that asks for no contact, may run on a generated key.)
    pub fn check_contacts(&self) -> Result<(), ConfigError> {
        if self.mode == Mode::Live
            && !self.checkout_fields.is_empty()
            && self.contact_keys.0.is_empty()
        {
            return Err(error(
                "CONTACT_KEY",
                "required in live mode while CHECKOUT_FIELDS asks for contact details: base64 of \
                 32 random bytes, e.g. from `openssl rand -base64 32`; keep it apart from the \
                 database and its backups",
            ));
        }
        Ok(())
    }

    /// Refuses what would expose a sandbox to the internet by accident: a shop in sandbox mode
    /// (anyone could mark its orders paid with the sandbox's published key) or a sandbox (an open
    /// relay for signed POSTs) on a non-loopback address, unless `SANDBOX_PUBLIC=1`.
    pub fn check_exposure(&self, serving_shop: bool) -> Result<(), ConfigError> {
        if self.sandbox.public {
            return Ok(());
        }
        if serving_shop && self.mode == Mode::Sandbox && !self.listen_addr.ip().is_loopback() {
            return Err(error(
                "LISTEN_ADDR",
                "sandbox mode (no WEIXIN_* credentials) on a non-loopback address: anyone could \
                 mark orders paid with the sandbox's published key; set the merchant \
                 credentials, or SANDBOX_PUBLIC=1 for a demo",
            ));
        }
        let runs_sandbox = !serving_shop || self.builtin_sandbox;
        if runs_sandbox
            && !(self.sandbox_listen_addr.ip().is_loopback()
                && self.sandbox_tls_listen_addr.ip().is_loopback())
        {
            return Err(error(
                "SANDBOX_LISTEN_ADDR",
                "the sandbox on a non-loopback address: set SANDBOX_PUBLIC=1 to mean it",
            ));
        }
        Ok(())
    }
}

/// All three merchant variables, or none (sandbox mode). With API v3 the v2 key
/// (`WEIXIN_PARTNERKEY`) is not needed: v3's own keys are [`V3Settings`].
fn merchant(
    get: &impl Fn(&str) -> Option<String>,
    api_version: ApiVersion,
) -> Result<(Mode, Merchant), ConfigError> {
    let appid = get("WEIXIN_APPID");
    let mch_id = get("WEIXIN_PARTNER");
    let key = get("WEIXIN_PARTNERKEY");
    match (appid, mch_id, key) {
        (None, None, None) => Ok((
            Mode::Sandbox,
            Merchant {
                appid: SANDBOX_APPID.into(),
                mch_id: SANDBOX_MCH_ID.into(),
                key: SecretString::from(SANDBOX_KEY),
            },
        )),
        (Some(appid), Some(mch_id), Some(key)) => {
            check_ids(&appid, &mch_id)?;
            // The value itself is never echoed.
            if key.len() != 32 || !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(error(
                    "WEIXIN_PARTNERKEY",
                    "must be the 32-character API key set in the merchant platform",
                ));
            }
            Ok((
                Mode::Live,
                Merchant {
                    appid,
                    mch_id,
                    key: SecretString::from(key),
                },
            ))
        }
        // API v3 signs with its own keys: the v2 key is not needed (nothing of v2 runs).
        (Some(appid), Some(mch_id), None) if api_version == ApiVersion::V3 => {
            check_ids(&appid, &mch_id)?;
            Ok((
                Mode::Live,
                Merchant {
                    appid,
                    mch_id,
                    key: SecretString::from(""),
                },
            ))
        }
        (appid, mch_id, _) => {
            let missing = if appid.is_none() {
                "WEIXIN_APPID"
            } else if mch_id.is_none() {
                "WEIXIN_PARTNER"
            } else {
                "WEIXIN_PARTNERKEY"
            };
            Err(error(
                missing,
                "is unset, but other WEIXIN_ credentials are set (set all three, or none for sandbox mode)",
            ))
        }
    }
}

fn check_ids(appid: &str, mch_id: &str) -> Result<(), ConfigError> {
    if !appid.bytes().all(|b| b.is_ascii_alphanumeric()) || appid.len() > 32 {
        return Err(error("WEIXIN_APPID", "must be up to 32 letters and digits"));
    }
    if !mch_id.bytes().all(|b| b.is_ascii_digit()) || mch_id.len() > 32 {
        return Err(error("WEIXIN_PARTNER", "must be up to 32 digits"));
    }
    Ok(())
}

/// The v3 notify route's path (payments and refunds alike).
pub const V3_NOTIFY_PATH: &str = "weixin/pay/v3/notify";

/// Which of WeChat Pay's APIs the shop speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    /// XML, MD5/HMAC-SHA256 signatures, the client certificate for refunds.
    V2,
    /// JSON, RSA signatures, notifies sealed with the APIv3 key; Native payments only here.
    V3,
}

impl ApiVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V2 => "v2",
            ApiVersion::V3 => "v3",
        }
    }
}

/// API v3's settings; the key files are read by [`Settings::load_v3`].
#[derive(Clone)]
pub struct V3Settings {
    /// `WEIXIN_APIV3_KEY`: 32 characters.
    pub apiv3_key: SecretString,
    /// `WEIXIN_MCH_SERIAL`: the merchant API certificate's serial number.
    pub mch_serial: String,
    /// `WEIXIN_MCH_PRIVATE_KEY`: `apiclient_key.pem`.
    pub private_key: std::path::PathBuf,
    /// `WEIXIN_PAY_PUBLIC_KEY`: `pub_key.pem`.
    pub pay_public_key: std::path::PathBuf,
    /// `WEIXIN_PAY_PUBLIC_KEY_ID`: `PUB_KEY_ID_…`.
    pub pay_public_key_id: String,
}

impl std::fmt::Debug for V3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V3Settings")
            .field("mch_serial", &self.mch_serial)
            .field("private_key", &self.private_key)
            .field("pay_public_key", &self.pay_public_key)
            .field("pay_public_key_id", &self.pay_public_key_id)
            .finish_non_exhaustive()
    }
}

/// The v3 variables: all five with v3 (none needed in built-in sandbox mode, where the sandbox
/// hands over its own), none without it.
fn v3_settings(
    get: &impl Fn(&str) -> Option<String>,
    api_version: ApiVersion,
    builtin_sandbox: bool,
) -> Result<Option<V3Settings>, ConfigError> {
    const VARS: [&str; 5] = [
        "WEIXIN_APIV3_KEY",
        "WEIXIN_MCH_SERIAL",
        "WEIXIN_MCH_PRIVATE_KEY",
        "WEIXIN_PAY_PUBLIC_KEY",
        "WEIXIN_PAY_PUBLIC_KEY_ID",
    ];
    if api_version == ApiVersion::V2 {
        if let Some(var) = VARS.into_iter().find(|v| get(v).is_some()) {
            return Err(error(var, "is set, but WEIXIN_API_VERSION is not v3"));
        }
        return Ok(None);
    }
    if builtin_sandbox && VARS.iter().all(|v| get(v).is_none()) {
        return Ok(None);
    }
    let required = |var: &'static str| {
        get(var).ok_or_else(|| {
            error(
                var,
                "is unset: API v3 needs WEIXIN_APIV3_KEY, WEIXIN_MCH_SERIAL, \
                 WEIXIN_MCH_PRIVATE_KEY, WEIXIN_PAY_PUBLIC_KEY and WEIXIN_PAY_PUBLIC_KEY_ID",
            )
        })
    };
    let apiv3_key = required("WEIXIN_APIV3_KEY")?;
    if apiv3_key.len() != 32 || !apiv3_key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(error(
            "WEIXIN_APIV3_KEY",
            "must be the 32-character APIv3 key set in the merchant platform",
        ));
    }
    let mch_serial = required("WEIXIN_MCH_SERIAL")?;
    if mch_serial.is_empty()
        || mch_serial.len() > 64
        || !mch_serial.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(error(
            "WEIXIN_MCH_SERIAL",
            "must be the API certificate's serial number: hexadecimal, 40 characters",
        ));
    }
    let pay_public_key_id = required("WEIXIN_PAY_PUBLIC_KEY_ID")?;
    if !pay_public_key_id.starts_with("PUB_KEY_ID_")
        || pay_public_key_id.len() > 64
        || !pay_public_key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(error(
            "WEIXIN_PAY_PUBLIC_KEY_ID",
            "must be the WeChat Pay public key's id, PUB_KEY_ID_ and digits",
        ));
    }
    Ok(Some(V3Settings {
        apiv3_key: SecretString::from(apiv3_key),
        mch_serial: mch_serial.to_ascii_uppercase(),
        private_key: required("WEIXIN_MCH_PRIVATE_KEY")?.into(),
        pay_public_key: required("WEIXIN_PAY_PUBLIC_KEY")?.into(),
        pay_public_key_id,
    }))
}

/// Scheduled backups (`BACKUP_DIR`, `BACKUP_EVERY`, `BACKUP_KEEP`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSchedule {
    pub dir: std::path::PathBuf,
    pub every: Duration,
    /// Backups kept; the oldest beyond are deleted.
    pub keep: usize,
}

/// A period: a whole number of seconds (`90s`), minutes (`30m`), hours (`1h`) or days (`1d`),
/// at most a week.
fn parse_every(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(text.len().checked_sub(1)?);
    let n: u64 = number.parse().ok()?;
    let secs = n.checked_mul(match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    })?;
    (1..=7 * 86_400)
        .contains(&secs)
        .then(|| Duration::from_secs(secs))
}

fn parse_or<T: FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: &str,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    let text = get(var).unwrap_or_else(|| default.to_owned());
    text.trim()
        .parse()
        .map_err(|e| error(var, format!("{:?} is not valid: {e}", text)))
}

fn http_url(var: &'static str, text: &str) -> Result<Url, ConfigError> {
    let mut url = Url::parse(text).map_err(|e| error(var, format!("{text:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(error(var, format!("{text:?} is not an http(s) URL")));
    }
    // A base URL is joined with relative paths, so it must end in '/'.
    if var != "WEIXIN_NOTIFYURL" && !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// The address to reach a listener at: an unspecified bind (0.0.0.0) is reached on loopback.
pub fn reachable(addr: SocketAddr) -> SocketAddr {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    const KEY: &str = "0123456789abcdefghijklmnopqrstuv";

    #[test]
    fn defaults_are_the_contracts_in_sandbox_mode() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.mode, Mode::Sandbox);
        assert_eq!(s.listen_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.database_url, "sqlite://data/checkout.db");
        assert_eq!(
            s.public_base_url(s.listen_addr).as_str(),
            "http://127.0.0.1:8080/"
        );
        assert_eq!(
            s.notify_url(s.listen_addr).as_str(),
            "http://127.0.0.1:8080/weixin/pay/notify/url"
        );
        assert_eq!(s.spbill_create_ip(), "127.0.0.1");
        assert_eq!(s.api_base.as_str(), "http://127.0.0.1:8090/");
        assert_eq!(s.sign_type, SignType::Md5);
        assert_eq!(s.order_ttl, Duration::from_secs(600));
        assert_eq!(s.reconcile_interval, Duration::from_secs(30));
        assert_eq!(s.reconcile_max_attempts, None, "the whole TTL by default");
        assert_eq!(s.merchant.appid, SANDBOX_APPID);
        assert!(s.builtin_sandbox);
        assert_eq!(s.sandbox.time_scale, 1.0);
    }

    #[test]
    fn api_v3_takes_its_five_settings_and_not_the_v2_key() {
        const V3: [(&str, &str); 9] = [
            ("WEIXIN_API_VERSION", "v3"),
            ("SHOP_NAME", "龙井茶庄"),
            ("CHECKOUT_FIELDS", ""),
            ("WEIXIN_APPID", "wxd930ea5d5a258f4f"),
            ("WEIXIN_PARTNER", "1900000109"),
            ("WEIXIN_APIV3_KEY", KEY),
            (
                "WEIXIN_MCH_SERIAL",
                "5157f09efdc096de15ebe81a47057a7232f1b8e1",
            ),
            ("WEIXIN_MCH_PRIVATE_KEY", "/run/secrets/apiclient_key.pem"),
            ("WEIXIN_PAY_PUBLIC_KEY", "/run/secrets/pub_key.pem"),
        ];
        let with_id = |extra: &[(&'static str, &'static str)]| {
            let mut vars = V3.to_vec();
            vars.push((
                "WEIXIN_PAY_PUBLIC_KEY_ID",
                "PUB_KEY_ID_0119000001092026112800000000000001",
            ));
            vars.extend_from_slice(extra);
            settings(&vars)
        };
        let s = with_id(&[]).unwrap();
        assert_eq!((s.mode, s.api_version), (Mode::Live, ApiVersion::V3));
        assert_eq!(
            s.check_refunds(),
            Ok(()),
            "v3 refunds need no client certificate: late payments are refunded as ever"
        );
        let v3 = s.v3.as_ref().unwrap();
        assert_eq!(v3.mch_serial, "5157F09EFDC096DE15EBE81A47057A7232F1B8E1");
        assert_eq!(
            s.notify_url(s.listen_addr).path(),
            "/weixin/pay/v3/notify",
            "v3's notify route by default"
        );
        assert_eq!(
            s.refund_notify_url(s.listen_addr).path(),
            "/weixin/pay/v3/notify"
        );
        assert!(!s.phones.h5 && s.phones.mp_appsecret.is_none());
        assert!(
            !format!("{v3:?}").contains(KEY),
            "the APIv3 key is never shown"
        );
        // One missing, or a bad value: one line naming the variable.
        assert_eq!(settings(&V3).unwrap_err().var, "WEIXIN_PAY_PUBLIC_KEY_ID");
        for (var, bad) in [
            ("WEIXIN_APIV3_KEY", "short"),
            ("WEIXIN_MCH_SERIAL", "not-hex"),
            ("WEIXIN_PAY_PUBLIC_KEY_ID", "0119000001092026"),
            ("WEIXIN_API_VERSION", "v4"),
        ] {
            let mut vars: Vec<_> = V3.iter().filter(|(k, _)| *k != var).copied().collect();
            vars.push((var, bad));
            vars.push(("WEIXIN_PAY_PUBLIC_KEY_ID", "PUB_KEY_ID_01"));
            vars.dedup_by_key(|(k, _)| *k);
            let err = settings(&vars).unwrap_err();
            assert_eq!(err.var, var, "{bad}");
            assert!(!err.to_string().contains(bad) || var != "WEIXIN_APIV3_KEY");
        }
        // Phones are v2's here.
        assert_eq!(
            with_id(&[("WEIXIN_H5", "true")]).unwrap_err().var,
            "WEIXIN_H5"
        );
        // v3 settings without v3 are a mistake worth a line.
        let err = settings(&[("WEIXIN_APIV3_KEY", KEY)]).unwrap_err();
        assert_eq!(err.var, "WEIXIN_APIV3_KEY");
        // Sandbox mode: the built-in sandbox's own keys; phones off.
        let s = settings(&[("WEIXIN_API_VERSION", "v3")]).unwrap();
        assert!(s.builtin_sandbox && s.v3.is_none() && !s.phones.h5);
    }

    #[test]
    fn checkout_fields_default_to_a_shipping_address_and_may_be_none() {
        use ContactField::*;
        assert_eq!(
            settings(&[]).unwrap().checkout_fields,
            vec![Name, Phone, Address]
        );
        assert_eq!(
            settings(&[("CHECKOUT_FIELDS", "note, EMAIL")])
                .unwrap()
                .checkout_fields,
            vec![Email, Note]
        );
        for none in ["", "none"] {
            assert!(settings(&[("CHECKOUT_FIELDS", none)])
                .unwrap()
                .checkout_fields
                .is_empty());
        }
        for bad in ["name,adress", "name,name", "none,name"] {
            let err = settings(&[("CHECKOUT_FIELDS", bad)]).unwrap_err();
            assert_eq!(err.var, "CHECKOUT_FIELDS", "{bad}");
        }
        let err = settings(&[("CATALOGUE_FILE", "goods.xlsx")]).unwrap_err();
        assert_eq!(err.var, "CATALOGUE_FILE");
    }

    #[test]
    fn the_footer_takes_a_filing_number_and_a_one_line_contact() {
        let s = settings(&[
            ("ICP_BEIAN", " 京ICP备12345678号-1 "),
            ("SHOP_CONTACT", "400-800-8888"),
        ])
        .unwrap();
        assert_eq!(s.footer.icp_beian.as_deref(), Some("京ICP备12345678号-1"));
        assert_eq!(s.footer.shop_contact.as_deref(), Some("400-800-8888"));
        assert_eq!(settings(&[]).unwrap().footer, Footer::default());
        for (var, bad) in [
            ("ICP_BEIAN", "12345678"),
            ("ICP_BEIAN", &"京ICP备".repeat(10)),
            ("SHOP_CONTACT", "line\nbreak"),
            ("SHOP_CONTACT", &"9".repeat(81)),
            ("NOTIFY_ALARM_WINDOW_SECS", "5"),
            ("NOTIFY_ALARM_MIN_PAYMENTS", "0"),
        ] {
            assert_eq!(settings(&[(var, bad)]).unwrap_err().var, var, "{bad}");
        }
    }

    #[test]
    fn an_explicit_api_base_in_sandbox_mode_means_an_external_sandbox() {
        let s = settings(&[("WEIXIN_API_BASE", "http://127.0.0.1:9999")]).unwrap();
        assert_eq!(s.mode, Mode::Sandbox);
        assert!(!s.builtin_sandbox);
        assert_eq!(s.api_base.as_str(), "http://127.0.0.1:9999/");
    }

    #[test]
    fn a_live_shop_must_be_named_and_a_sandbox_shop_has_the_demo_name() {
        let err = settings(&[
            ("WEIXIN_APPID", "wx1"),
            ("WEIXIN_PARTNER", "1"),
            ("WEIXIN_PARTNERKEY", KEY),
        ])
        .unwrap_err();
        assert_eq!(err.var, "SHOP_NAME");
        assert_eq!(settings(&[]).unwrap().shop_name, "茶舍 Tea House");
        assert_eq!(
            settings(&[("SHOP_NAME", &"名".repeat(41))])
                .unwrap_err()
                .var,
            "SHOP_NAME"
        );
    }

    #[test]
    fn merchant_credentials_select_live_mode_and_wechats_host() {
        let s = settings(&[
            ("WEIXIN_APPID", "wx8888888888888888"),
            ("WEIXIN_PARTNER", "1900000109"),
            ("WEIXIN_PARTNERKEY", KEY),
            ("SHOP_NAME", "龙井茶庄"),
            ("PUBLIC_BASE_URL", "https://shop.example.com/checkout"),
            ("LISTEN_ADDR", "0.0.0.0:8080"),
            ("WEIXIN_SIGN_TYPE", "HMAC-SHA256"),
            ("WEIXIN_CERT_P12", "/run/secrets/apiclient_cert.p12"),
        ])
        .unwrap();
        assert_eq!(s.mode, Mode::Live);
        assert_eq!(
            s.cert_files,
            Some(CertFiles::P12("/run/secrets/apiclient_cert.p12".into()))
        );
        assert!(s.auto_refund_late_payments);
        assert_eq!(
            s.refund_notify_url(s.listen_addr).as_str(),
            "https://shop.example.com/checkout/weixin/pay/refund/notify"
        );
        assert_eq!(s.shop_name, "龙井茶庄");
        assert!(!s.builtin_sandbox);
        assert_eq!(s.api_base.as_str(), "https://api.mch.weixin.qq.com/");
        assert_eq!(
            s.notify_url(s.listen_addr).as_str(),
            "https://shop.example.com/checkout/weixin/pay/notify/url"
        );
        assert_eq!(s.sign_type, SignType::HmacSha256);
    }

    #[test]
    fn unspecified_listen_address_is_reached_on_loopback() {
        let s = settings(&[("LISTEN_ADDR", "0.0.0.0:9000")]).unwrap();
        assert_eq!(
            s.public_base_url(s.listen_addr).as_str(),
            "http://127.0.0.1:9000/"
        );
        assert_eq!(s.spbill_create_ip(), "127.0.0.1");
        let bound: SocketAddr = "0.0.0.0:41234".parse().unwrap();
        assert_eq!(
            s.notify_url(bound).as_str(),
            "http://127.0.0.1:41234/weixin/pay/notify/url"
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("LISTEN_ADDR", "localhost")], "LISTEN_ADDR"),
            (&[("SANDBOX_LISTEN_ADDR", "1.2.3.4")], "SANDBOX_LISTEN_ADDR"),
            (&[("DATABASE_URL", "mysql://x")], "DATABASE_URL"),
            (&[("PUBLIC_BASE_URL", "ftp://x")], "PUBLIC_BASE_URL"),
            (
                &[("WEIXIN_NOTIFYURL", "https://x/n?a=1")],
                "WEIXIN_NOTIFYURL",
            ),
            (&[("WEIXIN_API_BASE", "nope")], "WEIXIN_API_BASE"),
            (&[("WEIXIN_SIGN_TYPE", "SHA1")], "WEIXIN_SIGN_TYPE"),
            (&[("ORDER_TTL_SECS", "299")], "ORDER_TTL_SECS"),
            (&[("ORDER_TTL_SECS", "ten")], "ORDER_TTL_SECS"),
            (
                &[("RECONCILE_INTERVAL_SECS", "0")],
                "RECONCILE_INTERVAL_SECS",
            ),
            (
                &[("RECONCILE_MAX_ATTEMPTS", "-1")],
                "RECONCILE_MAX_ATTEMPTS",
            ),
            (&[("LOG_FORMAT", "xml")], "LOG_FORMAT"),
            (&[("SANDBOX_TIME_SCALE", "0")], "SANDBOX_TIME_SCALE"),
            (&[("SANDBOX_TIME_SCALE", "2")], "SANDBOX_TIME_SCALE"),
            (&[("SANDBOX_FAULTS", "http_5xx=7")], "SANDBOX_FAULTS"),
            (&[("SANDBOX_MAX_ORDERS", "0")], "SANDBOX_MAX_ORDERS"),
            (&[("WEIXIN_APPID", "wx1")], "WEIXIN_PARTNER"),
            (
                &[("WEIXIN_APPID", "wx1"), ("WEIXIN_PARTNER", "1")],
                "WEIXIN_PARTNERKEY",
            ),
            (&[("WEIXIN_PARTNERKEY", KEY)], "WEIXIN_APPID"),
            (
                &[("WEBHOOK_URLS", "https://erp.example.com/h")],
                "WEBHOOK_SECRET",
            ),
            (
                &[
                    ("WEBHOOK_URLS", "https://erp.example.com/h"),
                    ("WEBHOOK_SECRET", "whsec_c2hvcnQ="),
                ],
                "WEBHOOK_SECRET",
            ),
            (
                &[("WEBHOOK_URLS", "ftp://erp.example.com/h?token=T0K")],
                "WEBHOOK_URLS",
            ),
            (
                &[("WEBHOOK_URLS", "https://a.example/h https://a.example/h")],
                "WEBHOOK_URLS",
            ),
            (
                &[("WECOM_ROBOT_URL", "qyapi.weixin.qq.com")],
                "WECOM_ROBOT_URL",
            ),
            (&[("WEBHOOK_RETRY_SCALE", "0")], "WEBHOOK_RETRY_SCALE"),
        ];
        for (vars, var) in cases {
            let err = settings(vars).unwrap_err();
            assert_eq!(err.var, *var, "{vars:?}");
            // A URL's token is never repeated.
            assert!(!err.to_string().contains("T0K"));
            assert!(!err.to_string().contains('\n'));
            assert!(err.to_string().contains(var));
        }
    }

    #[test]
    fn the_api_key_never_appears_in_errors_or_debug() {
        let short_key = "my-secret-but-too-short";
        let err = settings(&[
            ("WEIXIN_APPID", "wx1"),
            ("WEIXIN_PARTNER", "1"),
            ("WEIXIN_PARTNERKEY", short_key),
        ])
        .unwrap_err();
        assert_eq!(err.var, "WEIXIN_PARTNERKEY");
        assert!(!err.to_string().contains(short_key));
        let s = settings(&[
            ("WEIXIN_APPID", "wx1"),
            ("WEIXIN_PARTNER", "1"),
            ("WEIXIN_PARTNERKEY", KEY),
            ("SHOP_NAME", "龙井茶庄"),
            ("AUTO_REFUND_LATE_PAYMENTS", "false"),
        ])
        .unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains(KEY), "{shown}");
    }

    #[test]
    fn refunds_need_the_certificate_in_pairs_and_live_late_refunds_need_it_at_all() {
        let live = [
            ("WEIXIN_APPID", "wx1"),
            ("WEIXIN_PARTNER", "1"),
            ("WEIXIN_PARTNERKEY", KEY),
            ("SHOP_NAME", "龙井茶庄"),
        ];
        let err = settings(&live).unwrap().check_refunds().unwrap_err();
        assert_eq!(err.var, "AUTO_REFUND_LATE_PAYMENTS");
        assert!(err.problem.contains("WEIXIN_CERT_P12"), "{err}");
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut vars = live.to_vec();
            vars.extend_from_slice(extra);
            settings(&vars)
        };
        let off = with(&[("AUTO_REFUND_LATE_PAYMENTS", "0")]).unwrap();
        assert!(!off.auto_refund_late_payments);
        off.check_refunds().unwrap();
        assert_eq!(
            with(&[("WEIXIN_CERT_PEM", "c.pem"), ("WEIXIN_KEY_PEM", "k.pem")])
                .unwrap()
                .cert_files,
            Some(CertFiles::Pem {
                cert: "c.pem".into(),
                key: "k.pem".into()
            })
        );
        for (extra, var) in [
            (&[("WEIXIN_CERT_PEM", "c.pem")][..], "WEIXIN_KEY_PEM"),
            (&[("WEIXIN_KEY_PEM", "k.pem")][..], "WEIXIN_CERT_PEM"),
            (
                &[("WEIXIN_CERT_P12", "a.p12"), ("WEIXIN_CERT_PEM", "c.pem")][..],
                "WEIXIN_CERT_P12",
            ),
            (
                &[
                    ("WEIXIN_CERT_P12", "a.p12"),
                    ("WEIXIN_REFUND_NOTIFYURL", "https://x/?a=1"),
                ][..],
                "WEIXIN_REFUND_NOTIFYURL",
            ),
            (
                &[
                    ("WEIXIN_CERT_P12", "a.p12"),
                    ("AUTO_REFUND_LATE_PAYMENTS", "maybe"),
                ][..],
                "AUTO_REFUND_LATE_PAYMENTS",
            ),
        ] {
            assert_eq!(with(extra).unwrap_err().var, var, "{extra:?}");
        }
        // Sandbox mode has its own certificate.
        let sandbox = settings(&[]).unwrap();
        assert!(sandbox.auto_refund_late_payments);
        sandbox.check_refunds().unwrap();
    }

    #[test]
    fn contact_keys_and_retention_are_checked_without_echoing_a_key() {
        let a = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes
        let b = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA"; // 32 bytes, unpadded
        let s = settings(&[]).unwrap();
        assert_eq!(s.contact_retention_days, 1095);
        assert!(s.contact_keys.0.is_empty());
        assert_eq!(s.privacy_notice, None);
        let s = settings(&[
            ("CONTACT_KEY", &format!("{a}, {b}")),
            ("CONTACT_RETENTION_DAYS", "30"),
        ])
        .unwrap();
        assert_eq!(s.contact_keys.0.len(), 2);
        assert_eq!(&s.contact_keys.0[0], b"0123456789abcdef0123456789abcdef");
        assert_eq!(s.contact_retention_days, 30);
        assert!(!format!("{s:?}").contains(a));
        assert!(!format!("{s:?}").contains("0123456789abcdef"));
        let short = "c2VjcmV0LXNob3J0";
        for (vars, var) in [
            (vec![("CONTACT_KEY", short)], "CONTACT_KEY"),
            (vec![("CONTACT_KEY", "not base64!")], "CONTACT_KEY"),
            (vec![("CONTACT_KEY", &*format!("{a},"))], "CONTACT_KEY"),
            (
                vec![("CONTACT_RETENTION_DAYS", "0")],
                "CONTACT_RETENTION_DAYS",
            ),
            (
                vec![("CONTACT_RETENTION_DAYS", "-3")],
                "CONTACT_RETENTION_DAYS",
            ),
            (
                vec![("CONTACT_RETENTION_DAYS", "a year")],
                "CONTACT_RETENTION_DAYS",
            ),
            (
                vec![("CONTACT_RETENTION_DAYS", "36501")],
                "CONTACT_RETENTION_DAYS",
            ),
            (
                vec![("PRIVACY_NOTICE", &*"x".repeat(2001))],
                "PRIVACY_NOTICE",
            ),
        ] {
            let err = settings(&vars).unwrap_err();
            assert_eq!(err.var, var, "{vars:?}");
            assert!(!err.to_string().contains(short));
            assert!(!err.to_string().contains('\n'));
        }
        // Live mode with contact fields needs a key of its own; without fields, or in sandbox
        // mode, a generated one does.
        let live = [
            ("WEIXIN_APPID", "wx1"),
            ("WEIXIN_PARTNER", "1"),
            ("WEIXIN_PARTNERKEY", KEY),
            ("SHOP_NAME", "龙井茶庄"),
        ];
        let err = settings(&live).unwrap().check_contacts().unwrap_err();
        assert_eq!(err.var, "CONTACT_KEY");
        let mut keyed = live.to_vec();
        keyed.push(("CONTACT_KEY", a));
        settings(&keyed).unwrap().check_contacts().unwrap();
        let mut no_fields = live.to_vec();
        no_fields.push(("CHECKOUT_FIELDS", ""));
        settings(&no_fields).unwrap().check_contacts().unwrap();
        settings(&[]).unwrap().check_contacts().unwrap();
    }
}
