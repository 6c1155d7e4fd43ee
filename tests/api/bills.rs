//! The daily bill end to end: the shop downloads the built-in sandbox's trade bill of a day over
//! HTTP and reconciles it with its own records — from the console, the command line and the
//! daily job — finding, applying and reporting what differs.

use std::time::Duration;

use chrono::{Duration as Span, Utc};

use crate::admin::{page, sign_in};
use crate::helpers::{demo_merchant, test_terms, TestApp};

/// A paid order of one unit of product 1: its number.
async fn paid_order(app: &TestApp) -> String {
    let no = app.place_order(1, 1).await;
    let code_url = app.open_pay_page(&no).await;
    app.pay_in_sandbox(&code_url).await;
    assert!(
        app.wait_for_status(&no, "paid", Duration::from_secs(10))
            .await,
        "never paid"
    );
    no
}

/// An order paid at WeChat whose notify never comes (the sandbox drops every one): its number.
async fn unheard_payment(app: &TestApp) -> String {
    app.set_faults(serde_json::json!({ "drop_notify": 1.0 }))
        .await;
    let no = app.place_order(1, 1).await;
    let code_url = app.open_pay_page(&no).await;
    app.pay_in_sandbox(&code_url).await;
    assert_eq!(app.sandbox_order(&no).await["trade_state"], "SUCCESS");
    no
}

/// The Beijing day WeChat dates a paid order's payment.
pub(crate) async fn pay_day(app: &TestApp, no: &str) -> String {
    let time_end = app.sandbox_order(no).await["time_end"]
        .as_str()
        .unwrap()
        .to_owned();
    format!("{}-{}-{}", &time_end[..4], &time_end[4..6], &time_end[6..8])
}

