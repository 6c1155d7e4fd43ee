//! Chaos rounds for `scripts/chaos`: notify storms (duplicates included), status polling and
//! refunds against a shop that is stopped at a random moment and restarted — killed with
//! SIGKILL in odd rounds, asked to stop with SIGTERM in even ones — beside a standalone sandbox
//! injecting faults (5xx, timeouts, SYSTEMERROR, ORDERNOTEXIST answers to orderquery and
//! closeorder, dropped and duplicated notifies, FAIL notifies after declined payments; refunds
//! refused FREQUENCY_LIMITED, NOTENOUGH or USER_ACCOUNT_ABNORMAL, ending REFUNDCLOSE or CHANGE,
//! their notifies dropped; payments taken for closed orders). The shop reaches the sandbox over
//! TLS with the merchant certificate the sandbox wrote. Some shoppers are declined first and pay
//! on a second scan; meanwhile the merchant refunds orders paid earlier with
//! `wxpay-checkout refund` (see `chaos/refunds.rs`) and shoppers pay closed orders late. After
//! every round it waits for every order to be settled and checks the invariants — above all that
//! every payment the sandbox took is, by the end, a paid order or a late payment with its
//! refund; in SIGTERM rounds also that no request the shop took failed because it was stopping
//! (a graceful stop finishes what it started): no 500 for a status poll or a new shopper's
//! first pay page, no notify it could not record. At the end, with the faults off, it waits for
//! every refund to settle and checks that WeChat's refunds and the shop's are the same ones — and
//! that WeChat's trade bill of each day reconciles (`wxpay-checkout bill`) without one line that
//! differs — and that every paid order had exactly one `order.paid` event delivered to the
//! merchant's webhook receiver (which refuses one delivery in five; see `chaos/webhooks.rs`).
//! Prints rounds, stops, notifies, refunds and violations, and exits non-zero on any.
//!
//! Usage: `chaos BINARY [ROUNDS] [ORDERS_PER_ROUND]`

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use wxpay_checkout::wxpay::xml;

