//! The reconciliation job with the real sandbox, driven one run at a time at chosen moments.

use std::time::Duration;

use chrono::Duration as Span;

use crate::helpers::{TestApp, JOB_INTERVAL};

/// An order with a prepay (its pay page opened), with its code_url.
async fn prepaid_order(app: &TestApp, sku: i64) -> (String, String) {
    let no = app.place_order(sku, 1).await;
    let code_url = app.open_pay_page(&no).await;
    (no, code_url)
}

#[tokio::test]
async fn an_unpaid_order_is_closed_after_the_maximum_attempts_and_its_stock_returns() {
    let app = TestApp::spawn().await;
    let before = app.stock(4).await;
    let (no, _) = prepaid_order(&app, 4).await;
    assert_eq!(app.stock(4).await, before - 1);
    let job = app.reconciler(3).await;
    let created = app.created_at(&no).await;

    // Within five minutes of creation nothing is closed, whatever the attempts.
    for run in 0..4 {
        let at = created + Span::minutes(1) + JOB_INTERVAL * run;
        let report = job.run_once(at).await.unwrap();
        assert_eq!((report.queried, report.closed), (1, 0));
    }
    assert_eq!(app.order_row(&no).await.0, "pending");
    // Past five minutes, with the attempts spent: closed at WeChat and here.
    let report = job.run_once(created + Span::minutes(6)).await.unwrap();
    assert_eq!(report.closed, 1, "{report:?}");
    assert_eq!(app.order_row(&no).await.0, "closed");
    assert_eq!(app.sandbox_order(&no).await["trade_state"], "CLOSED");
    assert_eq!(app.stock(4).await, before);
    let deleted: i64 = sqlx::query_scalar("SELECT is_deleted FROM orders WHERE out_trade_no = $1")
        .bind(&no)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    // Nothing more to do, and the stock stays right.
    let report = job.run_once(created + Span::minutes(7)).await.unwrap();
    assert_eq!(report.queried, 0);
    assert_eq!(app.stock(4).await, before);
}

#[tokio::test]
async fn an_order_is_queried_until_its_attempts_run_out() {
    let app = TestApp::spawn().await;
    let (no, _) = prepaid_order(&app, 1).await;
    let job = app.reconciler(3).await;
    let later = app.created_at(&no).await + Span::minutes(6);
    for attempt in 1..=2 {
        let report = job.run_once(later + JOB_INTERVAL * attempt).await.unwrap();
        assert_eq!(
            (report.still_unpaid, report.closed),
            (1, 0),
            "attempt {attempt}"
        );
        // Within the interval the order is not asked about again.
        let report = job
            .run_once(later + JOB_INTERVAL * attempt + Span::seconds(1))
            .await;
        assert_eq!(report.unwrap().queried, 0);
    }
    assert_eq!(
        job.run_once(later + JOB_INTERVAL * 3).await.unwrap().closed,
        1
    );
}

#[tokio::test]
async fn a_payment_whose_notify_was_dropped_is_found_and_the_order_paid() {
    let app = TestApp::spawn().await;
    app.set_faults(serde_json::json!({ "drop_notify": 1.0 }))
        .await;
    let before = app.stock(2).await;
    let (no, code_url) = prepaid_order(&app, 2).await;
    app.pay_in_sandbox(&code_url).await;
    let job = app.reconciler(10).await;
    let report = job.run_once(chrono::Utc::now()).await.unwrap();
    assert_eq!(report.confirmed_paid, 1, "{report:?}");
    assert!(
        app.wait_for_status(&no, "paid", Duration::from_secs(5))
            .await
    );
    let (_, tid, _) = app.order_row(&no).await;
    assert_eq!(
        tid.as_deref(),
        app.sandbox_order(&no).await["transaction_id"].as_str()
    );
    // Even far past its expiry, a paid order is never closed nor its stock restored.
    let report = job
        .run_once(chrono::Utc::now() + Span::days(2))
        .await
        .unwrap();
    assert_eq!(report.closed, 0);
    assert_eq!(app.stock(2).await, before - 1);
}

