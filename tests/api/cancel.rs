//! The shopper's *Cancel order* and *Buy the same again*: an order WeChat never heard of
//! closes at once; one with a prepay closes at WeChat first — at once when WeChat allows it, or
//! by the reconciliation job at the first moment it does — and either way its stock goes back
//! and its page hears `closed`; a form from another site changes nothing.

use std::time::Duration;

use crate::helpers::{cookie_browser, TestApp};

async fn cancel(app: &TestApp, no: &str) -> reqwest::Response {
    app.http
        .post(app.url(&format!("/pay/{no}/cancel")))
        .send()
        .await
        .unwrap()
}

async fn status(app: &TestApp, no: &str) -> (String, Option<i64>) {
    sqlx::query_as("SELECT status, cancel_requested_at FROM orders WHERE out_trade_no = $1")
        .bind(no)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_order_wechat_never_heard_of_is_cancelled_at_once() {
    let app = TestApp::spawn().await;
    let before = app.stock(2).await;
    let no = app.place_order(2, 3).await;
    assert_eq!(app.stock(2).await, before - 3);
    let cancelled = cancel(&app, &no).await;
    assert_eq!(cancelled.status(), 303);
    assert_eq!(
        cancelled.headers()["location"],
        format!("/pay/{no}/failed").as_str()
    );
    assert_eq!(status(&app, &no).await.0, "closed");
    assert_eq!(app.stock(2).await, before, "the stock is back");
    let page = app
        .get(&format!("/pay/{no}/failed"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("The order was cancelled"), "{page}");
    assert!(page.contains("id=\"buy-again\""));
    // Cancelling again changes nothing.
    assert_eq!(cancel(&app, &no).await.status(), 303);
    assert_eq!(app.stock(2).await, before);
}

#[tokio::test]
async fn a_cancel_from_another_site_changes_nothing() {
    let app = TestApp::spawn().await;
    let no = app.place_order(2, 1).await;
    let forged = app
        .http
        .post(app.url(&format!("/pay/{no}/cancel")))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(status(&app, &no).await, ("pending".to_owned(), None));
}

#[tokio::test]
async fn a_young_order_with_a_code_closes_at_wechat_as_soon_as_wechat_allows() {
    let app = TestApp::spawn().await;
    let before = app.stock(2).await;
    let no = app.place_order(2, 1).await;
    app.open_pay_page(&no).await;
    let cancelled = cancel(&app, &no).await;
    assert_eq!(cancelled.status(), 303);
    // WeChat refuses to close an order in its first 5 minutes: noted, the code no longer shown.
    let (state, asked) = status(&app, &no).await;
    assert_eq!(state, "pending");
    assert!(asked.is_some());
    assert_eq!(
        app.stock(2).await,
        before - 1,
        "held until WeChat closes it"
    );
    let pay = app.get(&format!("/pay/{no}")).await;
    assert_eq!(pay.status(), 303, "no code for a cancelled order");
    let page = app
        .get(&format!("/pay/{no}/failed"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Cancelling the order"), "{page}");
    // The job closes it at the first moment WeChat allows, however many attempts it has left.
    let created = app.created_at(&no).await;
    app.advance_sandbox_clock(6 * 60).await;
    let job = app.reconciler(100).await;
    let report = job
        .run_once(created + chrono::Duration::minutes(5) + chrono::Duration::seconds(5))
        .await
        .unwrap();
    assert_eq!(report.closed, 1, "{report:?}");
    assert_eq!(status(&app, &no).await.0, "closed");
    assert_eq!(app.sandbox_order(&no).await["trade_state"], "CLOSED");
    assert_eq!(app.stock(2).await, before);
}

#[tokio::test]
async fn an_older_order_is_closed_at_wechat_at_once_and_its_page_hears_it() {
    let app = TestApp::spawn().await;
    let before = app.stock(2).await;
    let no = app.place_order(2, 1).await;
    // Six minutes old (WeChat, too, has had it that long).
    sqlx::query(
        "UPDATE orders SET created_at = created_at - 360, expires_at = expires_at - 360
         WHERE out_trade_no = $1",
    )
    .bind(&no)
    .execute(&app.db)
    .await
    .unwrap();
    app.open_pay_page(&no).await;
    app.advance_sandbox_clock(6 * 60).await;
    let events = app
        .http
        .get(app.url(&format!("/pay/{no}/events")))
        .send()
        .await
        .unwrap();
    let mut events = events;
    let mut seen = String::new();
    assert_eq!(cancel(&app, &no).await.status(), 303);
    assert_eq!(status(&app, &no).await.0, "closed");
    assert_eq!(app.stock(2).await, before);
    assert_eq!(app.sandbox_order(&no).await["trade_state"], "CLOSED");
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while !seen.contains("data: closed") {
        let chunk = tokio::time::timeout_at(until, events.chunk())
            .await
            .expect("the page hears it closed")
            .unwrap()
            .unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test]
async fn the_same_goods_can_be_bought_again_from_a_closed_order() {
    let app = TestApp::spawn().await;
    let no = app.place_order(2, 2).await;
    assert_eq!(cancel(&app, &no).await.status(), 303);
    let browser = cookie_browser();
    let again = browser
        .post(app.url(&format!("/pay/{no}/again")))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 303);
    assert_eq!(again.headers()["location"], "/cart");
    let cart = browser
        .get(app.url("/cart"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(cart.contains("class=\"line\""), "{cart}");
    assert!(cart.contains("value=\"2\""), "the same quantity: {cart}");
}
