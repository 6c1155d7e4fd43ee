//! Where real WeChat Pay differs from what a naive shop expects: `time_expire` measured from
//! WeChat's clock, the whole TTL by default, payments in progress, `body` in bytes, coupons,
//! and money taken after an order closed — each against the real sandbox over HTTP.

use std::time::Duration;

use chrono::Duration as Span;

use crate::helpers::{TestApp, JOB_INTERVAL};

async fn stored_expiry(app: &TestApp, no: &str) -> chrono::DateTime<chrono::Utc> {
    let secs: i64 = sqlx::query_scalar("SELECT expires_at FROM orders WHERE out_trade_no = $1")
        .bind(no)
        .fetch_one(&app.db)
        .await
        .unwrap();
    chrono::DateTime::from_timestamp(secs, 0).unwrap()
}

#[tokio::test]
async fn a_pay_page_first_opened_late_still_gets_a_prepay_with_time_to_pay() {
    let app = TestApp::spawn().await;
    let no = app.place_order(1, 1).await;
    // Eight minutes into a ten-minute order before its page is first opened.
    sqlx::query(
        "UPDATE orders SET created_at = created_at - 480, expires_at = expires_at - 480
         WHERE out_trade_no = $1",
    )
    .bind(&no)
    .execute(&app.db)
    .await
    .unwrap();
    // (The sandbox, as WeChat, refuses a time_expire under 5 minutes after its own now.)
    let page = app.get(&format!("/pay/{no}")).await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    let expires = stored_expiry(&app, &no).await;
    assert!(
        expires >= chrono::Utc::now() + Span::minutes(5),
        "{expires}"
    );
    assert!(
        page.contains("<time id=\"countdown\">05:") || page.contains("<time id=\"countdown\">06:"),
        "the shopper is given the time WeChat allows"
    );
    assert_eq!(app.sandbox_stats().await["unifiedorder"], 1);
    // A refresh repeats nothing.
    assert_eq!(app.get(&format!("/pay/{no}")).await.status(), 200);
    assert_eq!(app.sandbox_stats().await["unifiedorder"], 1);
    assert_eq!(stored_expiry(&app, &no).await, expires);
}

#[tokio::test]
async fn by_default_an_unpaid_order_stays_payable_until_its_time_is_up() {
    let app = TestApp::spawn().await;
    let no = app.place_order(2, 1).await;
    app.open_pay_page(&no).await;
    let job = app.reconciler_with(None).await;
    let created = app.created_at(&no).await;
    let mut at = created + Span::minutes(1);
    while at <= created + Span::minutes(9) {
        job.run_once(at).await.unwrap();
        at += JOB_INTERVAL * 6;
    }
    assert_eq!(app.order_row(&no).await.0, "pending");
    assert_eq!(app.sandbox_order(&no).await["trade_state"], "NOTPAY");
    // Its time is up: closed at WeChat and here.
    let report = job
        .run_once(created + Span::minutes(10) + Span::seconds(1))
        .await
        .unwrap();
    assert_eq!(report.closed, 1, "{report:?}");
    assert_eq!(app.sandbox_order(&no).await["trade_state"], "CLOSED");
}

#[tokio::test]
async fn a_payment_in_progress_is_never_cut_short() {
    let app = TestApp::spawn().await;
    let no = app.place_order(3, 1).await;
    app.open_pay_page(&no).await;
    let status = app
        .http
        .post(app.sandbox_url(&format!("sandbox/orders/{no}/trade_state")))
        .json(&serde_json::json!({ "trade_state": "USERPAYING" }))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let job = app.reconciler(1).await;
    let created = app.created_at(&no).await;
    // Attempts spent, past five minutes, even past its time: the shopper is still paying.
    for at in [created + Span::minutes(6), created + Span::minutes(12)] {
        let report = job.run_once(at).await.unwrap();
        assert_eq!(report.closed, 0, "{report:?}");
    }
    assert_eq!(app.sandbox_stats().await["closeorder"], 0);
    assert_eq!(app.order_row(&no).await.0, "pending");
    // Well past its time, it is settled.
    let report = job.run_once(created + Span::minutes(16)).await.unwrap();
    assert_eq!(report.closed, 1, "{report:?}");
}

