//! The pay page's honest states in a real browser: the success page the moment the payment is
//! applied (pushed, not polled), a declined payment shown at once with the code still usable,
//! the last minute announced and the code greyed out at the end, and *Cancel order* giving the
//! stock back and the goods a way into the cart again.

use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};

use crate::browser::{browser_available, start_browser};
use crate::helpers::TestApp;

/// Waits until `condition` holds in the page, polling every 20 ms; the time it took.
async fn until(browser: &Client, what: &str, deadline: Duration, script: &str) -> Duration {
    let started = Instant::now();
    loop {
        let holds = browser.execute(script, vec![]).await.unwrap();
        if holds.as_bool() == Some(true) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < deadline,
            "{what}: not within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the page's event stream is open at the shop.
async fn stream_open(app: &TestApp) {
    let started = Instant::now();
    loop {
        let metrics = app.ops_get("/metrics").await.text().await.unwrap();
        if metrics.contains("event_streams_open 1") {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the page never listened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn text(browser: &Client, id: &str) -> String {
    browser
        .find(Locator::Id(id))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn success_is_shown_the_moment_the_payment_is_applied_and_the_last_minute_is_announced() {
    if !browser_available() {
        return;
    }
    let (_driver, browser, _profile) = start_browser(None).await;
    let app = TestApp::spawn().await;
    let no = app.place_order(1, 1).await;
    browser.goto(&app.url(&format!("/pay/{no}"))).await.unwrap();
    let code_url = app.sandbox_order(&no).await["code_url"]
        .as_str()
        .unwrap()
        .to_owned();
    // The page has its stream open before the shopper pays.
    stream_open(&app).await;
    let paid = Instant::now();
    app.pay_in_sandbox(&code_url).await;
    let success = format!("/pay/{no}/success");
    until(
        &browser,
        "the success page",
        Duration::from_secs(5),
        &format!("return location.pathname === '{success}'"),
    )
    .await;
    let took = paid.elapsed();
    eprintln!("payment to success page: {took:?}");
    // Polling alone would take up to 10 s with the stream open: this is the push.
    assert!(took < Duration::from_millis(2500), "{took:?}");

    // Another order: the clock moved to its last minute, then past its end.
    let no = app.place_order(1, 1).await;
    browser.goto(&app.url(&format!("/pay/{no}"))).await.unwrap();
    let shift = |seconds_left: i64| {
        format!(
            "var root = document.getElementById('pay'); var end = Number(root.dataset.expiresAt); \
             var real = Date.now.bind(Date); var skew = end - {seconds_left} * 1000 - real(); \
             Date.now = function () {{ return real() + skew; }};"
        )
    };
    browser.execute(&shift(45), vec![]).await.unwrap();
    until(
        &browser,
        "the last-minute warning",
        Duration::from_secs(3),
        "return !document.getElementById('expiry-warning').hidden",
    )
    .await;
    assert!(text(&browser, "expiry-warning")
        .await
        .contains("1 minute left"));
    browser.execute(&shift(-1), vec![]).await.unwrap();
    until(
        &browser,
        "the expired state",
        Duration::from_secs(3),
        "return document.getElementById('pay').classList.contains('expired') && !document.getElementById('expired-notice').hidden",
    )
    .await;
    assert!(text(&browser, "expired-notice").await.contains("Expired"));
    assert!(browser.find(Locator::Id("buy-again")).await.is_ok());
}

#[tokio::test]
async fn a_declined_payment_is_shown_at_once_and_cancel_gives_the_stock_back() {
    if !browser_available() {
        return;
    }
    let (_driver, browser, _profile) = start_browser(None).await;
    let app = TestApp::spawn().await;
    // WeChat follows the decline with a signed FAIL notify.
    app.set_faults(serde_json::json!({ "fail_notify": 1.0 }))
        .await;
    let before = app.stock(2).await;
    let no = app.place_order(2, 1).await;
    browser.goto(&app.url(&format!("/pay/{no}"))).await.unwrap();
    let code_url = app.sandbox_order(&no).await["code_url"]
        .as_str()
        .unwrap()
        .to_owned();
    stream_open(&app).await;
    let declined = Instant::now();
    app.pay_in_sandbox_as(&code_url, "fail").await;
    until(
        &browser,
        "the declined payment",
        Duration::from_secs(5),
        "return document.getElementById('status-line').textContent.indexOf('did not go through') >= 0",
    )
    .await;
    let took = declined.elapsed();
    eprintln!("declined payment to the page: {took:?}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
    assert!(
        browser.find(Locator::Css("#qr svg")).await.is_ok(),
        "the code stays"
    );

    // The shopper cancels: WeChat closes it once it may; the stock comes back then.
    browser
        .find(Locator::Id("cancel-order"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &browser,
        "the cancelling page",
        Duration::from_secs(5),
        &format!("return location.pathname === '/pay/{no}/failed'"),
    )
    .await;
    assert!(browser
        .source()
        .await
        .unwrap()
        .contains("Cancelling the order"));
    let created = app.created_at(&no).await;
    app.advance_sandbox_clock(6 * 60).await;
    let report = app
        .reconciler(100)
        .await
        .run_once(created + chrono::Duration::minutes(6))
        .await
        .unwrap();
    assert_eq!(report.closed, 1);
    assert_eq!(app.stock(2).await, before, "the stock is back");
    // (The job ran as another replica would: the shop's own copy of the order catches up.)
    let started = Instant::now();
    loop {
        browser.refresh().await.unwrap();
        if browser
            .source()
            .await
            .unwrap()
            .contains("The order was cancelled")
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never shown cancelled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser
        .find(Locator::Id("buy-again"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &browser,
        "the cart",
        Duration::from_secs(5),
        "return location.pathname === '/cart' && document.querySelectorAll('tr.line').length === 1",
    )
    .await;
}
