//! An order is over only when WeChat says so: failed attempts, ORDERNOTEXIST answers, refunds
//! outside the shop and states this version does not know, against the real sandbox — and the
//! watch that finds money taken for a finished order.

use std::time::Duration;

use chrono::Duration as Span;

use crate::helpers::{TestApp, JOB_INTERVAL};

/// An order with a prepay (its pay page opened), with its code_url.
async fn prepaid_order(app: &TestApp, sku: i64) -> (String, String) {
    let no = app.place_order(sku, 1).await;
    let code_url = app.open_pay_page(&no).await;
    (no, code_url)
}

async fn sandbox_post(app: &TestApp, path: &str, body: serde_json::Value) -> u16 {
    app.http
        .post(app.sandbox_url(path))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// status, refund_due, wechat_state of an order.
async fn order_state(app: &TestApp, no: &str) -> (String, i64, Option<String>) {
    sqlx::query_as(
        "SELECT status, CAST(refund_due AS BIGINT), wechat_state FROM orders
         WHERE out_trade_no = $1",
    )
    .bind(no)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

/// Waits until the shop's status endpoint reports `want`.
async fn wait_for_trade_state(app: &TestApp, no: &str, want: &str) {
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let state = app.status(no).await["trade_state"].clone();
        if state == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{no} is {state}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_declined_payment_keeps_the_order_open_and_a_rescan_pays_it() {
    let app = TestApp::spawn().await;
    // WeChat follows the decline with a signed FAIL notify.
    app.set_faults(serde_json::json!({ "fail_notify": 1.0 }))
        .await;
    let before = app.stock(3).await;
    let (no, code_url) = prepaid_order(&app, 3).await;
    assert_eq!(
        app.pay_in_sandbox_as(&code_url, "fail").await["trade_state"],
        "PAYERROR"
    );
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let outcome: Option<String> =
            sqlx::query_scalar("SELECT outcome FROM payment_events WHERE out_trade_no = $1")
                .bind(&no)
                .fetch_optional(&app.db)
                .await
                .unwrap()
                .flatten();
        if outcome.as_deref() == Some("payerror") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the FAIL notify was not recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for_trade_state(&app, &no, "PAYERROR").await;
    assert_eq!(app.stock(3).await, before - 1, "the stock stays reserved");
    // The job sees WeChat's PAYERROR as an open order, not an end.
    let job = app.reconciler(10).await;
    job.run_once(chrono::Utc::now()).await.unwrap();
    assert_eq!(order_state(&app, &no).await.0, "pending");
    // The shopper scans again and pays.
    assert_eq!(
        app.pay_in_sandbox_as(&code_url, "success").await["trade_state"],
        "SUCCESS"
    );
    assert!(
        app.wait_for_status(&no, "paid", Duration::from_secs(5))
            .await
    );
    assert_eq!(app.stock(3).await, before - 1);
}

#[tokio::test]
async fn order_not_exist_answers_end_nothing_while_wechat_can_still_take_the_money() {
    let app = TestApp::spawn().await;
    let before = app.stock(2).await;
    let (no, code_url) = prepaid_order(&app, 2).await;
    let job = app.reconciler(1).await;
    let created = app.created_at(&no).await;
    // A flaky WeChat answers every orderquery and closeorder with ORDERNOTEXIST.
    app.set_faults(serde_json::json!({ "order_not_exist": 1.0 }))
        .await;
    for at in [created + Span::minutes(6), created + Span::minutes(8)] {
        let report = job.run_once(at).await.unwrap();
        assert_eq!(report.closed, 0, "{report:?}");
    }
    assert_eq!(
        order_state(&app, &no).await,
        ("pending".into(), 0, Some("ORDERNOTEXIST".into()))
    );
    assert_eq!(app.stock(2).await, before - 1);
    // The order was payable all along: the shopper pays, the notify is lost, the job finds it.
    app.set_faults(serde_json::json!({ "drop_notify": 1.0 }))
        .await;
    assert_eq!(app.sandbox_order(&no).await["trade_state"], "NOTPAY");
    assert_eq!(
        app.pay_in_sandbox_as(&code_url, "success").await["trade_state"],
        "SUCCESS"
    );
    let report = job.run_once(created + Span::minutes(9)).await.unwrap();
    assert_eq!(report.confirmed_paid, 1, "{report:?}");
    assert!(
        app.wait_for_status(&no, "paid", Duration::from_secs(5))
            .await
    );
    assert_eq!(order_state(&app, &no).await.1, 0, "paid, nothing to refund");
}

#[tokio::test]
async fn money_taken_for_a_finished_order_is_found_by_the_watch_and_due_back() {
    let app = TestApp::spawn().await;
    app.set_faults(serde_json::json!({ "drop_notify": 1.0 }))
        .await;
    let (no, code_url) = prepaid_order(&app, 1).await;
    // Closed here while WeChat still takes payment for it, as earlier versions did after a
    // FAIL notify or one ORDERNOTEXIST (their closed orders are watched from the upgrade on).
    sqlx::query(
        "UPDATE orders SET status = 'closed', closed_at = $1, is_deleted = 1, watch_due_at = 0
         WHERE out_trade_no = $2",
    )
    .bind(chrono::Utc::now().timestamp())
    .bind(&no)
    .execute(&app.db)
    .await
    .unwrap();
    let paid = app.pay_in_sandbox_as(&code_url, "success").await;
    assert_eq!(paid["trade_state"], "SUCCESS");
    let job = app.reconciler(10).await;
    let report = job.run_once(chrono::Utc::now()).await.unwrap();
    assert_eq!((report.watched, report.late_payments), (1, 1), "{report:?}");
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while order_state(&app, &no).await.1 != 1 {
        assert!(tokio::time::Instant::now() < until, "never refund_due");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recorded: (String, String) = sqlx::query_as(
        "SELECT transaction_id, outcome FROM payment_events WHERE out_trade_no = $1",
    )
    .bind(&no)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        recorded,
        (
            paid["transaction_id"].as_str().unwrap().to_owned(),
            "paid_after_close".to_owned()
        )
    );
    // Money found: the watch is over for it.
    let report = job
        .run_once(chrono::Utc::now() + Span::days(2))
        .await
        .unwrap();
    assert_eq!(report.watched, 0, "{report:?}");
}

#[tokio::test]
async fn a_closed_order_is_watched_on_a_decaying_schedule_then_left_alone() {
    let app = TestApp::spawn().await;
    let (no, _) = prepaid_order(&app, 5).await;
    let job = app.reconciler(1).await;
    let created = app.created_at(&no).await;
    let report = job.run_once(created + Span::minutes(6)).await.unwrap();
    assert_eq!(report.closed, 1, "{report:?}");
    assert_eq!(app.sandbox_order(&no).await["trade_state"], "CLOSED");
    // Watched from its time_expire (created + 10 min, later than the close): 1 min, 10 min,
    // 1 h and 1 day after it, and not again.
    let expire = created + Span::minutes(10);
    let mut asked = Vec::new();
    for after in [
        Span::seconds(30),
        Span::minutes(1),
        Span::minutes(5),
        Span::minutes(10),
        Span::minutes(30),
        Span::hours(1),
        Span::hours(5),
        Span::days(1),
        Span::days(3),
    ] {
        let report = job.run_once(expire + after).await.unwrap();
        asked.push(report.watched);
    }
    assert_eq!(asked, [0, 1, 0, 1, 0, 1, 0, 1, 0]);
    assert_eq!(
        order_state(&app, &no).await,
        ("closed".into(), 0, Some("CLOSED".into()))
    );
}

#[tokio::test]
async fn a_refund_outside_the_shop_records_the_payment() {
    let app = TestApp::spawn().await;
    app.set_faults(serde_json::json!({ "drop_notify": 1.0 }))
        .await;
    let (no, code_url) = prepaid_order(&app, 4).await;
    let paid = app.pay_in_sandbox_as(&code_url, "success").await;
    // The merchant refunds it in WeChat's merchant platform before the shop heard of it.
    assert_eq!(
        sandbox_post(
            &app,
            "sandbox/refund",
            serde_json::json!({ "out_trade_no": no })
        )
        .await,
        200
    );
    assert_eq!(app.sandbox_order(&no).await["trade_state"], "REFUND");
    let job = app.reconciler(10).await;
    let report = job.run_once(chrono::Utc::now()).await.unwrap();
    assert_eq!(report.confirmed_paid, 1, "{report:?}");
    assert!(
        app.wait_for_status(&no, "paid", Duration::from_secs(5))
            .await
    );
    assert_eq!(
        app.order_row(&no).await.1.as_deref(),
        paid["transaction_id"].as_str()
    );
    assert_eq!(order_state(&app, &no).await.2.as_deref(), Some("REFUND"));
}

#[tokio::test]
async fn a_state_this_version_does_not_know_is_raised_once_and_the_order_still_ends() {
    let app = TestApp::spawn().await;
    let before = app.stock(6).await;
    let (no, _) = prepaid_order(&app, 6).await;
    assert_eq!(
        sandbox_post(
            &app,
            &format!("sandbox/orders/{no}/trade_state"),
            serde_json::json!({ "trade_state": "ACCEPT" })
        )
        .await,
        200
    );
    let unknown = |metrics: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with("reconcile_unknown_state_total"))
            .map(|l| l.rsplit(' ').next().unwrap().to_owned())
    };
    let job = app.reconciler(3).await;
    let created = app.created_at(&no).await;
    for run in 0..3 {
        job.run_once(created + Span::minutes(1) + JOB_INTERVAL * run)
            .await
            .unwrap();
    }
    assert_eq!(
        order_state(&app, &no).await,
        ("pending".into(), 0, Some("ACCEPT".into()))
    );
    let metrics = app.ops_get("/metrics").await.text().await.unwrap();
    assert_eq!(unknown(&metrics).as_deref(), Some("1"), "raised once");
    // Due: closed at WeChat, then here; its stock comes back.
    let report = job.run_once(created + Span::minutes(6)).await.unwrap();
    assert_eq!(report.closed, 1, "{report:?}");
    assert_eq!(app.stock(6).await, before);
}

#[tokio::test]
async fn a_refund_made_in_the_merchant_platform_shows_in_the_refund_query() {
    use wxpay_checkout::wxpay::{Client, ClientConfig, ErrCode, RefundStatus, SignType};
    let app = TestApp::spawn().await;
    let (no, code_url) = prepaid_order(&app, 2).await;
    app.pay_in_sandbox_as(&code_url, "success").await;
    let (unrefunded, _) = prepaid_order(&app, 1).await;
    let wechat = Client::new(
        ClientConfig::new(
            app.sandbox.clone(),
            crate::helpers::demo_merchant(),
            SignType::Md5,
        ),
        &wxpay_checkout::rt::AppRuntime::current(),
    )
    .unwrap();
    let none = wechat.refund_query(&no).await.unwrap_err();
    assert_eq!(none.err_code(), Some(&ErrCode::RefundNotExist));
    assert_eq!(
        sandbox_post(
            &app,
            "sandbox/refund",
            serde_json::json!({ "out_trade_no": no })
        )
        .await,
        200
    );
    let answer = wechat.refund_query(&no).await.unwrap();
    let total = app.sandbox_order(&no).await["total_fee"].as_i64().unwrap();
    assert_eq!(answer.total_fee, total);
    assert_eq!(answer.refunds.len(), 1);
    let refund = &answer.refunds[0];
    assert_eq!(
        (refund.status.clone(), refund.refund_fee),
        (RefundStatus::Success, total)
    );
    let when = refund.success_time.as_deref().unwrap();
    assert!(
        chrono::NaiveDateTime::parse_from_str(when, "%Y-%m-%d %H:%M:%S").is_ok(),
        "{when}"
    );
    assert_eq!(
        wechat
            .refund_query(&unrefunded)
            .await
            .unwrap_err()
            .err_code(),
        Some(&ErrCode::RefundNotExist)
    );
    assert_eq!(
        wechat
            .refund_query("nosuchorder")
            .await
            .unwrap_err()
            .err_code(),
        Some(&ErrCode::OrderNotExist)
    );
    assert_eq!(app.sandbox_stats().await["refundquery"], 4);
}
