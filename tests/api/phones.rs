//! Paying on a phone against the real sandbox: H5 (`MWEB`) and JSAPI payment attempts, each its
//! own WeChat order. The first paid pays the order and the spare ones are closed at WeChat; a
//! second payment is a late payment, refunded under the number WeChat took it under; the H5
//! attempt sends the shopper's IP (behind a trusted proxy only); JSAPI's OAuth `state` is bound
//! to the browser that started it.

use std::time::Duration;

use chrono::Duration as Span;

use crate::helpers::{cookie_browser, TestApp};

pub(crate) const IPHONE: &str =
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 \
     (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
pub(crate) const WECHAT: &str = "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like \
     Gecko) Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 MicroMessenger/8.0.47.2560(0x28002F35) \
     WeChat/arm64 Weixin NetType/WIFI Language/zh_CN";

/// Taps *Pay with WeChat* on the phone: the shop's 303 to WeChat's H5 page.
async fn tap_h5(app: &TestApp, no: &str, forwarded: Option<&str>) -> String {
    let mut request = app
        .http
        .get(app.url(&format!("/pay/{no}/h5")))
        .header("user-agent", IPHONE);
    if let Some(forwarded) = forwarded {
        request = request.header("x-forwarded-for", forwarded);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    response.headers()["location"].to_str().unwrap().to_owned()
}

/// Pays one of the sandbox's orders by its prepay, as the shopper's WeChat would.
async fn pay_prepay(app: &TestApp, wechat_no: &str) -> serde_json::Value {
    let prepay_id = app.sandbox_order(wechat_no).await["prepay_id"]
        .as_str()
        .unwrap_or_else(|| panic!("the sandbox has no prepay for {wechat_no}"))
        .to_owned();
    let response = app
        .http
        .post(app.sandbox_url("sandbox/pay"))
        .json(&serde_json::json!({ "prepay_id": prepay_id, "outcome": "success" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// status, paid_no, refund_due of an order.
async fn order_state(app: &TestApp, no: &str) -> (String, Option<String>, i64) {
    sqlx::query_as(
        "SELECT status, paid_no, CAST(refund_due AS BIGINT) FROM orders WHERE out_trade_no = $1",
    )
    .bind(no)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

/// Whether the shop has an attempt closed at WeChat.
async fn attempt_closed(app: &TestApp, attempt_no: &str) -> bool {
    let closed: Option<i64> =
        sqlx::query_scalar("SELECT closed_at FROM payment_attempts WHERE attempt_no = $1")
            .bind(attempt_no)
            .fetch_one(&app.db)
            .await
            .unwrap();
    closed.is_some()
}

#[tokio::test]
async fn an_h5_payment_pays_the_order_and_its_qr_code_is_closed_at_wechat() {
    let app = TestApp::spawn().await;
    let no = app.place_order(1, 1).await;
    // Seen on a computer first (the QR code's prepay), then paid on the phone.
    app.open_pay_page(&no).await;
    let mweb = tap_h5(&app, &no, None).await;
    let h5 = format!("{no}H");
    assert!(mweb.contains("/sandbox/mweb?prepay_id="), "{mweb}");
    let back = format!(
        "redirect_url={}",
        urlencode(&app.url(&format!("/pay/{no}?returned=h5")))
    );
    assert!(mweb.ends_with(&back), "{mweb} returns to the pay page");
    let sandbox = app.sandbox_order(&h5).await;
    assert_eq!(sandbox["trade_type"], "MWEB");
    let scene: serde_json::Value =
        serde_json::from_str(sandbox["scene_info"].as_str().unwrap()).unwrap();
    assert_eq!(scene["h5_info"]["type"], "Wap");
    assert_eq!(scene["h5_info"]["wap_url"], app.url("/"));

    pay_prepay(&app, &h5).await;
    assert!(
        app.wait_for_status(&no, "paid", Duration::from_secs(5))
            .await
    );
    let (status, paid_no, due) = order_state(&app, &no).await;
    assert_eq!(
        (status.as_str(), paid_no.as_deref(), due),
        ("paid", Some(h5.as_str()), 0)
    );
    // Back from WeChat's page, the pay page goes to the success page.
    let back = app
        .http
        .get(app.url(&format!("/pay/{no}?returned=h5")))
        .header("user-agent", IPHONE)
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 303);
    assert_eq!(
        back.headers()["location"],
        format!("/pay/{no}/success").as_str()
    );

    // The QR code can still take money at WeChat: the job closes it once WeChat allows (5
    // minutes after it was made), and never the attempt that paid.
    let job = app.reconciler(10).await;
    let report = job.run_once(chrono::Utc::now()).await.unwrap();
    assert_eq!(report.spare_attempts_closed, 0, "too young to close");
    assert!(!attempt_closed(&app, &no).await);
    app.advance_sandbox_clock(6 * 60).await;
    let report = job
        .run_once(chrono::Utc::now() + Span::minutes(6))
        .await
        .unwrap();
    assert_eq!(report.spare_attempts_closed, 1);
    assert!(attempt_closed(&app, &no).await);
    assert_eq!(app.sandbox_order(&no).await["trade_state"], "CLOSED");
    assert_eq!(app.sandbox_order(&h5).await["trade_state"], "SUCCESS");
    // The console lists both.
    let (http, _) = crate::admin::sign_in(&app).await;
    let page = crate::admin::page(&app, &http, &format!("/admin/orders/{no}")).await;
    assert!(page.contains("id=\"attempts\""), "{page}");
    assert!(page.contains(&h5) && page.contains("MWEB") && page.contains("paid the order"));
    assert!(page.contains("over at WeChat"));
}

#[tokio::test]
async fn a_qr_payment_closes_the_h5_attempt_and_a_second_payment_is_refunded_under_its_number() {
    let app = TestApp::spawn().await;
    let no = app.place_order(1, 1).await;
    let code_url = app.open_pay_page(&no).await;
    tap_h5(&app, &no, None).await;
    let h5 = format!("{no}H");
    // Paid by QR code; the shopper's phone pays the H5 page too before anyone closes it.
    app.pay_in_sandbox(&code_url).await;
    assert!(
        app.wait_for_status(&no, "paid", Duration::from_secs(5))
            .await
    );
    let second = pay_prepay(&app, &h5).await;
    let second_tid = second["transaction_id"].as_str().unwrap().to_owned();
    // The second payment's notify is recorded and applied as late money, refunded in full at
    // once under the H5 attempt's number.
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let refunded: Option<(String, String, i64)> = sqlx::query_as(
            "SELECT wechat_no, status, refund_fee FROM refunds WHERE out_trade_no = $1 AND late = 1",
        )
        .bind(&no)
        .fetch_optional(&app.db)
        .await
        .unwrap();
        if let Some((wechat_no, status, fee)) = refunded {
            if status == "succeeded" {
                assert_eq!(wechat_no, h5);
                assert_eq!(fee, second["total_fee"].as_i64().unwrap());
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < until,
            "no late refund settled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, paid_no, _) = order_state(&app, &no).await;
    assert_eq!(
        (status.as_str(), paid_no),
        ("paid", None),
        "the first payment paid it"
    );
    assert_eq!(app.sandbox_order(&h5).await["trade_state"], "REFUND");
    let outcome: String =
        sqlx::query_scalar("SELECT outcome FROM payment_events WHERE transaction_id = $1")
            .bind(&second_tid)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(outcome, "paid_after_close");
    // Paid at WeChat, the H5 attempt can take no more: nothing left to close.
    assert!(attempt_closed(&app, &h5).await);
}

#[tokio::test]
async fn an_expired_order_closes_only_once_its_phone_attempt_is_closed_at_wechat() {
    let app = TestApp::spawn_with(&[("ORDER_TTL_SECS", "300")]).await;
    let no = app.place_order(1, 1).await;
    // Paid on a phone only: the order never had a QR code's prepay.
    tap_h5(&app, &no, None).await;
    let h5 = format!("{no}H");
    let created = app.created_at(&no).await;
    let job = app.reconciler_with(None).await;
    let report = job.run_once(created + Span::minutes(2)).await.unwrap();
    assert_eq!(
        report.queried, 1,
        "an order with a phone attempt is asked about"
    );
    assert_eq!(order_state(&app, &no).await.0, "pending");
    app.advance_sandbox_clock(7 * 60).await;
    let report = job.run_once(created + Span::minutes(7)).await.unwrap();
    assert_eq!(report.closed, 1, "{report:?}");
    assert_eq!(order_state(&app, &no).await.0, "closed");
    assert!(attempt_closed(&app, &h5).await);
    assert_eq!(app.sandbox_order(&h5).await["trade_state"], "CLOSED");
}

#[tokio::test]
async fn h5_sends_the_shoppers_ip_from_a_trusted_proxy_and_ignores_anyone_elses_forwarding() {
    let behind = TestApp::spawn_with(&[("TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    let no = behind.place_order(1, 1).await;
    // The proxy appends the address it saw; what comes before is the client's own say.
    tap_h5(&behind, &no, Some("198.51.100.9, 203.0.113.7")).await;
    let sent = behind.sandbox_order(&format!("{no}H")).await;
    assert_eq!(sent["spbill_create_ip"], "203.0.113.7");

    let open = TestApp::spawn_with(&[("TRUSTED_PROXIES", "10.0.0.0/8")]).await;
    let no = open.place_order(1, 1).await;
    tap_h5(&open, &no, Some("203.0.113.7")).await;
    let sent = open.sandbox_order(&format!("{no}H")).await;
    assert_eq!(
        sent["spbill_create_ip"], "127.0.0.1",
        "the peer, not its forwarding"
    );
}

#[tokio::test]
async fn inside_wechat_oauth_gives_the_openid_and_the_page_pays_through_jsapi() {
    let app = TestApp::spawn().await;
    let no = app.place_order(1, 1).await;
    let browser = cookie_browser();
    let get = |url: String| {
        let browser = browser.clone();
        async move {
            browser
                .get(url)
                .header("user-agent", WECHAT)
                .send()
                .await
                .unwrap()
        }
    };
    // The pay page in WeChat goes for the openid first.
    let page = get(app.url(&format!("/pay/{no}"))).await;
    assert_eq!(page.status(), 303);
    assert_eq!(
        page.headers()["location"],
        format!("/pay/{no}/wechat").as_str()
    );
    let start = get(app.url(&format!("/pay/{no}/wechat"))).await;
    assert_eq!(start.status(), 303);
    let authorize = start.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        authorize.contains("/connect/oauth2/authorize?appid="),
        "{authorize}"
    );
    assert!(
        authorize.contains("&scope=snsapi_base&state=") && authorize.ends_with("#wechat_redirect")
    );
    let consent = get(authorize.replace("#wechat_redirect", "")).await;
    assert_eq!(consent.status(), 302);
    let back = consent.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        back.starts_with(&app.url(&format!("/pay/{no}/wechat/back?"))),
        "{back}"
    );

    // Another browser cannot bring this code home (its state is not bound to it).
    let stranger = no_cookies_get(&back).await;
    assert_eq!(stranger.status(), 409);
    assert!(attempts(&app, &no).await.is_empty(), "nothing made");

    let home = get(back).await;
    assert_eq!(home.status(), 303);
    assert_eq!(home.headers()["location"], format!("/pay/{no}").as_str());
    let page = get(app.url(&format!("/pay/{no}"))).await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("id=\"pay-jsapi\""), "{page}");
    assert!(
        page.contains("/sandbox/jsbridge.js"),
        "the sandbox's bridge stand-in is loaded"
    );
    let params = data_params(&page);
    assert!(params["package"].as_str().unwrap().len() > "prepay_id=".len());
    assert_eq!(params["signType"], "MD5");
    // paySign by WeChat's rule, computed here independently.
    let pairs: Vec<(&str, &str)> = ["appId", "nonceStr", "package", "signType", "timeStamp"]
        .iter()
        .map(|k| (*k, params[*k].as_str().unwrap()))
        .collect();
    assert_eq!(
        params["paySign"],
        crate::helpers::independent_sign(&pairs, wxpay_checkout::config::SANDBOX_KEY, false)
    );
    let attempt = &attempts(&app, &no).await[0];
    assert_eq!(attempt.0, format!("{no}J"));
    let openid = attempt.1.clone().unwrap();
    assert!(!page.contains(&openid), "the openid is never shown");
    let sandbox = app.sandbox_order(&format!("{no}J")).await;
    assert_eq!(sandbox["trade_type"], "JSAPI");
    assert_eq!(sandbox["openid"], openid.as_str());

    // The bridge pays; the shop learns it by notify.
    let paid = app
        .http
        .post(app.sandbox_url("sandbox/jsapi/pay"))
        .header("content-type", "text/plain")
        .body(params.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200, "{}", paid.text().await.unwrap());
    assert!(
        app.wait_for_status(&no, "paid", Duration::from_secs(5))
            .await
    );
    let (status, paid_no, _) = order_state(&app, &no).await;
    assert_eq!((status.as_str(), paid_no), ("paid", Some(format!("{no}J"))));
    // The console names the payer by a masked openid only.
    let (http, _) = crate::admin::sign_in(&app).await;
    let page = crate::admin::page(&app, &http, &format!("/admin/orders/{no}")).await;
    assert!(
        page.contains(&format!("JSAPI · {}…", &openid[..6])),
        "{page}"
    );
    assert!(!page.contains(&openid));
}

#[tokio::test]
async fn a_phone_is_offered_what_the_shop_has() {
    let app = TestApp::spawn_with(&[("WEIXIN_H5", "false")]).await;
    let no = app.place_order(1, 1).await;
    let phone = app
        .http
        .get(app.url(&format!("/pay/{no}")))
        .header("user-agent", IPHONE)
        .send()
        .await
        .unwrap();
    assert_eq!(phone.status(), 200);
    let page = phone.text().await.unwrap();
    assert!(page.contains("id=\"phone-instructions\"") && page.contains("id=\"copy-link\""));
    assert!(!page.contains("id=\"pay-h5\""));
    assert!(
        page.contains("id=\"qr-switch\""),
        "the QR code is a tap away"
    );
    let refused = app
        .http
        .get(app.url(&format!("/pay/{no}/h5")))
        .header("user-agent", IPHONE)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 409);
    assert!(attempts(&app, &no).await.is_empty());
    // With H5 on (sandbox mode's default) the phone gets the button; a computer the QR code.
    let app = TestApp::spawn().await;
    let no = app.place_order(1, 1).await;
    let page = app
        .http
        .get(app.url(&format!("/pay/{no}")))
        .header("user-agent", IPHONE)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"pay-h5\"") && page.contains("id=\"qr-switch\""));
    let desktop = app.get(&format!("/pay/{no}")).await.text().await.unwrap();
    assert!(!desktop.contains("id=\"pay-h5\"") && !desktop.contains("qr-switch"));
    assert!(desktop.contains("<svg"));
}

/// An order's attempts: number and openid.
async fn attempts(app: &TestApp, no: &str) -> Vec<(String, Option<String>)> {
    sqlx::query_as("SELECT attempt_no, openid FROM payment_attempts WHERE order_no = $1")
        .bind(no)
        .fetch_all(&app.db)
        .await
        .unwrap()
}

async fn no_cookies_get(url: &str) -> reqwest::Response {
    crate::helpers::no_redirects()
        .get(url)
        .header("user-agent", WECHAT)
        .send()
        .await
        .unwrap()
}

/// The JSAPI button's parameters from the page's `data-params`.
fn data_params(page: &str) -> serde_json::Value {
    let start = page.find("data-params=\"").unwrap() + "data-params=\"".len();
    let end = start + page[start..].find('"').unwrap();
    let json = page[start..end]
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#x22;", "\"")
        .replace("&amp;", "&")
        .replace("&#61;", "=")
        .replace("&#x3D;", "=");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
