//! Crash safety: the shop is killed with SIGKILL while notifies are in flight and restarted on
//! the same database; every notify it answered SUCCESS must be applied, exactly once.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tempfile::{NamedTempFile, TempDir};
use wxpay_checkout::wxpay::xml;

use crate::helpers::{
    database_url, no_redirects, on_postgres, place_order_at, raw_pool, sigterm, wait_for_zero,
};
use crate::notify::{notify_fields, signed};

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The shop as a child process; killed (SIGKILL) and reaped when dropped. Its log, when kept,
/// is printed if the test fails.
pub(crate) struct Shop(pub(crate) Child, pub(crate) Option<NamedTempFile>);

impl Shop {
    pub(crate) fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        self.kill();
        if let (true, Some(log)) = (std::thread::panicking(), &self.1) {
            let log = std::fs::read_to_string(log.path()).unwrap_or_default();
            eprintln!("--- the shop's log ---\n{log}--- end of the shop's log ---");
        }
    }
}

/// The log file opened for appending, so that stdout and stderr do not overwrite each other.
fn append_to(log: &NamedTempFile) -> std::fs::File {
    std::fs::OpenOptions::new()
        .append(true)
        .open(log.path())
        .unwrap()
}

/// Starts the shop binary on `port` over `database_url`, and waits until it is healthy.
async fn start_shop(database_url: &str, port: u16) -> Shop {
    start_shop_with(database_url, port, &[("SANDBOX_FAULTS", "drop_notify=1")]).await
}