#[tokio::test]
async fn a_payment_between_the_query_and_the_close_makes_a_paid_order() {
    let app = TestApp::spawn().await;
    let before = app.stock(3).await;
    let (no, code_url) = prepaid_order(&app, 3).await;
    // Slow answers leave room to pay after the query was answered and before the close is.
    app.set_faults(serde_json::json!({ "latency_ms": 1000, "drop_notify": 1.0 }))
        .await;
    let job = app.reconciler(1).await;
    let at = app.created_at(&no).await + Span::minutes(6);
    let run = tokio::spawn(async move { job.run_once(at).await.unwrap() });
    // The close has reached the sandbox (it counts a call on arrival; it acts after the
    // latency): the shopper pays now.
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.sandbox_stats().await["closeorder"] != 1 {
        assert!(
            tokio::time::Instant::now() < until,
            "no closeorder was sent"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        app.pay_in_sandbox(&code_url).await["trade_state"],
        "SUCCESS"
    );
    let report = run.await.unwrap();
    assert_eq!((report.closed, report.confirmed_paid), (0, 1), "{report:?}");
    assert!(
        app.wait_for_status(&no, "paid", Duration::from_secs(5))
            .await
    );
    assert_eq!(app.sandbox_order(&no).await["trade_state"], "SUCCESS");
    assert_eq!(
        app.stock(3).await,
        before - 1,
        "a paid order's stock stays sold"
    );
}

#[tokio::test]
async fn a_storm_of_5xx_closes_nothing_and_counts_no_attempt() {
    let app = TestApp::spawn().await;
    let (no, _) = prepaid_order(&app, 1).await;
    app.set_faults(serde_json::json!({ "http_5xx": 1.0 })).await;
    let job = app.reconciler(1).await;
    let far = chrono::Utc::now() + Span::days(1);
    for run in 0..3 {
        let report = job.run_once(far + JOB_INTERVAL * run).await.unwrap();
        assert_eq!(
            (report.transient_errors, report.closed),
            (1, 0),
            "{report:?}"
        );
    }
    assert_eq!(app.order_row(&no).await.0, "pending");
    let attempts: i64 =
        sqlx::query_scalar("SELECT reconcile_attempts FROM orders WHERE out_trade_no = $1")
            .bind(&no)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(attempts, 0);
    // SYSTEMERROR is no different.
    app.set_faults(serde_json::json!({ "system_error": 1.0 }))
        .await;
    let report = job.run_once(far + JOB_INTERVAL * 3).await.unwrap();
    assert_eq!((report.transient_errors, report.closed), (1, 0));
    assert_eq!(app.order_row(&no).await.0, "pending");
    // Once WeChat answers again, the expired order is closed.
    app.set_faults(serde_json::json!({})).await;
    let report = job.run_once(far + JOB_INTERVAL * 4).await.unwrap();
    assert_eq!(report.closed, 1);
}

#[tokio::test]
async fn two_jobs_at_once_close_each_order_once_and_restore_stock_once() {
    let app = TestApp::spawn().await;
    let before = app.stock(3).await;
    let mut orders = Vec::new();
    for _ in 0..12 {
        orders.push(prepaid_order(&app, 3).await.0);
    }
    assert_eq!(app.stock(3).await, before - 12);
    let (a, b) = (app.reconciler(1).await, app.reconciler(1).await);
    let at = chrono::Utc::now() + Span::minutes(11);
    let (ra, rb) = tokio::join!(a.run_once(at), b.run_once(at));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    // Each order was claimed by one job: queried once, closed once.
    assert_eq!(ra.queried + rb.queried, 12, "{ra:?} {rb:?}");
    assert_eq!(ra.closed + rb.closed, 12, "{ra:?} {rb:?}");
    assert_eq!(
        app.stock(3).await,
        before,
        "stock restored exactly once per order"
    );
    for no in &orders {
        assert_eq!(app.order_row(no).await.0, "closed");
    }
}

#[tokio::test]
async fn orders_without_a_prepay_expire_locally_without_asking_wechat() {
    let app = TestApp::spawn().await;
    let before = app.stock(5).await;
    let no = app.place_order(5, 2).await;
    let job = app.reconciler(10).await;
    let created = app.created_at(&no).await;
    assert_eq!(
        job.run_once(created + Span::minutes(9))
            .await
            .unwrap()
            .expired_without_prepay,
        0
    );
    let report = job.run_once(created + Span::minutes(10)).await.unwrap();
    assert_eq!(report.expired_without_prepay, 1);
    assert_eq!(app.order_row(&no).await.0, "closed");
    assert_eq!(app.stock(5).await, before);
    let stats = app.sandbox_stats().await;
    assert_eq!(
        (stats["orderquery"].as_i64(), stats["closeorder"].as_i64()),
        (Some(0), Some(0))
    );
}

#[tokio::test]
async fn an_order_that_outlived_any_window_while_the_server_was_down_is_still_handled() {
    let app = TestApp::spawn().await;
    let (no, _) = prepaid_order(&app, 1).await;
    // Two days pass with the shop down.
    let job = app.reconciler(10).await;
    let report = job
        .run_once(chrono::Utc::now() + Span::days(2))
        .await
        .unwrap();
    assert_eq!(report.closed, 1, "{report:?}");
    assert_eq!(app.order_row(&no).await.0, "closed");
}

#[tokio::test]
async fn an_order_wechat_never_heard_of_closes_only_past_its_time() {
    let app = TestApp::spawn().await;
    let (no, _) = prepaid_order(&app, 1).await;
    // A prepay WeChat does not know (as after the sandbox forgot its orders): orderquery and
    // closeorder answer ORDERNOTEXIST.
    let other = app.place_order(1, 1).await;
    sqlx::query(
        "UPDATE orders SET prepay_id = 'wx1', code_url = 'weixin://wxpay/bizpayurl?pr=gone',
                           code_url_expires_at = expires_at, sign_type = 'MD5'
         WHERE out_trade_no = $1",
    )
    .bind(&other)
    .execute(&app.db)
    .await
    .unwrap();
    let job = app.reconciler(2).await;
    let created = app.created_at(&other).await;
    // One ORDERNOTEXIST is an unpaid attempt, not an end — not even with the attempts spent,
    // while the order's time_expire (+10 min) is not past by the margin.
    for at in [created, created + JOB_INTERVAL, created + Span::minutes(6)] {
        job.run_once(at).await.unwrap();
        assert_eq!(app.order_row(&other).await.0, "pending");
    }
    // (The order WeChat knows was closed there and here in the meantime, as usual.)
    assert_eq!(app.order_row(&no).await.0, "closed");
    let attempts: (i64, Option<String>) = sqlx::query_as(
        "SELECT reconcile_attempts, wechat_state FROM orders WHERE out_trade_no = $1",
    )
    .bind(&other)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(attempts, (3, Some("ORDERNOTEXIST".into())));
    // Past time_expire and the margin, closeorder's ORDERNOTEXIST closes it here.
    let report = job.run_once(created + Span::minutes(16)).await.unwrap();
    assert_eq!(report.closed, 1, "{report:?}");
    assert_eq!(app.order_row(&other).await.0, "closed");
}