#[path = "support/notify.rs"]
mod notify;
use notify::signed_notify_at;
#[path = "chaos/refunds.rs"]
mod refunds;
use refunds::{Merchant, Refunds};
#[path = "chaos/webhooks.rs"]
mod webhooks;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_healthy(url: &str) {
    for _ in 0..400 {
        if reqwest::get(url)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{url} never became healthy");
}

struct Shop {
    binary: String,
    port: u16,
    database_url: String,
    /// How it reaches WeChat: the sandbox's TLS listener, its CA and the merchant certificate.
    wechat: Vec<(&'static str, String)>,
}

impl Shop {
    async fn start(&self) -> Proc {
        let child = Command::new(&self.binary)
            .env("LISTEN_ADDR", format!("127.0.0.1:{}", self.port))
            .env("OPS_LISTEN_ADDR", "127.0.0.1:0")
            .env("DATABASE_URL", &self.database_url)
            .envs(self.wechat.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RECONCILE_INTERVAL_SECS", "1")
            .env("RECONCILE_MAX_ATTEMPTS", "3")
            // Every chaos shopper is 127.0.0.1.
            .env("PENDING_ORDERS_PER_CLIENT", "0")
            // Digital goods: the chaos is in the payments, not the contact form.
            .env("CHECKOUT_FIELDS", "")
            .env("ORDER_RATE_PER_MINUTE", "0")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the shop starts");
        wait_healthy(&format!("http://127.0.0.1:{}/", self.port)).await;
        Proc(child)
    }
}

/// The Beijing days on which the run's payments were made (WeChat's `time_end`).
async fn bill_days(db: &sqlx::AnyPool) -> anyhow::Result<Vec<String>> {
    let times: Vec<(i64,)> =
        sqlx::query_as("SELECT pay_time FROM payment_events WHERE result = 'SUCCESS'")
            .fetch_all(db)
            .await?;
    let mut days: Vec<String> = times
        .into_iter()
        .filter_map(|(t,)| chrono::DateTime::from_timestamp(t + 8 * 3600, 0))
        .map(|t| t.format("%Y-%m-%d").to_string())
        .collect();
    days.sort();
    days.dedup();
    Ok(days)
}

/// A new, empty database in the PostgreSQL cluster at `cluster`: every run starts clean.
async fn fresh_postgres_database(cluster: &str) -> anyhow::Result<String> {
    let name = format!("chaos_{}", chrono::Utc::now().format("%Y%m%d%H%M%S%f"));
    let admin = sqlx::AnyPool::connect(cluster).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await?;
    admin.close().await;
    let base = cluster.rsplit_once('/').map_or(cluster, |(base, _)| base);
    Ok(format!("{base}/{name}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let binary = args
        .get(1)
        .cloned()
        .expect("usage: chaos BINARY [ROUNDS] [ORDERS]");
    let rounds: usize = args.get(2).map_or(Ok(5), |a| a.parse())?;
    let per_round: usize = args.get(3).map_or(Ok(30), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    sqlx::any::install_default_drivers();
    let database_url = match std::env::var("CHAOS_DATABASE_URL") {
        Ok(cluster) => fresh_postgres_database(&cluster).await?,
        Err(_) => format!("sqlite://{}/chaos.db", dir.path().display()),
    };

    let (sandbox_port, tls_port) = (free_port(), free_port());
    let certs = dir.path().join("certs");
    let _sandbox = Proc(
        Command::new(&binary)
            .arg("sandbox")
            .env("SANDBOX_LISTEN_ADDR", format!("127.0.0.1:{sandbox_port}"))
            .env("SANDBOX_TLS_LISTEN_ADDR", format!("127.0.0.1:{tls_port}"))
            .env("SANDBOX_CERT_DIR", &certs)
            .env("SANDBOX_TIME_SCALE", "0.001")
            .env("SANDBOX_CONTROLS", "1")
            // Every payment for a closed order goes through: only the harness makes them.
            .env(
                "SANDBOX_FAULTS",
                "latency_ms=2,http_5xx=0.05,timeout=0.01,system_error=0.05,order_not_exist=0.1,\
                 drop_notify=0.3,duplicate_notify=0.2,fail_notify=0.5,late_payment=1,\
                 refund_frequency_limited=0.1,refund_not_enough=0.03,\
                 refund_account_abnormal=0.03,refund_close=0.1,refund_change=0.03,\
                 drop_refund_notify=0.3",
            )
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let sandbox = format!("http://127.0.0.1:{sandbox_port}/");
    wait_healthy(&sandbox).await;
    // Written as the sandbox starts, the CA last.
    let (p12, ca) = (
        certs.join("apiclient_cert.p12"),
        certs.join("sandbox_ca.pem"),
    );
    let mut written = false;
    for _ in 0..400 {
        written = std::fs::read_to_string(&ca)
            .is_ok_and(|pem| pem.trim_end().ends_with("-----END CERTIFICATE-----"));
        if written {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::ensure!(
        written,
        "the sandbox wrote no certificates into {}",
        certs.display()
    );
    let hooks = webhooks::Hooks::start()?;
    let wechat = vec![
        ("WEBHOOK_URLS", hooks.url.clone()),
        ("WEBHOOK_SECRET", webhooks::SECRET.to_owned()),
        ("WEBHOOK_RETRY_SCALE", "0.001".to_owned()),
        ("WEIXIN_API_BASE", format!("https://127.0.0.1:{tls_port}/")),
        ("WEIXIN_CA_PEM", ca.display().to_string()),
        ("WEIXIN_CERT_P12", p12.display().to_string()),
    ];
    let shop = Shop {
        binary: binary.clone(),
        port: free_port(),
        database_url: database_url.clone(),
        wechat: wechat.clone(),
    };
    // The merchant refunds at the command line with the shop's configuration (its address
    // names the refund notify URL).
    let mut merchant_env = wechat;
    merchant_env.push(("DATABASE_URL", database_url.clone()));
    merchant_env.push(("LISTEN_ADDR", format!("127.0.0.1:{}", shop.port)));
    // Quiet: what it prints is read.
    merchant_env.push(("RUST_LOG", "error".into()));
    let refunds = Refunds::new(Merchant {
        binary: binary.clone(),
        env: merchant_env,
    });
    let mut running = shop.start().await;
    let base = format!("http://127.0.0.1:{}", shop.port);
    let db = sqlx::AnyPool::connect(&database_url).await?;
    // Ample stock so that every order can be placed.
    sqlx::query("UPDATE products SET stock = stock + 100000")
        .execute(&db)
        .await?;
    let initial: HashMap<i64, i64> =
        sqlx::query_as::<_, (i64, i64)>("SELECT id, stock FROM products")
            .fetch_all(&db)
            .await?
            .into_iter()
            .collect();

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()?;
    let (mut kills, mut terms, mut violations) = (0usize, 0usize, Vec::<String>::new());
    // Requests the shop took and failed on its side: a 5xx, or a notify it could not record.
    let failed: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let sent = Arc::new(AtomicUsize::new(0));
    let answered_success = Arc::new(AtomicUsize::new(0));
    // Every notify the shop answered SUCCESS: out_trade_no → transaction_id.
    let acknowledged: Arc<std::sync::Mutex<HashMap<String, String>>> = Arc::default();

    for round in 1..=rounds {
        let violations_before = violations.len();
        // Place and open orders (retrying across a restart is not needed: the shop is up).
        let mut orders = Vec::new();
        for i in 0..per_round {
            let sku = (i % 6 + 1).to_string();
            let placed = http
                .post(format!("{base}/orders"))
                .form(&[("sku_id", sku.as_str()), ("num", "1")])
                .send()
                .await?;
            let Some(location) = placed.headers().get("location") else {
                continue;
            };
            let location = location.to_str()?.to_owned();
            let no = location.trim_start_matches("/pay/").to_owned();
            // WeChat trouble (injected) may need a retry or two.
            for _ in 0..5 {
                if http.get(format!("{base}{location}")).send().await?.status() == 200 {
                    break;
                }
            }
            orders.push(no);
        }

        // The storm: pay most orders in the sandbox, notify the shop directly (duplicates too),
        // poll, and kill the shop at a random moment.
        let graceful = round % 2 == 0;
        failed.lock().unwrap().clear();
        let mut storm = tokio::task::JoinSet::new();
        for no in orders.clone() {
            let pay = rand::rng().random_bool(0.6);
            // Declined first (a PAYERROR, maybe with a FAIL notify), then paid on a rescan.
            let declined_first = rand::rng().random_bool(0.3);
            let (http, base, sandbox) = (http.clone(), base.clone(), sandbox.clone());
            let (sent, answered_success, acknowledged, failed) = (
                sent.clone(),
                answered_success.clone(),
                acknowledged.clone(),
                failed.clone(),
            );
            storm.spawn(async move {
                if let Ok(polled) = http
                    .get(format!("{base}/weixin/pay/status/query?out_trade_no={no}"))
                    .send()
                    .await
                {
                    if polled.status() == reqwest::StatusCode::INTERNAL_SERVER_ERROR {
                        let status = polled.status();
                        failed
                            .lock()
                            .unwrap()
                            .push(format!("status query {no}: {status}"));
                    }
                }
                if !pay {
                    return;
                }
                let Some(order) = refunds::sandbox_order(&http, &sandbox, &no).await else {
                    return;
                };
                let Some(code_url) = order["code_url"].as_str() else {
                    return;
                };
                if declined_first {
                    let _ = http
                        .post(format!("{sandbox}sandbox/pay"))
                        .json(&serde_json::json!({ "code_url": code_url, "outcome": "fail" }))
                        .send()
                        .await;
                }
                let Ok(paid) = http
                    .post(format!("{sandbox}sandbox/pay"))
                    .json(&serde_json::json!({ "code_url": code_url }))
                    .send()
                    .await
                else {
                    return;
                };
                let Ok(paid) = paid.json::<serde_json::Value>().await else {
                    return;
                };
                let (Some(tid), Some(fee)) =
                    (paid["transaction_id"].as_str(), paid["total_fee"].as_i64())
                else {
                    return;
                };
                // The payment's own time, as the sandbox (and its bill) has it.
                let Some(held) = refunds::sandbox_order(&http, &sandbox, &no).await else {
                    return;
                };
                let Some(time_end) = held["time_end"].as_str() else {
                    return;
                };
                let body = signed_notify_at(&no, fee, tid, time_end);
                let copies = rand::rng().random_range(1..4);
                for _ in 0..copies {
                    sent.fetch_add(1, Ordering::Relaxed);
                    let Ok(answer) = http
                        .post(format!("{base}/weixin/pay/notify/url"))
                        .body(body.clone())
                        .send()
                        .await
                    else {
                        continue;
                    };
                    let status = answer.status();
                    let Ok(answer) = answer.bytes().await else {
                        continue;
                    };
                    let fields = xml::decode(&answer).unwrap_or_default();
                    let return_msg = fields.get("return_msg").map(String::as_str);
                    if status == reqwest::StatusCode::INTERNAL_SERVER_ERROR
                        || return_msg == Some("temporarily unavailable")
                    {
                        failed
                            .lock()
                            .unwrap()
                            .push(format!("notify {no}: {status} {return_msg:?}"));
                    }
                    if fields.get("return_code").map(String::as_str) == Some("SUCCESS") {
                        answered_success.fetch_add(1, Ordering::Relaxed);
                        acknowledged
                            .lock()
                            .unwrap()
                            .insert(no.clone(), tid.to_owned());
                    }
                }
            });
        }
        // New shoppers arrive meanwhile: their first pay page visit calls unifiedorder and
        // writes the prepay while the shop may be stopping (a 503 "try again" is a fair answer
        // to injected WeChat trouble; a 500 is not).
        for i in 0..per_round / 5 {
            let (http, base, failed) = (http.clone(), base.clone(), failed.clone());
            storm.spawn(async move {
                let sku = (i % 6 + 1).to_string();
                let Ok(placed) = http
                    .post(format!("{base}/orders"))
                    .form(&[("sku_id", sku.as_str()), ("num", "1")])
                    .send()
                    .await
                else {
                    return;
                };
                let Some(location) = placed.headers().get("location").cloned() else {
                    return;
                };
                let location = location.to_str().unwrap_or_default();
                if let Ok(page) = http.get(format!("{base}{location}")).send().await {
                    if page.status() == reqwest::StatusCode::INTERNAL_SERVER_ERROR {
                        failed
                            .lock()
                            .unwrap()
                            .push(format!("pay page {location}: 500"));
                    }
                }
            });
        }
        // Meanwhile the merchant refunds orders paid in earlier rounds, and shoppers pay orders
        // that closed (WeChat takes the money: the shop must give it back by itself).
        refunds.start(&db, &mut storm, per_round / 3).await?;
        refunds
            .pay_late(&db, &http, &sandbox, &mut storm, per_round.div_ceil(10))
            .await?;
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(5..150))).await;
        if graceful {
            Command::new("kill")
                .args(["-TERM", &running.0.id().to_string()])
                .status()?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while running.0.try_wait()?.is_none() {
                if tokio::time::Instant::now() > deadline {
                    violations.push(format!(
                        "round {round}: SIGTERM did not stop the shop in 30 s"
                    ));
                    running.0.kill()?;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            running.0.wait()?;
            terms += 1;
        } else {
            running.0.kill()?; // SIGKILL
            running.0.wait()?;
            kills += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        running = shop.start().await;
        while storm.join_next().await.is_some() {}
        if graceful {
            for failure in failed.lock().unwrap().iter() {
                violations.push(format!(
                    "round {round}: failed while stopping gracefully: {failure}"
                ));
            }
        }

        // Orders left unpaid were abandoned an hour ago: the job must close them — those with a
        // prepay at WeChat first (their time_expire, which WeChat keeps, is still ahead: only a
        // confirmed close ends them), those without one when their time is up.
        let unpaid: Vec<String> =
            sqlx::query_scalar("SELECT out_trade_no FROM orders WHERE status = 'pending'")
                .fetch_all(&db)
                .await?;
        for no in &unpaid {
            let state: Option<serde_json::Value> = http
                .get(format!("{sandbox}sandbox/orders/{no}"))
                .send()
                .await?
                .json()
                .await
                .ok();
            if state.is_some_and(|s| s["trade_state"] == "SUCCESS") {
                continue; // paid; its notify or the job will settle it
            }
            sqlx::query(
                "UPDATE orders SET created_at = created_at - 3600,
                     expires_at = CASE WHEN code_url IS NULL THEN expires_at - 3600
                                       ELSE expires_at END
                 WHERE out_trade_no = $1 AND status = 'pending'",
            )
            .bind(no)
            .execute(&db)
            .await?;
        }
        let mut settled = false;
        for _ in 0..1200 {
            let pending: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE status = 'pending'")
                    .fetch_one(&db)
                    .await?;
            let unapplied: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM payment_events WHERE applied_at IS NULL")
                    .fetch_one(&db)
                    .await?;
            // Late payments reach the shop by WeChat's notify only; each must be refunded.
            if pending == 0
                && unapplied == 0
                && refunds::late_unrefunded_count(&db, &http, &sandbox).await? == 0
            {
                settled = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !settled {
            violations.push(format!("round {round}: orders still pending after 120 s"));
        }

        // Invariants. Every payment WeChat took ends up recorded: a paid order with that
        // transaction, or money due back (refunded by now, or due again if WeChat closed the
        // refund).
        let taken: Vec<serde_json::Value> = http
            .get(format!("{sandbox}sandbox/payments"))
            .send()
            .await?
            .json()
            .await?;
        for payment in &taken {
            let (no, tid) = (
                payment["out_trade_no"].as_str().unwrap_or_default(),
                payment["transaction_id"].as_str().unwrap_or_default(),
            );
            let row: Option<(String, Option<String>, i64, i64)> = sqlx::query_as(
                "SELECT status, transaction_id, CAST(refund_due AS BIGINT),
                        (SELECT COUNT(*) FROM refunds r
                         WHERE r.out_trade_no = orders.out_trade_no AND r.late = 1)
                 FROM orders WHERE out_trade_no = $1",
            )
            .bind(no)
            .fetch_optional(&db)
            .await?;
            let recorded = match &row {
                Some((status, paid_tid, _, _)) if status == "paid" => {
                    paid_tid.as_deref() == Some(tid)
                }
                Some((_, _, refund_due, late_refunds)) => *refund_due == 1 || *late_refunds > 0,
                None => false,
            };
            if !recorded {
                violations.push(format!(
                    "round {round}: WeChat took {tid} for {no}, which the shop has as {row:?}"
                ));
            }
        }
        let acknowledged_now = acknowledged.lock().unwrap().clone();
        for (no, tid) in &acknowledged_now {
            let row: Option<(String, Option<String>)> =
                sqlx::query_as("SELECT status, transaction_id FROM orders WHERE out_trade_no = $1")
                    .bind(no)
                    .fetch_optional(&db)
                    .await?;
            if row.as_ref().map(|(s, t)| (s.as_str(), t.as_deref()))
                != Some(("paid", Some(tid.as_str())))
            {
                violations.push(format!(
                    "round {round}: {no} was answered SUCCESS but is {row:?}"
                ));
            }
        }
        let paid: Vec<(String, String)> =
            sqlx::query_as("SELECT out_trade_no, transaction_id FROM orders WHERE status = 'paid'")
                .fetch_all(&db)
                .await?;
        for (no, tid) in &paid {
            let state: serde_json::Value = http
                .get(format!("{sandbox}sandbox/orders/{no}"))
                .send()
                .await?
                .json()
                .await?;
            // Paid, and maybe refunded since.
            if !(state["trade_state"] == "SUCCESS" || state["trade_state"] == "REFUND")
                || state["transaction_id"] != tid.as_str()
            {
                violations.push(format!(
                    "round {round}: {no} is paid here without that payment at WeChat"
                ));
            }
        }
        let doubles: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT transaction_id FROM payment_events
             WHERE transaction_id IS NOT NULL GROUP BY transaction_id HAVING COUNT(*) > 1) AS d",
        )
        .fetch_one(&db)
        .await?;
        if doubles > 0 {
            violations.push(format!(
                "round {round}: {doubles} transactions recorded twice"
            ));
        }
        // Stock: what was taken by pending and paid orders is gone, the rest came back once.
        for (product, start) in &initial {
            let stock: i64 = sqlx::query_scalar("SELECT stock FROM products WHERE id = $1")
                .bind(product)
                .fetch_one(&db)
                .await?;
            let held: i64 = sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(i.num), 0) AS BIGINT) FROM order_items i
                 JOIN orders o ON o.out_trade_no = i.out_trade_no
                 WHERE i.product_id = $1 AND o.status IN ('pending', 'paid')",
            )
            .bind(product)
            .fetch_one(&db)
            .await?;
            if stock != start - held {
                violations.push(format!(
                    "round {round}: product {product} has {stock}, expected {}",
                    start - held
                ));
            }
        }
        if database_url.starts_with("sqlite") {
            let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
                .fetch_one(&db)
                .await?;
            if integrity != "ok" {
                violations.push(format!("round {round}: integrity_check says {integrity}"));
            }
        }
        // Refunds never exceed payments, on either side, and every refund WeChat made is the
        // shop's (their states are compared at the end, when all have settled).
        let (refund_violations, figures) = refunds::check(&db, &http, &sandbox, false).await?;
        violations.extend(
            refund_violations
                .into_iter()
                .map(|v| format!("round {round}: {v}")),
        );
        let (orders_total, paid_total): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(CASE WHEN status = 'paid' THEN 1 ELSE 0 END), 0) AS BIGINT) FROM orders",
        )
        .fetch_one(&db)
        .await?;
        let failure_notes: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM payment_events WHERE outcome = 'payerror'")
                .fetch_one(&db)
                .await?;
        eprintln!(
            "round {round}: {orders_total} orders ({paid_total} paid), {} payments at WeChat, \
             {failure_notes} FAIL notifies recorded, {} notifies sent, {} answered SUCCESS, \
             refunds: {} ({} late, for {} late payments), {} violations",
            taken.len(),
            sent.load(Ordering::Relaxed),
            answered_success.load(Ordering::Relaxed),
            refunds::listed(&figures.shop),
            figures.late_refunds,
            figures.late_payments,
            violations.len()
        );
        for v in &violations[violations_before..] {
            eprintln!("  {v}");
        }
    }

    // The end. First a few refunds whose answers WeChat loses (made, the answer held past the
    // client's patience, the command killed; their notifies dropped for a while, so that the
    // shop's follower asks again); then faults off, and time for the shop to follow
    // every refund to its end (the follower's waits brought forward); then the refunds
    // compared one by one.
    let set_faults = |faults: serde_json::Value| {
        http.put(format!("{sandbox}sandbox/faults"))
            .json(&faults)
            .send()
    };
    set_faults(serde_json::json!({ "timeout": 0.6, "drop_refund_notify": 1.0 }))
        .await?
        .error_for_status()?;
    refunds.lose_answers(&db, per_round.div_ceil(5)).await?;
    set_faults(serde_json::json!({}))
        .await?
        .error_for_status()?;
    let waited = tokio::time::Instant::now();
    let mut unsettled = refunds::unsettled(&db, &http, &sandbox).await?;
    while unsettled > 0 && waited.elapsed() < Duration::from_secs(120) {
        refunds::hurry_followers(&db).await?;
        tokio::time::sleep(Duration::from_millis(250)).await;
        unsettled = refunds::unsettled(&db, &http, &sandbox).await?;
    }
    if unsettled > 0 {
        violations.push(format!(
            "end: {unsettled} refunds or late payments unsettled after 120 s without faults"
        ));
    }
    let (refund_violations, figures) = refunds::check(&db, &http, &sandbox, true).await?;
    violations.extend(refund_violations.into_iter().map(|v| format!("end: {v}")));
    // And WeChat's own trade bill of every day the run paid on, reconciled by the merchant's
    // `wxpay-checkout bill`: not one line may differ from the shop's records.
    let bill_days = bill_days(&db).await?;
    for day in &bill_days {
        let output = Command::new(&binary)
            .arg("bill")
            .arg(day)
            .envs(refunds.merchant.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .output()?;
        let out = String::from_utf8_lossy(&output.stdout);
        let headline = out.lines().next().unwrap_or_default();
        if !output.status.success()
            || !headline.starts_with(&format!("{day}: reconciled"))
            || !headline.ends_with(" 0 open discrepancies")
        {
            violations.push(format!(
                "end: the bill of {day} differs from the shop's records: {} {}",
                out.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
    }
    // Every paid order's order.paid event, delivered once by id.
    let (hook_violations, hook_figures) = hooks.check(&db).await?;
    violations.extend(hook_violations.into_iter().map(|v| format!("end: {v}")));
    drop(running);
    let stats: serde_json::Value = http
        .get(format!("{sandbox}sandbox/stats"))
        .send()
        .await?
        .json()
        .await?;
    let tally = refunds.tally.lock().unwrap();
    println!(
        "rounds {rounds}, SIGKILL {kills}, SIGTERM {terms}, notifies {} (answered SUCCESS {}), \
         violations {}",
        sent.load(Ordering::Relaxed),
        answered_success.load(Ordering::Relaxed),
        violations.len()
    );
    println!(
        "refund commands {} ({} full, {} partial; {} orders by two at once, {} killed at a random \
         moment, {} while WeChat lost answers): {}",
        tally.full + tally.partial,
        tally.full,
        tally.partial,
        tally.concurrent,
        tally.killed,
        tally.lost_answers,
        refunds::listed(&tally.outcomes)
    );
    println!(
        "refunds at the shop: {} ({} taken up by its follower); at WeChat: {}; {} refund calls, \
         {} refund notifies sent; late payments {} ({} made by the harness), late refunds {}; \
         all settled {:.1} s after the faults stopped",
        refunds::listed(&figures.shop),
        figures.followed,
        refunds::listed(&figures.wechat),
        stats["refund"],
        stats["refund_notify_attempts"],
        figures.late_payments,
        tally.late_payments,
        figures.late_refunds,
        waited.elapsed().as_secs_f64()
    );
    println!("{hook_figures}");
    println!(
        "daily bills reconciled: {} ({})",
        bill_days.len(),
        bill_days.join(", ")
    );
    for v in &violations {
        println!("VIOLATION {v}");
    }
    if !violations.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
