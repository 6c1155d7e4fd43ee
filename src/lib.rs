//! wxpay-checkout: a self-hosted WeChat Pay "Native" (scan-to-pay) checkout in one binary.
//!
//! # The outside contract
//!
//! What shoppers, WeChat Pay and merchants meet, and which this crate keeps: the commands
//! `serve` (the default; with no merchant credentials it also starts the built-in sandbox and
//! pays through it over real HTTP), `sandbox`, `healthcheck`, `catalogue import FILE
//! [--stock]`, `orders [--status S] [--since DATE] [--format table|csv|json]`, `refund
//! OUT_TRADE_NO [AMOUNT]`, `bill DATE`, `backup FILE`, `restore FILE`, `webhook-secret`, `doctor` and `admin hash-password`; the configuration variables ([`config`], tabled in the README); the catalogue file
//! formats ([`catalogue`]); the shop's pages (`/`, the cart `/cart`, the contact form
//! `/checkout` with its privacy notice, the direct buy `POST /orders`, `/pay/{no}` with an inline SVG QR code, its success
//! and failure pages, the receipt `/orders/{no}?t=…`); the merchant console under `/admin`; the seed front end's JSON routes
//! (`/weixin/pay/create/native`, `/weixin/pay/status/query`, in its `Result` shape with code
//! `20000`); WeChat's notify routes (`/weixin/pay/notify/url` and `/weixin/pay/refund/notify`,
//! answered in WeChat's XML once the payment or refund is durably recorded; API v3's
//! `/weixin/pay/v3/notify`, answered `204`); `/healthz` and `/metrics` on the operations address
//! (`OPS_LISTEN_ADDR`); and the sandbox's WeChat Pay v2 and v3 paths. The README describes each.
//!
//! # Layout
//!
//! - [`checkout`]: the checkout service — every payment flow a front end needs (catalogue,
//!   the cart and the contact form's rules, placing an order, the pay flow with its single-flight
//!   prepay, the payment status, the notify, the receipt, refunds exactly once and late payments
//!   refunded) and the reconciliation job (an order is over only when WeChat says so; finished
//!   orders are watched for late money; refunds are followed until settled; each day is
//!   reconciled against WeChat's trade bill), the delivery of outgoing events, notify health
//!   (the notify log and the missing-notify alarm, `checkout/health.rs`), the doctor's
//!   going-live checks (`checkout/doctor/`, v3's in `doctor/v3.rs`), the buyer's privacy notice and retention
//!   job (`checkout/privacy.rs`) and paying on a phone — H5 and JSAPI payment attempts, each
//!   its own WeChat order, the spare ones closed (`checkout/phones.rs`) — and push to the pay
//!   page (each order's changes to its listening pages, `checkout/push.rs`), with one error type,
//!   [`checkout::CheckoutError`]. WeChat Pay is reached through one interface over API v2 and
//!   v3 (`checkout/gateway/`: v3's answers and error codes read into the service's words); v3's
//!   notifies are `checkout/notify_v3.rs`.
//! - [`web`]: HTTP routes — shop, cart and checkout form (the cart lives in a cookie), pay page
//!   (which way to pay by the user agent, H5's and JSAPI's OAuth routes: `web/phone.rs`; its
//!   event stream: `web/events.rs`),
//!   receipt, seed JSON API, notify, operations. Thin: each handler calls one checkout flow and
//!   translates its answer; errors render in `web/error.rs`.
//! - [`catalogue`]: the merchant's catalogue files (TOML, CSV) read and checked line by line into
//!   entries the store upserts by sku; the demo catalogue.
//! - [`payments`]: the order side of a payment — the durable inbox recorder, the channel and the
//!   consumer that applies payments to orders (the only place an order becomes paid).
//! - [`store`]: all SQL — pools, migrations (`migrations/`), typed queries (`store/sql/`, one
//!   source compiled for SQLite and for PostgreSQL), the order cache, the order desk (group
//!   commit of new orders), backups of SQLite taken live and restored (`store/backup.rs`), the
//!   notify log and health alarms (`store/health.rs`), buyers' contact details sealed at rest
//!   with `CONTACT_KEY` and found by keyed hashes (`store/contacts.rs`; re-sealing, retention,
//!   a buyer's export and delete and the access log in `store/sql/contacts.rs`), payment
//!   attempts (`store/attempts.rs`, `store/sql/attempts.rs`), order changes between replicas
//!   by PostgreSQL's `NOTIFY`/`LISTEN` (`store/push.rs`).
//! - [`wxpay`]: the WeChat Pay v2 protocol — signing, the strict XML codec, typed messages
//!   (Native, H5 and JSAPI unifiedorder), JSAPI's signed page parameters (`wxpay/jsapi.rs`),
//!   the official account's OAuth for the openid (`wxpay/oauth.rs`), the client (with the merchant's client certificate for refunds), the payment notify,
//!   refunds and the encrypted refund notify, the daily trade bill and its strict reader,
//!   Beijing time; and beside it API v3 (`wxpay/v3/`): RSA request signing and answer
//!   verification with WeChat Pay's public key, notifies sealed with AES-256-GCM, the JSON
//!   messages and the client.
//! - [`webhooks`]: outgoing events' wire formats: Standard Webhooks (the event's JSON, the
//!   `whsec_` secret, the `v1,` HMAC-SHA256 signature and its headers), the targets, and the
//!   WeCom and DingTalk robots' markdown messages. The outbox they are delivered from is the
//!   store's (`store/sql/outbox.rs`, written in the transactions of the changes); fan-out and
//!   delivery are the checkout's (`checkout/outbox.rs`).
//! - [`sandbox`]: WeChat Pay's side of the same protocol, served over HTTP (and over TLS with
//!   its own CA for `/secapi/` refunds), v2 and v3 (`sandbox/v3/`: WeChat Pay's and the
//!   merchant's RSA keys — the merchant's also the TLS client certificate's — the v3 routes on
//!   the same book of orders, sealed v3 notifies): the product's zero-configuration default and
//!   the backbone of the end-to-end tests.
//! - [`domain`]: money in fen, order numbers, order states and their transitions — no I/O.
//! - [`config`]: settings from the environment; secrets wrapped.
//! - [`console`]: the merchant console's flows — sign-in (argon2, sessions, CSRF tokens, the
//!   lock-out), the order list and an order's timeline, shipping, products, the dashboard, the
//!   daily bill's results, a buyer's export and deletion and the log of who saw buyers' details
//!   (`console/privacy.rs`).
//! - [`cli`]: the merchant's command line (`orders`, `catalogue import`, `refund`, `bill`,
//!   `backup`, `restore`, `webhook-secret`, `doctor`, `admin hash-password`).
//! - [`startup`]: builds the application from settings, runs it, shuts it down in order.
//! - [`telemetry`]: tracing set-up and the metrics recorder.
//! - [`rt`]: keeps shared sockets and tasks on the application runtime, out of the web workers'
//!   short-lived ones; handed explicitly to everything that owns them.
//!
//! Dependencies point one way (a test below checks every `crate::` path against this list):
//! `web` uses `checkout`, `wxpay` (wire formats), `domain` and `telemetry`; `checkout` uses
//! `payments`, `store`, `wxpay`, `webhooks`, `domain` and `rt`; `payments` uses `store` and `domain`;
//! `store` uses `domain`, `rt` and `wxpay`'s `SignType`; `catalogue` uses `store` (its entry
//! type) and `domain`; `sandbox` uses `wxpay`, `rt` and `domain`'s money formatting; `wxpay` uses
//! `rt` only; `domain`, `rt` and `webhooks` use nothing of ours.

