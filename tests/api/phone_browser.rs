//! Paying on a phone in a real browser (headless Chromium with a phone's user agent): an
//! iPhone's Safari pays through H5 — the shop's button, the sandbox's page standing in for
//! WeChat, the way back — and lands on the success page; WeChat's own browser goes through the
//! official account's OAuth and pays through the page's `getBrandWCPayRequest`, answered by the
//! sandbox's `WeixinJSBridge` stand-in.

use std::time::Duration;

use fantoccini::{Client, Locator};

use crate::browser::{browser_available, start_browser};
use crate::helpers::TestApp;
use crate::phones::{IPHONE, WECHAT};

async fn click(browser: &Client, id: &str) {
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Waits until the browser is on `path`.
async fn wait_for_path(browser: &Client, path: &str) {
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let url = browser.current_url().await.unwrap();
        if url.path() == path {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "still on {url}, not {path}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_iphone_pays_through_h5_and_lands_on_success() {
    if !browser_available() {
        return;
    }
    let (_driver, browser, _profile) = start_browser(Some(IPHONE)).await;
    let app = TestApp::spawn().await;
    let no = app.place_order(1, 1).await;
    browser.goto(&app.url(&format!("/pay/{no}"))).await.unwrap();
    click(&browser, "pay-h5").await;
    // The sandbox's page stands in for WeChat: the amount, then Pay.
    wait_for_path(&browser, "/sandbox/mweb").await;
    let page = browser.source().await.unwrap();
    assert!(page.contains("128.00"), "the H5 page shows the amount");
    click(&browser, "mweb-pay").await;
    // Back at the shop, the page asks and moves on.
    wait_for_path(&browser, &format!("/pay/{no}/success")).await;
    let heading = browser
        .find(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(heading.contains("支付成功"), "{heading}");
    assert_eq!(
        app.sandbox_order(&format!("{no}H")).await["trade_type"],
        "MWEB"
    );
}

#[tokio::test]
async fn wechat_goes_through_oauth_and_pays_with_the_jsapi_bridge() {
    if !browser_available() {
        return;
    }
    let (_driver, browser, _profile) = start_browser(Some(WECHAT)).await;
    let app = TestApp::spawn().await;
    let no = app.place_order(1, 1).await;
    // OAuth is silent: the browser comes back to the pay page with its WeChat button.
    browser.goto(&app.url(&format!("/pay/{no}"))).await.unwrap();
    wait_for_path(&browser, &format!("/pay/{no}")).await;
    click(&browser, "pay-jsapi").await;
    // The bridge stand-in's pay sheet: Pay.
    click(&browser, "wx-sandbox-pay").await;
    wait_for_path(&browser, &format!("/pay/{no}/success")).await;
    let order = app.sandbox_order(&format!("{no}J")).await;
    assert_eq!(order["trade_type"], "JSAPI");
    assert_eq!(order["trade_state"], "SUCCESS");
}

#[tokio::test]
async fn a_phone_that_can_pay_neither_way_is_told_how_and_can_copy_the_link() {
    if !browser_available() {
        return;
    }
    let (_driver, browser, _profile) = start_browser(Some(IPHONE)).await;
    let app = TestApp::spawn_with(&[("WEIXIN_H5", "false")]).await;
    let no = app.place_order(1, 1).await;
    browser.goto(&app.url(&format!("/pay/{no}"))).await.unwrap();
    let instructions = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("phone-instructions"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        instructions.contains("Open this page on a computer"),
        "{instructions}"
    );
    let link = browser
        .find(Locator::Id("page-link"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert!(link.ends_with(&format!("/pay/{no}")), "{link}");
    click(&browser, "copy-link").await;
    let label = browser
        .find(Locator::Id("copy-link"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(label.contains("Copied"), "{label}");
    // The QR code is a tap away, for another phone.
    let qr = browser.find(Locator::Css("#qr svg")).await.unwrap();
    assert!(!qr.is_displayed().await.unwrap(), "folded away at first");
    browser
        .find(Locator::Css("#qr-switch summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(qr.is_displayed().await.unwrap());
}