/// Runs `day` from the console; returns the day's page.
pub(crate) async fn run_day(
    app: &TestApp,
    http: &reqwest::Client,
    csrf: &str,
    day: &str,
) -> String {
    let response = http
        .post(app.url("/admin/bills/run"))
        .form(&[("csrf", csrf), ("day", day)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    assert_eq!(
        response.headers()["location"],
        format!("/admin/bills/{day}")
    );
    page(app, http, &format!("/admin/bills/{day}")).await
}

/// The day's open discrepancies as stored: (kind, reference, wechat_fee, shop_fee, action).
async fn open_discrepancies(
    app: &TestApp,
    day: &str,
) -> Vec<(String, String, Option<i64>, Option<i64>, String)> {
    sqlx::query_as(
        "SELECT kind, reference, wechat_fee, shop_fee, action FROM bill_discrepancies
         WHERE day = $1 AND resolved_at IS NULL ORDER BY kind, reference",
    )
    .bind(day)
    .fetch_all(&app.db)
    .await
    .unwrap()
}

async fn transaction_of(app: &TestApp, no: &str) -> String {
    app.sandbox_order(no).await["transaction_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn metric(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn a_day_with_payments_a_refund_and_a_closed_order_reconciles_clean() {
    let app = TestApp::spawn().await;
    let (http, csrf) = sign_in(&app).await;
    let kept = paid_order(&app).await;
    let refunded = paid_order(&app).await;
    let response = http
        .post(app.url(&format!("/admin/orders/{refunded}/refunds")))
        .form(&[("csrf", csrf.as_str()), ("amount", "0.01")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let closed = app.place_order(1, 1).await;
    app.open_pay_page(&closed).await;
    let report = app
        .reconciler(1)
        .await
        .run_once(Utc::now() + Span::minutes(20))
        .await
        .unwrap();
    assert_eq!(report.closed, 1);
    assert_eq!(app.order_row(&closed).await.0, "closed");

    let day = pay_day(&app, &kept).await;
    let shown = run_day(&app, &http, &csrf, &day).await;
    assert!(shown.contains("id=\"no-discrepancies\""), "{shown}");
    assert!(
        shown.contains("<span class=\"figure\" id=\"bill-lines\">3</span>"),
        "{shown}"
    );
    assert!(
        shown.contains("<span class=\"figure\" id=\"bill-matched\">3</span>"),
        "{shown}"
    );
    assert!(open_discrepancies(&app, &day).await.is_empty());
    // Run today, so the job takes it up again once the day's bill is final.
    let (status, next_at): (String, i64) =
        sqlx::query_as("SELECT status, next_at FROM bill_days WHERE day = $1")
            .bind(&day)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(status, "open");
    assert!(next_at > Utc::now().timestamp());
    let list = page(&app, &http, "/admin/bills").await;
    assert!(
        list.contains(&format!("href=\"/admin/bills/{day}\"")),
        "{list}"
    );
    let dashboard = page(&app, &http, "/admin").await;
    assert!(
        dashboard.contains("id=\"bill-discrepancies\">0<"),
        "{dashboard}"
    );
}

#[tokio::test]
async fn payments_the_shop_never_heard_of_are_found_applied_and_refunded_once() {
    let app = TestApp::spawn().await;
    let (http, csrf) = sign_in(&app).await;
    // One the shop still waits for; one it closed by mistake (a bug, say) though it was paid.
    let waiting = unheard_payment(&app).await;
    let closed = unheard_payment(&app).await;
    let now = Utc::now().timestamp();
    sqlx::query(
        "UPDATE orders SET status = 'closed', closed_at = $1, is_deleted = 1 WHERE out_trade_no = $2",
    )
    .bind(now)
    .bind(&closed)
    .execute(&app.db)
    .await
    .unwrap();
    assert_eq!(app.order_row(&waiting).await.0, "pending");

    let day = pay_day(&app, &waiting).await;
    let shown = run_day(&app, &http, &csrf, &day).await;
    let found = open_discrepancies(&app, &day).await;
    assert_eq!(found.len(), 2, "{found:?}");
    for (kind, reference, wechat_fee, shop_fee, action) in &found {
        assert_eq!(kind, "wechat_only");
        assert!(
            *reference == transaction_of(&app, &waiting).await
                || *reference == transaction_of(&app, &closed).await
        );
        assert!(wechat_fee.is_some() && shop_fee.is_none());
        assert!(action.starts_with("recorded: "), "{action}");
        assert!(shown.contains(reference.as_str()));
    }
    // The waiting order is paid; the closed one owes its money back and is refunded.
    assert!(
        app.wait_for_status(&waiting, "paid", Duration::from_secs(10))
            .await
    );
    let mut refunds = 0;
    for _ in 0..200 {
        refunds = app.sandbox_order(&closed).await["refunds"]
            .as_array()
            .map_or(0, Vec::len);
        if refunds > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(refunds, 1, "the late payment was never refunded");
    let metrics = app.ops_get("/metrics").await.text().await.unwrap();
    assert_eq!(
        metric(&metrics, "bill_discrepancies_total{kind=\"wechat_only\"}"),
        Some(2.0),
        "{metrics}"
    );

    // Again: nothing is new, nothing is done twice, and what was applied is resolved.
    run_day(&app, &http, &csrf, &day).await;
    let left = open_discrepancies(&app, &day).await;
    assert!(left.is_empty(), "{left:?}");
    let resolved: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM bill_discrepancies WHERE day = $1 AND resolved_at IS NOT NULL",
    )
    .bind(&day)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(resolved, 2);
    run_day(&app, &http, &csrf, &day).await;
    assert_eq!(
        app.sandbox_order(&closed).await["refunds"]
            .as_array()
            .map_or(0, Vec::len),
        1
    );
    let refunds_recorded: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM refunds WHERE out_trade_no = $1")
            .bind(&closed)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(refunds_recorded, 1);
    let metrics = app.ops_get("/metrics").await.text().await.unwrap();
    assert_eq!(
        metric(&metrics, "bill_discrepancies_total{kind=\"wechat_only\"}"),
        Some(2.0)
    );
}

#[tokio::test]
async fn an_altered_or_missing_line_is_reported_with_both_amounts() {
    let app = TestApp::spawn().await;
    let (http, csrf) = sign_in(&app).await;
    let no = paid_order(&app).await;
    let transaction = transaction_of(&app, &no).await;
    let total: i64 = sqlx::query_scalar("SELECT total_fee FROM orders WHERE out_trade_no = $1")
        .bind(&no)
        .fetch_one(&app.db)
        .await
        .unwrap();
    let day = pay_day(&app, &no).await;

    app.set_faults(serde_json::json!({ "bill_alter_amount": 1.0 }))
        .await;
    let shown = run_day(&app, &http, &csrf, &day).await;
    assert_eq!(
        open_discrepancies(&app, &day).await,
        [(
            "amount".to_owned(),
            transaction.clone(),
            Some(total + 100),
            Some(total),
            String::new()
        )]
    );
    assert!(shown.contains("金额不符"), "{shown}");

    app.set_faults(serde_json::json!({ "bill_omit_line": 1.0 }))
        .await;
    run_day(&app, &http, &csrf, &day).await;
    assert_eq!(
        open_discrepancies(&app, &day).await,
        [(
            "shop_only".to_owned(),
            transaction.clone(),
            None,
            Some(total),
            String::new()
        )]
    );
    let dashboard = page(&app, &http, "/admin").await;
    assert!(
        dashboard.contains("id=\"bill-discrepancies\">1<"),
        "{dashboard}"
    );

    // WeChat's bill put right: the day is clean again.
    app.set_faults(serde_json::json!({})).await;
    run_day(&app, &http, &csrf, &day).await;
    assert!(open_discrepancies(&app, &day).await.is_empty());
}

#[tokio::test]
async fn the_daily_job_reconciles_yesterday_and_retries_a_bill_not_made_yet() {
    // The job runs every second; yesterday's bill is due at 00:00 Beijing time.
    let app =
        TestApp::spawn_with(&[("RECONCILE_INTERVAL_SECS", "1"), ("BILL_FETCH_AT", "00:00")]).await;
    let yesterday = (Utc::now() + Span::hours(8) - Span::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let mut done = None;
    for _ in 0..150 {
        done = sqlx::query_as::<_, (String, i64, i64)>(
            "SELECT status, no_bill, attempts FROM bill_days WHERE day = $1 AND status = 'done'",
        )
        .bind(&yesterday)
        .fetch_optional(&app.db)
        .await
        .unwrap();
        if done.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A day without trades: WeChat has no bill, and nothing is wrong.
    assert_eq!(done, Some(("done".to_owned(), 1, 1)));
    let (http, csrf) = sign_in(&app).await;
    let shown = page(&app, &http, "/admin/bills").await;
    assert!(shown.contains("WeChat had no trades that day"), "{shown}");

    // A bill WeChat has not made yet: the day stays open with WeChat's words, due again later.
    app.set_faults(serde_json::json!({ "bill_creating": 1.0 }))
        .await;
    let shown = run_day(&app, &http, &csrf, &yesterday).await;
    assert!(shown.contains("Bill Creating"), "{shown}");
    let (status, next_at): (String, i64) =
        sqlx::query_as("SELECT status, next_at FROM bill_days WHERE day = $1")
            .bind(&yesterday)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(status, "open");
    assert!(next_at >= Utc::now().timestamp() + 1700);
    app.set_faults(serde_json::json!({})).await;
    run_day(&app, &http, &csrf, &yesterday).await;

    // A day not begun is refused.
    let tomorrow = (Utc::now() + Span::hours(8) + Span::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let response = http
        .post(app.url("/admin/bills/run"))
        .form(&[("csrf", csrf.as_str()), ("day", tomorrow.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn the_job_fills_the_days_it_missed_and_each_day_is_run_by_one_replica() {
    let app = TestApp::spawn().await;
    // Two replicas' checkout services; yesterday's bill is due from 00:00 Beijing time.
    let replica = || async {
        let mut terms = test_terms(Duration::from_secs(1), None);
        terms.bill_fetch_at = chrono::NaiveTime::MIN;
        app.checkout_on(demo_merchant(), terms).await
    };
    let (one, two) = (replica().await, replica().await);
    let now = Utc::now();
    let today = (now + Span::hours(8)).date_naive();
    let day = |back: i64| (today - Span::days(back)).format("%Y-%m-%d").to_string();
    // The last day the job knew: four days ago. The shop was down since.
    sqlx::query(
        "INSERT INTO bill_days (day, status, next_at, finished_at, created_at, updated_at)
         VALUES ($1, 'done', 0, 0, 0, 0)",
    )
    .bind(day(4))
    .execute(&app.db)
    .await
    .unwrap();
    let (ran_one, ran_two) = tokio::join!(one.bill_turn(now), two.bill_turn(now));
    let (ran_one, ran_two) = (ran_one.unwrap(), ran_two.unwrap());
    assert_eq!(ran_one.len() + ran_two.len(), 3, "{ran_one:?} {ran_two:?}");
    let days: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT day, status, no_bill, attempts FROM bill_days WHERE day > $1 ORDER BY day",
    )
    .bind(day(4))
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        days,
        [3, 2, 1].map(|back| (day(back), "done".to_owned(), 1, 1)),
        "each missed day once, by one replica"
    );
    // Nothing is due any more.
    assert!(one.bill_turn(now).await.unwrap().is_empty());
}