pub mod catalogue;
pub mod checkout;
pub mod cli;
pub mod config;
pub mod console;
pub mod domain;
pub mod payments;
pub mod rt;
pub mod sandbox;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod web;
pub mod webhooks;
pub mod wxpay;

#[cfg(test)]
mod layers {
    use std::path::Path;

    /// Which top-level modules each module may name (`crate::x`) outside its tests.
    const ALLOWED: &[(&str, &[&str])] = &[
        ("domain", &[]),
        ("rt", &[]),
        ("wxpay", &["rt"]),
        ("sandbox", &["wxpay", "rt", "domain"]),
        ("store", &["domain", "rt", "wxpay"]),
        ("payments", &["store", "domain"]),
        (
            "checkout",
            &["payments", "store", "wxpay", "domain", "rt", "webhooks"],
        ),
        (
            "web",
            &["checkout", "console", "wxpay", "domain", "telemetry"],
        ),
        ("console", &["store", "domain", "catalogue"]),
        ("telemetry", &["config"]),
        ("config", &["sandbox", "wxpay", "domain", "webhooks"]),
        ("catalogue", &["store", "domain"]),
        ("webhooks", &[]),
    ];

    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn dependencies_point_one_way() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut violations = Vec::new();
        for (module, allowed) in ALLOWED {
            let mut files = Vec::new();
            let dir = src.join(module);
            if dir.is_dir() {
                rust_files(&dir, &mut files);
            }
            let file = src.join(format!("{module}.rs"));
            if file.is_file() {
                files.push(file);
            }
            assert!(!files.is_empty(), "no source for {module}");
            for file in files {
                let text = std::fs::read_to_string(&file).unwrap();
                // A module's own tests may set up whatever they need.
                let text = text
                    .split("#[cfg(test)]\nmod tests")
                    .next()
                    .unwrap_or_default();
                for (at, _) in text.match_indices("crate::") {
                    let used: String = text[at + "crate::".len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if used != *module && !allowed.contains(&used.as_str()) {
                        violations.push(format!("{}: crate::{used}", file.display()));
                    }
                }
            }
        }
        assert!(violations.is_empty(), "{violations:#?}");
    }
}
