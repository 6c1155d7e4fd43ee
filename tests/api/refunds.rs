//! Refunds end to end: the merchant refunds from the console, the shop asks the built-in
//! sandbox over mutual TLS with the certificate the sandbox issued, WeChat's refund notify or
//! the follower's refund query settles it, and the shopper's receipt shows it.

use std::time::Duration;

use chrono::Duration as Span;

use crate::admin::sign_in;
use crate::helpers::{demo_merchant, TestApp};

/// A paid order of `num` of product `sku_id`: its number.
async fn paid_order(app: &TestApp, sku_id: i64, num: i64) -> String {
    let no = app.place_order(sku_id, num).await;
    let code_url = app.open_pay_page(&no).await;
    app.pay_in_sandbox(&code_url).await;
    assert!(
        app.wait_for_status(&no, "paid", Duration::from_secs(10))
            .await,
        "never paid"
    );
    no
}

/// The console's refund form for `no`.
async fn refund(
    http: &reqwest::Client,
    app: &TestApp,
    csrf: &str,
    no: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = vec![("csrf", csrf)];
    form.extend_from_slice(fields);
    http.post(app.url(&format!("/admin/orders/{no}/refunds")))
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// A console page, as the signed-in merchant sees it.
async fn console_page(http: &reqwest::Client, app: &TestApp, path: &str) -> String {
    http.get(app.url(path))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The shop's refunds of an order: (out_refund_no, fee, status, late), oldest first.
async fn refunds_of(app: &TestApp, no: &str) -> Vec<(String, i64, String, i64)> {
    sqlx::query_as(
        "SELECT out_refund_no, refund_fee, status, late FROM refunds WHERE out_trade_no = $1
         ORDER BY created_at, out_refund_no",
    )
    .bind(no)
    .fetch_all(&app.db)
    .await
    .unwrap()
}

/// Waits until every refund of `no` is `status`.
pub(crate) async fn wait_refunds(
    app: &TestApp,
    no: &str,
    count: usize,
    status: &str,
    deadline: Duration,
) {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let refunds = refunds_of(app, no).await;
        if refunds.len() == count && refunds.iter().all(|r| r.2 == status) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "refunds of {no} never all {status}: {refunds:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn refunds_at_wechat(order: &serde_json::Value) -> Vec<(String, i64, String)> {
    order["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["out_refund_no"].as_str().unwrap().to_owned(),
                r["refund_fee"].as_i64().unwrap(),
                r["refund_status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_full_refund_in_three_parts_settles_restocks_once_and_shows_on_the_receipt() {
    let app = TestApp::spawn().await;
    let stock_before = app.stock(4).await;
    let no = paid_order(&app, 4, 2).await;
    let total: i64 = sqlx::query_scalar("SELECT total_fee FROM orders WHERE out_trade_no = $1")
        .bind(&no)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(app.stock(4).await, stock_before - 2);
    let (http, csrf) = sign_in(&app).await;

    let first = refund(
        &http,
        &app,
        &csrf,
        &no,
        &[("amount", "1.00"), ("reason", "少一包 one short")],
    )
    .await;
    assert_eq!(first.status(), 303, "{:?}", first.text().await);
    let second = refund(&http, &app, &csrf, &no, &[("amount", "2.50")]).await;
    assert_eq!(second.status(), 303);
    let partly = console_page(&http, &app, &format!("/admin/orders/{no}")).await;
    assert!(partly.contains("refunded in part (¥3.50 of"), "{partly}");
    let calls_before = app.sandbox_stats().await["refund"].as_u64().unwrap();
    // More than is left is refused by the shop: WeChat never hears of it.
    let left = format!("{}.{:02}", (total - 350) / 100, (total - 350) % 100);
    let over = format!("{}.{:02}", (total - 349) / 100, (total - 349) % 100);
    let refused = refund(&http, &app, &csrf, &no, &[("amount", over.as_str())]).await;
    assert_eq!(refused.status(), 409);
    assert!(refused.text().await.unwrap().contains(&format!("¥{left}")));
    assert_eq!(
        app.sandbox_stats().await["refund"].as_u64().unwrap(),
        calls_before
    );
    // The rest, with the goods back on the shelf.
    let rest = refund(&http, &app, &csrf, &no, &[("restock", "1"), ("reason", "")]).await;
    assert_eq!(rest.status(), 303);
    // WeChat's refund notifies settle all three.
    wait_refunds(&app, &no, 3, "succeeded", Duration::from_secs(10)).await;
    let ours = refunds_of(&app, &no).await;
    assert_eq!(ours.iter().map(|r| r.1).sum::<i64>(), total);
    let mut amounts: Vec<i64> = ours.iter().map(|r| r.1).collect();
    amounts.sort_unstable();
    let mut expected = vec![100, 250, total - 350];
    expected.sort_unstable();
    assert_eq!(amounts, expected);
    let theirs = refunds_at_wechat(&app.sandbox_order(&no).await);
    assert_eq!(theirs.len(), 3);
    for (out_refund_no, fee, _) in &ours
        .iter()
        .map(|r| (r.0.clone(), r.1, ()))
        .collect::<Vec<_>>()
    {
        assert!(
            theirs
                .iter()
                .any(|t| &t.0 == out_refund_no && t.1 == *fee && t.2 == "SUCCESS"),
            "{out_refund_no} at WeChat: {theirs:?}"
        );
    }
    assert_eq!(app.stock(4).await, stock_before, "restocked once");
    // Nothing is left: the form says so, and WeChat is not asked.
    let nothing = refund(&http, &app, &csrf, &no, &[]).await;
    assert_eq!(nothing.status(), 409);

    let page = console_page(&http, &app, &format!("/admin/orders/{no}")).await;
    assert!(page.contains("id=\"refunds\""), "{page}");
    let dashboard = console_page(&http, &app, "/admin").await;
    let refunded_today = format!("id=\"today-refunded\">¥{}.{:02}<", total / 100, total % 100);
    assert!(dashboard.contains(&refunded_today), "{dashboard}");
    assert!(
        page.contains(">refunded<"),
        "the order is listed as refunded: {page}"
    );
    let token: String =
        sqlx::query_scalar("SELECT receipt_token FROM orders WHERE out_trade_no = $1")
            .bind(&no)
            .fetch_one(&app.db)
            .await
            .unwrap();
    let receipt = app
        .get(&format!("/orders/{no}?t={token}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(receipt.contains("已退款 Refunded"), "{receipt}");
    assert_eq!(receipt.matches("class=\"refund-succeeded\"").count(), 3);
}

#[tokio::test]
async fn twenty_refunds_at_once_never_exceed_what_was_paid() {
    let app = TestApp::spawn().await;
    let no = paid_order(&app, 1, 1).await;
    let total: i64 = sqlx::query_scalar("SELECT total_fee FROM orders WHERE out_trade_no = $1")
        .bind(&no)
        .fetch_one(&app.db)
        .await
        .unwrap();
    let (http, csrf) = sign_in(&app).await;
    // Each a fifth of the payment, plus a fen: at most four fit.
    let each = total / 5 + 1;
    let amount = format!("{}.{:02}", each / 100, each % 100);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (http, csrf, no, amount) = (http.clone(), csrf.clone(), no.clone(), amount.clone());
            let url = app.url(&format!("/admin/orders/{no}/refunds"));
            tokio::spawn(async move {
                http.post(url)
                    .form(&[("csrf", csrf.as_str()), ("amount", amount.as_str())])
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        match task.await.unwrap() {
            303 => accepted += 1,
            409 => {}
            other => panic!("status {other}"),
        }
    }
    assert_eq!(accepted, 4);
    wait_refunds(&app, &no, 4, "succeeded", Duration::from_secs(10)).await;
    let theirs = refunds_at_wechat(&app.sandbox_order(&no).await);
    assert_eq!(theirs.len(), 4);
    assert!(theirs.iter().map(|t| t.1).sum::<i64>() <= total);
    let refunded: i64 =
        sqlx::query_scalar("SELECT refunded_fee FROM orders WHERE out_trade_no = $1")
            .bind(&no)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(refunded, 4 * each);
}

#[tokio::test]
async fn a_dropped_refund_notify_settles_through_the_refund_query() {
    // The shop's own job runs every second: it follows the refund.
    let app = TestApp::spawn_with(&[("RECONCILE_INTERVAL_SECS", "1")]).await;
    let no = paid_order(&app, 2, 1).await;
    app.set_faults(serde_json::json!({ "drop_refund_notify": 1.0 }))
        .await;
    let (http, csrf) = sign_in(&app).await;
    assert_eq!(refund(&http, &app, &csrf, &no, &[]).await.status(), 303);
    wait_refunds(&app, &no, 1, "succeeded", Duration::from_secs(15)).await;
    let order = app.sandbox_order(&no).await;
    assert_eq!(order["refunds"][0]["notify_acknowledged"], false, "{order}");
    assert!(app.sandbox_stats().await["refundquery"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn a_refund_wechat_refuses_frees_its_amount_and_says_why() {
    let app = TestApp::spawn().await;
    let no = paid_order(&app, 3, 1).await;
    app.set_faults(serde_json::json!({ "refund_not_enough": 1.0 }))
        .await;
    let (http, csrf) = sign_in(&app).await;
    assert_eq!(refund(&http, &app, &csrf, &no, &[]).await.status(), 303);
    let refunds = refunds_of(&app, &no).await;
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].2, "closed");
    let page = console_page(&http, &app, &format!("/admin/orders/{no}")).await;
    assert!(page.contains("NOTENOUGH"), "{page}");
    // Nothing was refunded: the whole amount may be refunded again.
    app.set_faults(serde_json::json!({})).await;
    assert_eq!(refund(&http, &app, &csrf, &no, &[]).await.status(), 303);
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while !refunds_of(&app, &no)
        .await
        .iter()
        .any(|r| r.2 == "succeeded")
    {
        assert!(tokio::time::Instant::now() < until, "never refunded");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_late_payment_is_refunded_automatically_and_the_shopper_is_told() {
    let app = TestApp::spawn().await;
    let no = app.place_order(4, 1).await;
    let code_url = app.open_pay_page(&no).await;
    let job = app.reconciler(1).await;
    let report = job
        .run_once(app.created_at(&no).await + Span::minutes(6))
        .await
        .unwrap();
    assert_eq!(report.closed, 1, "{report:?}");
    // WeChat takes the money all the same.
    app.set_faults(serde_json::json!({ "late_payment": 1.0 }))
        .await;
    let paid = app.pay_in_sandbox(&code_url).await;
    let total = paid["total_fee"].as_i64().unwrap();
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let refunds = refunds_of(&app, &no).await;
        if refunds.len() == 1 && refunds[0].2 == "succeeded" {
            assert_eq!(
                (refunds[0].1, refunds[0].3),
                (total, 1),
                "the whole payment, late"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "never refunded: {refunds:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let refund_due: i64 =
        sqlx::query_scalar("SELECT CAST(refund_due AS BIGINT) FROM orders WHERE out_trade_no = $1")
            .bind(&no)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(refund_due, 0);
    let theirs = refunds_at_wechat(&app.sandbox_order(&no).await);
    assert_eq!(theirs.len(), 1);
    assert_eq!((theirs[0].1, theirs[0].2.as_str()), (total, "SUCCESS"));
    let page = app
        .get(&format!("/pay/{no}/failed"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("has been refunded"), "{page}");
    assert!(page.contains(paid["transaction_id"].as_str().unwrap()));
}

#[tokio::test]
async fn a_forged_refund_notify_changes_nothing() {
    use wxpay_checkout::wxpay::refund::{refund_notify_body, RefundNotice};
    use wxpay_checkout::wxpay::RefundStatus;
    let app = TestApp::spawn().await;
    let no = paid_order(&app, 1, 1).await;
    let before: i64 = sqlx::query_scalar("SELECT refunded_fee FROM orders WHERE out_trade_no = $1")
        .bind(&no)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(before, 0);
    let mut forger = demo_merchant();
    forger.key = "00000000000000000000000000000000".to_owned().into();
    for (merchant, note) in [
        (forger, "wrong key"),
        (demo_merchant(), "unknown refund, right key"),
    ] {
        let notice = RefundNotice {
            out_trade_no: no.clone(),
            transaction_id: "4200000000000000000000000009".into(),
            out_refund_no: format!("F{no}"),
            refund_id: "50000000000000000000000000009".into(),
            total_fee: 100,
            refund_fee: 100,
            settlement_refund_fee: Some(100),
            status: RefundStatus::Success,
            success_time: Some("2026-11-30 12:00:00".into()),
            refund_recv_accout: None,
            settlement_total_fee: None,
            refund_account: None,
            refund_request_source: None,
        };
        let answer = app
            .http
            .post(app.url("/weixin/pay/refund/notify"))
            .body(refund_notify_body(&merchant, &notice, "n0nce"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if note == "wrong key" {
            assert!(answer.contains("FAIL"), "{note}: {answer}");
            assert!(refunds_of(&app, &no).await.is_empty(), "{note}");
        } else {
            // With the key, it is WeChat speaking: a refund made in the merchant platform,
            // recorded once however often it comes.
            assert!(answer.contains("SUCCESS"), "{note}: {answer}");
        }
    }
    let again = app
        .http
        .post(app.url("/weixin/pay/refund/notify"))
        .body("<xml><return_code>SUCCESS</return_code><req_info>bm90IGVuY3J5cHRlZA==</req_info></xml>")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(again.contains("FAIL"), "{again}");
    let refunds = refunds_of(&app, &no).await;
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(refunds[0].0, format!("F{no}"));
}

/// A refund whose maker is killed (SIGKILL) after recording it, while WeChat's answer is on
/// its way, is made once: the running shop's follower asks again with the same out_refund_no.
/// Everything is a real process: a standalone sandbox that writes the merchant's certificate,
/// the shop calling it over mutual TLS, and the merchant's command line.
#[tokio::test]
async fn a_refund_killed_before_its_answer_is_made_once_with_the_same_number() {
    use std::process::{Command, Stdio};

    use crate::crash::{free_port, start_shop_with, Shop};
    use crate::helpers::{database_url, no_redirects, pay_at_sandbox, place_order_at, raw_pool};

    let dir = tempfile::TempDir::new().unwrap();
    let database_url = database_url(&dir).await;
    let certs = dir.path().join("certs");
    let (sandbox_port, tls_port) = (free_port(), free_port());
    let _sandbox = Shop(
        Command::new(env!("CARGO_BIN_EXE_wxpay-checkout"))
            .arg("sandbox")
            .env("SANDBOX_LISTEN_ADDR", format!("127.0.0.1:{sandbox_port}"))
            .env("SANDBOX_TLS_LISTEN_ADDR", format!("127.0.0.1:{tls_port}"))
            .env("SANDBOX_CERT_DIR", &certs)
            .env("SANDBOX_TIME_SCALE", "0.001")
            .env("SANDBOX_CONTROLS", "1")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        None,
    );
    let sandbox = format!("http://127.0.0.1:{sandbox_port}/");
    let http = no_redirects();
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while !certs.join("apiclient_cert.p12").exists() || http.get(&sandbox).send().await.is_err() {
        assert!(
            tokio::time::Instant::now() < until,
            "the sandbox did not start"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let port = free_port();
    let tls_base = format!("https://127.0.0.1:{tls_port}/");
    let ca = certs.join("sandbox_ca.pem").display().to_string();
    let p12 = certs.join("apiclient_cert.p12").display().to_string();
    let listen = format!("127.0.0.1:{port}");
    let env = [
        ("WEIXIN_API_BASE", tls_base.as_str()),
        ("WEIXIN_CA_PEM", ca.as_str()),
        ("WEIXIN_CERT_P12", p12.as_str()),
        ("RECONCILE_INTERVAL_SECS", "1"),
    ];
    let _shop = start_shop_with(&database_url, port, &env).await;
    let base = format!("http://{listen}");
    let pay_page = place_order_at(&http, &base, "4").await;
    let no = pay_page.trim_start_matches("/pay/").to_owned();
    http.get(format!("{base}{pay_page}")).send().await.unwrap();
    pay_at_sandbox(&http, &sandbox, &no).await;
    let db = raw_pool(&database_url).await;
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status: String =
            sqlx::query_scalar("SELECT status FROM orders WHERE out_trade_no = $1")
                .bind(&no)
                .fetch_one(&db)
                .await
                .unwrap();
        if status == "paid" {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "never paid");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // WeChat makes the refund but its answer never comes back; the merchant's command dies
    // waiting for it.
    let faults = |timeout: f64| {
        http.put(format!("{sandbox}sandbox/faults"))
            .json(&serde_json::json!({ "timeout": timeout }))
            .send()
    };
    assert!(faults(1.0).await.unwrap().status().is_success());
    let mut cli = Shop(
        Command::new(env!("CARGO_BIN_EXE_wxpay-checkout"))
            .args(["refund", no.as_str()])
            .env("DATABASE_URL", &database_url)
            .env("LISTEN_ADDR", &listen)
            .envs(env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        None,
    );
    let order_at_wechat = || async {
        http.get(format!("{sandbox}sandbox/orders/{no}"))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while order_at_wechat().await["refunds"]
        .as_array()
        .is_none_or(|r| r.is_empty())
    {
        assert!(
            tokio::time::Instant::now() < until,
            "WeChat never got the refund"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    cli.kill();
    let recorded: Vec<(String, String)> =
        sqlx::query_as("SELECT out_refund_no, status FROM refunds WHERE out_trade_no = $1")
            .bind(&no)
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(
        recorded[0].1, "requested",
        "recorded before WeChat was asked"
    );
    assert!(faults(0.0).await.unwrap().status().is_success());

    // The shop's follower asks again with the same number; WeChat knows it: one refund.
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status: String =
            sqlx::query_scalar("SELECT status FROM refunds WHERE out_refund_no = $1")
                .bind(&recorded[0].0)
                .fetch_one(&db)
                .await
                .unwrap();
        if status == "succeeded" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "never settled: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let theirs = refunds_at_wechat(&order_at_wechat().await);
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    assert_eq!(
        (theirs[0].0.as_str(), theirs[0].2.as_str()),
        (recorded[0].0.as_str(), "SUCCESS")
    );
}
