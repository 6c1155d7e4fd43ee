//! WCAG 2.1 AA, checked by axe-core in a real browser on every page a shopper or the merchant
//! sees: axe's own script is injected into each page through WebDriver (Chromium runs it outside
//! the page's Content-Security-Policy, which allows no inline script) and any violation of the
//! `wcag2a`, `wcag2aa`, `wcag21a` and `wcag21aa` rules fails the test, naming each.
//! The walk through cart, checkout, pay, success, receipt and console is `browser.rs`'s; here
//! the pages it does not reach. axe-core comes from npm (`package.json`; `.ci/run` installs it):
//! under CI the tests fail when it or the browser is missing; elsewhere they say so and pass over.

use std::time::Duration;

use chrono::Duration as Span;
use fantoccini::{Client, Locator};

use crate::browser::{browser_available, start_browser};
use crate::helpers::TestApp;
use crate::phones::IPHONE;

const AXE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/node_modules/axe-core/axe.min.js"
);

/// axe-core's script, when it is installed (under CI it must be).
pub fn axe_script() -> Option<String> {
    match std::fs::read_to_string(AXE) {
        Ok(script) => Some(script),
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{AXE}: {e} (npm ci installs it from package.json; .ci/run does)"
            );
            eprintln!("SKIPPED accessibility check: run `npm ci` to install axe-core");
            None
        }
    }
}

/// The browser and axe-core both there (under CI they must be).
fn tools() -> Option<String> {
    if !browser_available() {
        return None;
    }
    axe_script()
}

/// [`assert_accessible`] where axe-core is installed (`None`: outside CI, it is not).
pub async fn check_accessible(browser: &Client, axe: Option<&str>, page: &str) {
    if let Some(axe) = axe {
        assert_accessible(browser, axe, page).await;
    }
}

/// Runs axe-core on the browser's current page and fails, naming each violation (its rule,
/// impact, the elements and what to do), if the page breaks a WCAG 2.1 A or AA rule. `page`
/// names the page in the message.
pub async fn assert_accessible(browser: &Client, axe: &str, page: &str) {
    let (url, violations) = violations(browser, axe, page).await;
    assert!(
        violations.is_empty(),
        "{page} ({url}) breaks WCAG 2.1 AA:\n{}",
        violations.join("\n")
    );
}