#[tokio::test]
async fn a_long_chinese_name_gives_a_body_wechat_accepts() {
    let app = TestApp::spawn().await;
    let name = "特级明前西湖龙井绿茶礼盒装".repeat(5); // 65 characters, 195 bytes
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO products (sku, name, price_fen, stock, created_at, updated_at)
         VALUES ('LONG', $1, 100, 5, 0, 0) RETURNING id",
    )
    .bind(&name)
    .fetch_one(&app.db)
    .await
    .unwrap();
    let no = app.place_order(id, 1).await;
    assert_eq!(app.get(&format!("/pay/{no}")).await.status(), 200);
    let body: String = sqlx::query_scalar("SELECT body FROM orders WHERE out_trade_no = $1")
        .bind(&no)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(
        body.len() <= 128 && body.ends_with('…'),
        "{} bytes",
        body.len()
    );
}

#[tokio::test]
async fn a_payment_partly_by_coupon_is_accepted_and_its_parts_recorded() {
    let app = TestApp::spawn().await;
    let no = app.place_order(1, 1).await; // ¥128.00
    let code_url = app.open_pay_page(&no).await;
    let paid: serde_json::Value = app
        .http
        .post(app.sandbox_url("sandbox/pay"))
        .json(&serde_json::json!({ "code_url": code_url, "coupon_fee": 1_000 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(paid["trade_state"], "SUCCESS", "{paid}");
    assert!(
        app.wait_for_status(&no, "paid", Duration::from_secs(5))
            .await
    );
    let parts: (i64, Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT total_fee, cash_fee, coupon_fee FROM orders WHERE out_trade_no = $1",
    )
    .bind(&no)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(parts, (12_800, Some(11_800), Some(1_000)));
}

#[tokio::test]
async fn money_taken_after_the_close_is_due_back_and_the_page_says_so() {
    // Due back, and left so (the automatic refund is the refunds tests' business).
    let app = TestApp::spawn_with(&[("AUTO_REFUND_LATE_PAYMENTS", "false")]).await;
    let no = app.place_order(4, 1).await;
    let code_url = app.open_pay_page(&no).await;
    let job = app.reconciler(1).await;
    let report = job
        .run_once(app.created_at(&no).await + Span::minutes(6))
        .await
        .unwrap();
    assert_eq!(report.closed, 1, "{report:?}");
    // WeChat takes the money all the same, as merchants report happening.
    app.set_faults(serde_json::json!({ "late_payment": 1.0 }))
        .await;
    let paid = app.pay_in_sandbox(&code_url).await;
    let tid = paid["transaction_id"].as_str().unwrap().to_owned();
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let refund_due: i64 = sqlx::query_scalar(
            "SELECT CAST(refund_due AS BIGINT) FROM orders WHERE out_trade_no = $1",
        )
        .bind(&no)
        .fetch_one(&app.db)
        .await
        .unwrap();
        if refund_due == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "never refund_due");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let page = app
        .get(&format!("/pay/{no}/failed"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("it will be refunded"), "{page}");
    assert!(page.contains(&tid));
    assert!(!page.contains("You were not charged"));
}

#[tokio::test]
async fn a_notify_that_carries_its_sign_type_is_accepted() {
    let app = TestApp::spawn_with(&[("WEIXIN_SIGN_TYPE", "HMAC-SHA256")]).await;
    app.set_faults(serde_json::json!({ "notify_sign_type": 1.0 }))
        .await;
    let no = app.place_order(5, 1).await;
    let code_url = app.open_pay_page(&no).await;
    app.pay_in_sandbox(&code_url).await;
    assert!(
        app.wait_for_status(&no, "paid", Duration::from_secs(5))
            .await
    );
}

#[tokio::test]
async fn an_order_wechat_will_not_settle_is_settled_here_a_day_past_its_time() {
    let app = TestApp::spawn().await;
    let before = app.stock(6).await;
    let no = app.place_order(6, 1).await;
    app.open_pay_page(&no).await;
    // A job whose API key is wrong: every query is refused (SIGNERROR, return_code=FAIL).
    let mut merchant = crate::helpers::demo_merchant();
    merchant.key = "0123456789abcdef0123456789abcdef".to_string().into();
    let job = app.reconciler_as(merchant, None).await;
    let expires = stored_expiry(&app, &no).await;
    for at in [expires + Span::minutes(10), expires + Span::hours(23)] {
        let report = job.run_once(at).await.unwrap();
        assert_eq!(report.closed, 0, "{report:?}");
    }
    assert_eq!(app.stock(6).await, before - 1);
    // A day past its time WeChat takes no money for it: closed here, stock back, watched.
    let report = job.run_once(expires + Span::hours(25)).await.unwrap();
    assert_eq!(report.closed, 1, "{report:?}");
    assert_eq!(app.stock(6).await, before);
    let watched: Option<i64> =
        sqlx::query_scalar("SELECT watch_due_at FROM orders WHERE out_trade_no = $1")
            .bind(&no)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(watched.is_some());
}