/// `wxpay-checkout sandbox` on its own (fast clocks, test controls), for shops that share it;
/// with its base URL (ending in `/`), once it answers.
pub(crate) async fn start_sandbox() -> (Shop, String) {
    let port = free_port();
    let sandbox = Shop(
        Command::new(env!("CARGO_BIN_EXE_wxpay-checkout"))
            .arg("sandbox")
            .env("SANDBOX_LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("SANDBOX_TLS_LISTEN_ADDR", "127.0.0.1:0")
            .env("SANDBOX_TIME_SCALE", "0.001")
            .env("SANDBOX_CONTROLS", "1")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        None,
    );
    let base = format!("http://127.0.0.1:{port}/");
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while reqwest::get(&base).await.is_err() {
        assert!(
            tokio::time::Instant::now() < until,
            "the sandbox did not start"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    (sandbox, base)
}

/// The same, with more environment.
pub(crate) async fn start_shop_with(database_url: &str, port: u16, env: &[(&str, &str)]) -> Shop {
    let log = NamedTempFile::new().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_wxpay-checkout"));
    command
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("OPS_LISTEN_ADDR", "127.0.0.1:0")
        .env("SANDBOX_LISTEN_ADDR", "127.0.0.1:0")
        .env("SANDBOX_TLS_LISTEN_ADDR", "127.0.0.1:0")
        .env("SANDBOX_CONTROLS", "1")
        .env("PENDING_ORDERS_PER_CLIENT", "0")
        .env("ORDER_RATE_PER_MINUTE", "0")
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .stdout(append_to(&log))
        .stderr(append_to(&log));
    for (name, value) in env {
        command.env(name, value);
    }
    let shop = Shop(command.spawn().unwrap(), Some(log));
    // Ready when the shop answers its catalogue (health is on the operations port).
    let health = format!("http://127.0.0.1:{port}/");
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(&health).await {
            if r.status() == 200 {
                return shop;
            }
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the shop did not start"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn every_notify_answered_success_survives_sigkill_and_is_applied_once() {
    let dir = TempDir::new().unwrap();
    let database_url = database_url(&dir).await;
    let port = free_port();
    let mut shop = start_shop(&database_url, port).await;
    let base = format!("http://127.0.0.1:{port}");
    let http = no_redirects();

    // Forty orders with prepays.
    let mut orders = Vec::new();
    for i in 0..40 {
        let location = place_order_at(&http, &base, &(i % 3 + 1).to_string()).await;
        assert_eq!(
            http.get(format!("{base}{location}"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        orders.push(location.trim_start_matches("/pay/").to_owned());
    }
    let db = raw_pool(&database_url).await;
    let mut notifies = Vec::new();
    for (i, no) in orders.iter().enumerate() {
        let total: i64 = sqlx::query_scalar("SELECT total_fee FROM orders WHERE out_trade_no = $1")
            .bind(no)
            .fetch_one(&db)
            .await
            .unwrap();
        let tid = format!("42000012342026112800{i:08}");
        notifies.push((
            no.clone(),
            tid.clone(),
            signed(&notify_fields(no, total, &tid), false),
        ));
    }

    // Three copies of every notify at once; kill the shop once some have been answered.
    let answered = Arc::new(AtomicUsize::new(0));
    let mut sends = Vec::new();
    for _ in 0..3 {
        for (no, _, body) in &notifies {
            let (http, url, body, no, answered) = (
                http.clone(),
                format!("{base}/weixin/pay/notify/url"),
                body.clone(),
                no.clone(),
                answered.clone(),
            );
            sends.push(tokio::spawn(async move {
                let response = http.post(url).body(body).send().await.ok()?;
                let bytes = response.bytes().await.ok()?;
                let fields = xml::decode(&bytes).ok()?;
                let success = fields.get("return_code").map(String::as_str) == Some("SUCCESS");
                if success {
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                success.then_some(no)
            }));
        }
    }
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while answered.load(Ordering::SeqCst) < 5 {
        assert!(
            tokio::time::Instant::now() < until,
            "no notify was answered"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    shop.kill(); // SIGKILL
    let mut acknowledged: HashMap<String, usize> = HashMap::new();
    for send in sends {
        if let Some(no) = send.await.unwrap() {
            *acknowledged.entry(no).or_default() += 1;
        }
    }
    assert!(!acknowledged.is_empty());

    // Restart on the same database: the replay applies whatever was recorded.
    let port = free_port();
    let mut shop = start_shop(&database_url, port).await;
    let expected: HashMap<&str, &str> = notifies
        .iter()
        .map(|(no, tid, _)| (no.as_str(), tid.as_str()))
        .collect();
    wait_for_zero(
        &db,
        "SELECT COUNT(*) FROM payment_events WHERE applied_at IS NULL",
        Duration::from_secs(20),
    )
    .await;
    for no in acknowledged.keys() {
        let (status, tid): (String, Option<String>) =
            sqlx::query_as("SELECT status, transaction_id FROM orders WHERE out_trade_no = $1")
                .bind(no)
                .fetch_one(&db)
                .await
                .unwrap();
        assert_eq!(status, "paid", "{no} was answered SUCCESS but is not paid");
        assert_eq!(tid.as_deref(), Some(expected[no.as_str()]));
    }
    // Exactly once: one event per transaction, applied as "paid" once; no other payments.
    let rows: Vec<(String, i64, Option<String>)> = sqlx::query_as(
        "SELECT transaction_id, COUNT(*), MIN(outcome) FROM payment_events GROUP BY transaction_id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    for (tid, count, outcome) in &rows {
        assert_eq!((*count, outcome.as_deref()), (1, Some("paid")), "{tid}");
    }
    let paid: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE status = 'paid'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(paid as usize, rows.len());
    assert!(paid as usize >= acknowledged.len());
    shop.kill();
}

#[tokio::test]
async fn sigterm_finishes_requests_in_flight_and_drains_the_payments_channel() {
    let dir = TempDir::new().unwrap();
    let database_url = database_url(&dir).await;
    let port = free_port();
    let sandbox = format!("127.0.0.1:{}", free_port());
    // Slow WeChat answers keep a pay page request in flight when the signal comes.
    let mut shop = start_shop_with(
        &database_url,
        port,
        &[
            ("SANDBOX_FAULTS", "drop_notify=1,latency_ms=1000"),
            ("SANDBOX_LISTEN_ADDR", &sandbox),
            ("SANDBOX_TLS_LISTEN_ADDR", "127.0.0.1:0"),
        ],
    )
    .await;
    let base = format!("http://127.0.0.1:{port}");
    let http = no_redirects();
    let mut orders = Vec::new();
    for i in 0..20 {
        let location = place_order_at(&http, &base, &(i % 3 + 1).to_string()).await;
        orders.push(location.trim_start_matches("/pay/").to_owned());
    }
    let db = raw_pool(&database_url).await;
    let mut sends = Vec::new();
    for (i, no) in orders.iter().enumerate().skip(1) {
        let total: i64 = sqlx::query_scalar("SELECT total_fee FROM orders WHERE out_trade_no = $1")
            .bind(no)
            .fetch_one(&db)
            .await
            .unwrap();
        let body = signed(
            &notify_fields(no, total, &format!("42000012342026112811{i:08}")),
            false,
        );
        let (http, url) = (http.clone(), format!("{base}/weixin/pay/notify/url"));
        sends.push(tokio::spawn(async move {
            let answer = http
                .post(url)
                .body(body)
                .send()
                .await
                .ok()?
                .bytes()
                .await
                .ok()?;
            let fields = xml::decode(&answer).ok()?;
            (fields.get("return_code").map(String::as_str) == Some("SUCCESS")).then_some(())
        }));
    }
    // A first pay page visit: it waits on the (slow) unifiedorder.
    let in_flight = tokio::spawn({
        let url = format!("{base}/pay/{}", orders[0]);
        let http = http.clone();
        async move { http.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    // The sandbox counts the call as it arrives, before its latency: then the page is waiting.
    let stats = format!("http://{sandbox}/sandbox/stats");
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stats: serde_json::Value = http.get(&stats).send().await.unwrap().json().await.unwrap();
        if stats["unifiedorder"] == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "unifiedorder never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sigterm(&shop.0);
    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        200,
        "the request in flight completes"
    );
    let mut answered = 0;
    for send in sends {
        if send.await.unwrap().is_some() {
            answered += 1;
        }
    }
    let status = shop.0.wait().unwrap();
    assert!(status.success(), "a clean exit: {status:?}");
    // Everything answered SUCCESS was applied before the process ended: no replay needed.
    let (events, unapplied): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(*) - COUNT(applied_at) FROM payment_events")
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(events >= answered, "{events} events for {answered} answers");
    assert_eq!(unapplied, 0);
    if !on_postgres() {
        let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&db)
            .await
            .unwrap();
        assert_eq!(integrity, "ok");
    }
    shop.kill();
}