/// axe-core's WCAG 2.1 A and AA violations on the browser's current page, one line each; and
/// the page's URL.
async fn violations(browser: &Client, axe: &str, page: &str) -> (String, Vec<String>) {
    // Injected as a script of WebDriver's: not the page's, so its CSP does not stop it.
    browser
        .execute(&format!("{axe}\nreturn typeof window.axe;"), vec![])
        .await
        .unwrap_or_else(|e| panic!("{page}: injecting axe-core: {e}"));
    let answer = browser
        .execute_async(
            r#"var done = arguments[arguments.length - 1];
               window.axe.run(document, {
                 runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] },
                 resultTypes: ["violations"]
               }).then(function (result) {
                 done({ url: location.href, violations: result.violations.map(function (v) {
                   return { id: v.id, impact: v.impact, help: v.help,
                            targets: v.nodes.map(function (n) { return n.target.join(" "); }) };
                 }) });
               }, function (error) { done({ error: String(error) }); });"#,
            vec![],
        )
        .await
        .unwrap_or_else(|e| panic!("{page}: running axe-core: {e}"));
    assert!(answer["error"].is_null(), "{page}: axe-core: {answer}");
    let said = answer["violations"]
        .as_array()
        .expect("axe-core's violations")
        .iter()
        .map(|v| {
            format!(
                "  {} ({}): {} — {}",
                v["id"].as_str().unwrap_or_default(),
                v["impact"].as_str().unwrap_or("?"),
                v["targets"],
                v["help"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    (answer["url"].as_str().unwrap_or_default().to_owned(), said)
}

/// Waits for an element, naming it when it never comes.
async fn wait_for(browser: &Client, css: &str) -> fantoccini::elements::Element {
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
}

/// Fills in the contact form and sends it.
async fn send_contact(browser: &Client) {
    for (field, value) in [
        ("f-name", "王小明"),
        ("f-phone", "138 0013 8000"),
        ("f-address", "浙江省杭州市西湖区龙井路 1 号"),
    ] {
        wait_for(browser, &format!("#{field}"))
            .await
            .send_keys(value)
            .await
            .unwrap();
    }
    browser
        .find(Locator::Id("place-order"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test]
async fn the_catalogue_errors_stock_refusals_and_a_closed_order_meet_wcag_aa() {
    let Some(axe) = tools() else {
        return;
    };
    let (_driver, browser, _profile) = start_browser(None).await;
    let app = TestApp::spawn().await;

    browser.goto(&app.url("/")).await.unwrap();
    wait_for(&browser, "li.product").await;
    assert_accessible(&browser, &axe, "the catalogue").await;

    // An unknown address: the shop's own 404 page, its chrome (the sandbox's footer) kept.
    browser.goto(&app.url("/no/such/page")).await.unwrap();
    let detail = wait_for(&browser, "#error-detail").await;
    assert!(detail
        .text()
        .await
        .unwrap()
        .contains("There is no page at this address"));
    browser
        .find(Locator::Css("footer #sandbox-mode"))
        .await
        .expect("the sandbox's footer on an error page");
    browser.find(Locator::Id("back-home")).await.unwrap();
    assert_accessible(&browser, &axe, "the 404 page").await;

    // More than is left, bought at once (the pots: 5 in stock): the catalogue again, 409, the
    // quantity typed kept in the product's form and what is left said beside it.
    browser
        .goto(&app.url("/checkout?sku_id=6&num=9"))
        .await
        .unwrap();
    send_contact(&browser).await;
    let problem = wait_for(&browser, "#short-6").await;
    assert!(problem.text().await.unwrap().contains("仅剩 5 件"));
    let kept = browser
        .find(Locator::Css("#buy-6 input[name=num]"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("9"), "the quantity typed is kept");
    browser.find(Locator::Id("stock-problem")).await.unwrap();
    assert_accessible(&browser, &axe, "the catalogue refusing a buy (409)").await;

    // A cart asking for more than is left by the time it is checked out: the cart again (409).
    browser.goto(&app.url("/")).await.unwrap();
    let quantity = wait_for(&browser, "#buy-6 input[name=num]").await;
    quantity.clear().await.unwrap();
    quantity.send_keys("5").await.unwrap();
    browser
        .find(Locator::Css("#buy-6 button.add"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&browser, "#check-out").await;
    app.place_order(6, 1).await;
    browser.goto(&app.url("/checkout")).await.unwrap();
    send_contact(&browser).await;
    wait_for(&browser, "#cart-refused").await;
    assert!(browser
        .find(Locator::Id("short-6"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .contains("Only 4 left"));
    assert_accessible(&browser, &axe, "the cart refusing its checkout (409)").await;

    // An order whose time ran out, closed by the reconciliation job: the failed page.
    let no = app.place_order(3, 1).await;
    app.open_pay_page(&no).await;
    let created = app.created_at(&no).await;
    let report = app
        .reconciler(1)
        .await
        .run_once(created + Span::minutes(6))
        .await
        .unwrap();
    assert_eq!(report.closed, 1, "{report:?}");
    browser
        .goto(&app.url(&format!("/pay/{no}/failed")))
        .await
        .unwrap();
    wait_for(&browser, "#out-trade-no").await;
    assert_accessible(&browser, &axe, "the failed page").await;
    browser.close().await.unwrap();
}

#[tokio::test]
async fn the_pay_page_on_a_phone_meets_wcag_aa() {
    let Some(axe) = tools() else {
        return;
    };
    let (_driver, browser, _profile) = start_browser(Some(IPHONE)).await;
    let app = TestApp::spawn().await;
    let no = app.place_order(1, 1).await;
    browser.goto(&app.url(&format!("/pay/{no}"))).await.unwrap();
    wait_for(&browser, "#pay-h5").await;
    assert_accessible(&browser, &axe, "the pay page on a phone").await;

    // The check can fail: a field without a label and pale text, added to the page, are found.
    browser
        .execute(
            r#"var field = document.createElement("input");
               var pale = document.createElement("p");
               pale.textContent = "浅色 Pale";
               pale.style.color = "rgb(7, 193, 96)";
               document.querySelector("main").append(field, pale);"#,
            vec![],
        )
        .await
        .unwrap();
    let (_, found) = violations(&browser, &axe, "a page made worse").await;
    for rule in ["label", "color-contrast"] {
        assert!(
            found.iter().any(|v| v.trim_start().starts_with(rule)),
            "{rule}: {found:?}"
        );
    }
    browser.close().await.unwrap();
}

/// Without scripts the pay page cannot move on by itself: it offers a link that asks again
/// (the pay page sends a finished order on to its result), never a refresh every 5 s.
#[tokio::test]
async fn the_pay_page_without_scripts_offers_to_check_instead_of_refreshing() {
    let app = TestApp::spawn().await;
    let no = app.place_order(1, 1).await;
    let page = app.get(&format!("/pay/{no}")).await.text().await.unwrap();
    assert!(!page.contains("http-equiv=\"refresh\""), "{page}");
    let noscript = page
        .split("<noscript>")
        .nth(1)
        .and_then(|rest| rest.split("</noscript>").next())
        .expect("a noscript block");
    assert!(
        noscript.contains(&format!("href=\"/pay/{no}\"")) && noscript.contains("我已付款"),
        "{noscript}"
    );
    assert!(
        page.contains("src=\"/static/wechatpay.svg\""),
        "WeChat Pay's mark"
    );
    let mark = app.get("/static/wechatpay.svg").await;
    assert_eq!(mark.status(), 200);
    assert_eq!(mark.headers()["content-type"], "image/svg+xml");
}
