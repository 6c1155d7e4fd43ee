//! A shop speaking API v3 (`WEIXIN_API_VERSION=v3`) end to end against the built-in sandbox
//! speaking v3: an order paid and recorded from its v3 notify, refunded from the console and
//! settled by the v3 refund notify, the day reconciled against v3's trade bill; the
//! reconciliation job closing at WeChat and finding a payment by v3 query; hostile v3 notifies
//! refused at the shop's route with nothing changed (a correctly signed one is the control);
//! v2 notifies refused by a v3 shop; and the doctor examining v3 credentials.

use std::sync::Arc;
use std::time::Duration;

use chrono::{Duration as Span, Utc};
use secrecy::{ExposeSecret, SecretString};
use wxpay_checkout::checkout::gateway::v3::V3Gateway;
use wxpay_checkout::checkout::{Checkout, Gateway};
use wxpay_checkout::config::{SANDBOX_APPID, SANDBOX_KEY, SANDBOX_MCH_ID};
use wxpay_checkout::rt::AppRuntime;
use wxpay_checkout::sandbox::v3::keys::PAY_PRIVATE_KEY_FILE;
use wxpay_checkout::sandbox::{V3Keys, DEMO_APIV3_KEY};
use wxpay_checkout::wxpay::v3::auth::SignedHeaders;
use wxpay_checkout::wxpay::v3::notify::{seal, Event};
use wxpay_checkout::wxpay::v3::types::{Payer, TradeState, Transaction, TransactionAmount};
use wxpay_checkout::wxpay::v3::{
    ApiV3Key, Client, ClientConfig, Credentials, MerchantKey, PayPublicKey,
};

use crate::admin::sign_in;
use crate::helpers::{demo_merchant, hand_signed, test_terms, TestApp};

const DEADLINE: Duration = Duration::from_secs(10);
const V3: (&str, &str) = ("WEIXIN_API_VERSION", "v3");

/// The credentials of the built-in sandbox's v3 keys (one set per process, shared).
fn sandbox_credentials() -> Credentials {
    let keys = V3Keys::shared();
    Credentials {
        appid: SANDBOX_APPID.into(),
        mchid: SANDBOX_MCH_ID.into(),
        serial_no: keys.serial_no().into(),
        key: Arc::new(MerchantKey::from_pem(keys.merchant_private_pem().expose_secret()).unwrap()),
        pay_key: PayPublicKey::from_pem(keys.pay_key_id(), keys.pay_public_pem()).unwrap(),
        apiv3_key: ApiV3Key::new(&SecretString::from(DEMO_APIV3_KEY)).unwrap(),
    }
}

/// WeChat Pay's own private key in the sandbox (written out and read back, as the standalone
/// sandbox keeps it): only what WeChat could sign with.
fn wechat_signer() -> MerchantKey {
    let dir = tempfile::TempDir::new().unwrap();
    V3Keys::shared()
        .write_to(dir.path(), &SecretString::from(DEMO_APIV3_KEY))
        .unwrap();
    MerchantKey::from_pem(&std::fs::read_to_string(dir.path().join(PAY_PRIVATE_KEY_FILE)).unwrap())
        .unwrap()
}

/// Another replica's checkout service speaking v3 to the app's sandbox, for the job.
async fn v3_checkout(app: &TestApp) -> Checkout {
    let client = Client::new(
        ClientConfig::new(app.sandbox.clone(), sandbox_credentials()),
        &AppRuntime::current(),
    )
    .unwrap();
    let gateway = Gateway::V3(V3Gateway::new(
        client,
        demo_merchant(),
        wxpay_checkout::wxpay::SignType::Md5,
    ));
    app.checkout_through(gateway, test_terms(Duration::from_secs(60), None))
        .await
}

async fn paid_by(app: &TestApp, no: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT source FROM payment_events WHERE out_trade_no = $1 ORDER BY id")
        .bind(no)
        .fetch_all(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_v3_shop_is_paid_by_its_notify_refunds_and_reconciles_the_day() {
    let app = TestApp::spawn_with(&[V3]).await;
    let (http, csrf) = sign_in(&app).await;
    let no = app.place_order(1, 1).await;
    let code_url = app.open_pay_page(&no).await;
    assert!(
        code_url.starts_with("weixin://wxpay/bizpayurl?pr="),
        "{code_url}"
    );
    let at_wechat = app.sandbox_order(&no).await;
    assert_eq!(at_wechat["api"], "v3", "placed through API v3: {at_wechat}");
    app.pay_in_sandbox(&code_url).await;
    assert!(
        app.wait_for_status(&no, "paid", DEADLINE).await,
        "never paid"
    );
    assert_eq!(
        paid_by(&app, &no).await,
        ["notify"],
        "recorded from the v3 notify"
    );

    // A refund from the console goes to WeChat through v3; its v3 notify settles it.
    let response = http
        .post(app.url(&format!("/admin/orders/{no}/refunds")))
        .form(&[("csrf", csrf.as_str()), ("amount", "0.01")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    crate::refunds::wait_refunds(&app, &no, 1, "succeeded", DEADLINE).await;
    let sandbox_refunds = &app.sandbox_order(&no).await["refunds"];
    assert_eq!(sandbox_refunds[0]["refund_fee"], 1, "{sandbox_refunds}");

    // The day's v3 trade bill agrees with the shop: the payment and the refund.
    let day = crate::bills::pay_day(&app, &no).await;
    let shown = crate::bills::run_day(&app, &http, &csrf, &day).await;
    assert!(shown.contains("id=\"no-discrepancies\""), "{shown}");
    assert!(
        shown.contains("<span class=\"figure\" id=\"bill-lines\">2</span>"),
        "{shown}"
    );
}

#[tokio::test]
async fn the_job_closes_at_wechat_through_v3_and_finds_a_payment_whose_notify_never_came() {
    let app = TestApp::spawn_with(&[V3]).await;
    let unpaid = app.place_order(1, 1).await;
    app.open_pay_page(&unpaid).await;
    app.set_faults(serde_json::json!({ "drop_notify": 1.0 }))
        .await;
    let unheard = app.place_order(1, 1).await;
    let code_url = app.open_pay_page(&unheard).await;
    app.pay_in_sandbox(&code_url).await;
    assert_eq!(app.sandbox_order(&unheard).await["trade_state"], "SUCCESS");
    assert_eq!(app.order_row(&unheard).await.0, "pending", "no notify came");

    let job = wxpay_checkout::checkout::reconcile::Reconciler::new(v3_checkout(&app).await);
    let report = job.run_once(Utc::now() + Span::minutes(20)).await.unwrap();
    assert_eq!(report.closed, 1, "{report:?}");
    assert_eq!(app.order_row(&unpaid).await.0, "closed");
    assert_eq!(
        app.sandbox_order(&unpaid).await["trade_state"],
        "CLOSED",
        "closed at WeChat first"
    );
    assert!(
        app.wait_for_status(&unheard, "paid", DEADLINE).await,
        "found by the v3 query"
    );
    assert_eq!(paid_by(&app, &unheard).await, ["reconcile"]);
}

/// A v3 payment notify for `no` of `total` fen, sealed and signed by `signer` at `timestamp`.
fn payment_notify(
    no: &str,
    total: i64,
    signer: &MerchantKey,
    timestamp: i64,
) -> (Vec<u8>, SignedHeaders) {
    let event = Event::Paid(Transaction {
        appid: SANDBOX_APPID.into(),
        mchid: SANDBOX_MCH_ID.into(),
        out_trade_no: no.into(),
        transaction_id: Some("4200000891202612018088184743".into()),
        trade_type: Some("NATIVE".into()),
        trade_state: TradeState::Success,
        trade_state_desc: "支付成功".into(),
        bank_type: Some("OTHERS".into()),
        attach: None,
        success_time: Some(Utc::now().to_rfc3339()),
        payer: Some(Payer {
            openid: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into(),
        }),
        amount: Some(TransactionAmount {
            total: Some(total),
            payer_total: Some(total),
            currency: Some("CNY".into()),
            payer_currency: Some("CNY".into()),
        }),
    });
    let apiv3 = ApiV3Key::new(&SecretString::from(DEMO_APIV3_KEY)).unwrap();
    seal(
        &event,
        "EV-test",
        "2026-12-01T10:00:00+08:00",
        &apiv3,
        signer,
        V3Keys::shared().pay_key_id(),
        timestamp,
    )
}

async fn post_notify(
    app: &TestApp,
    (body, headers): &(Vec<u8>, SignedHeaders),
) -> (u16, serde_json::Value) {
    let mut request = app
        .http
        .post(app.url("/weixin/pay/v3/notify"))
        .body(body.clone());
    for (name, value) in headers.pairs() {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn hostile_v3_notifies_are_refused_and_change_nothing() {
    let app = TestApp::spawn_with(&[V3]).await;
    let no = app.place_order(1, 1).await;
    app.open_pay_page(&no).await;
    let total: i64 = sqlx::query_scalar("SELECT total_fee FROM orders WHERE out_trade_no = $1")
        .bind(&no)
        .fetch_one(&app.db)
        .await
        .unwrap();
    let wechat = wechat_signer();
    let now = Utc::now().timestamp();

    let forger = MerchantKey::from_pem(
        wxpay_checkout::wxpay::v3::crypto::generate_key_pair()
            .0
            .expose_secret(),
    )
    .unwrap();
    let stale = payment_notify(&no, total, &wechat, now - 6 * 60);
    let forged = payment_notify(&no, total, &forger, now);
    let unsigned = (
        payment_notify(&no, total, &wechat, now).0,
        SignedHeaders::default(),
    );
    let tampered = {
        let (body, _) = payment_notify(&no, total, &wechat, now);
        let mut notify: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let ciphertext = notify["resource"]["ciphertext"]
            .as_str()
            .unwrap()
            .to_owned();
        let flipped = if ciphertext.starts_with('A') {
            "B"
        } else {
            "A"
        };
        notify["resource"]["ciphertext"] = format!("{flipped}{}", &ciphertext[1..]).into();
        let body = serde_json::to_vec(&notify).unwrap();
        // Signed again with WeChat's own key: only the sealed resource gives it away.
        let headers =
            SignedHeaders::sign(&wechat, V3Keys::shared().pay_key_id(), &body, now, "n0nce");
        (body, headers)
    };
    for (what, notify) in [
        ("stale", &stale),
        ("forged", &forged),
        ("unsigned", &unsigned),
        ("tampered", &tampered),
    ] {
        let (status, answer) = post_notify(&app, notify).await;
        assert_eq!(status, 401, "{what}: {answer}");
        assert_eq!(answer["code"], "FAIL", "{what}");
        assert_eq!(
            app.order_row(&no).await.0,
            "pending",
            "{what} changed nothing"
        );
        assert!(
            paid_by(&app, &no).await.is_empty(),
            "{what} recorded nothing"
        );
    }
    let (status, _) = post_notify(
        &app,
        &(
            b"{not json".to_vec(),
            SignedHeaders::sign(
                &wechat,
                V3Keys::shared().pay_key_id(),
                b"{not json",
                now,
                "n",
            ),
        ),
    )
    .await;
    assert_eq!(status, 400, "signed but not a notify");

    // A v2 notify, even signed with the v2 demo key, is not believed by a v3 shop.
    let v2 = hand_signed(
        &[
            ("return_code", "SUCCESS"),
            ("result_code", "SUCCESS"),
            ("appid", SANDBOX_APPID),
            ("mch_id", SANDBOX_MCH_ID),
            ("nonce_str", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"),
            ("out_trade_no", no.as_str()),
            ("transaction_id", "4200000891202612018088184743"),
            ("total_fee", &total.to_string()),
            ("fee_type", "CNY"),
            ("cash_fee", &total.to_string()),
            ("time_end", "20261201103105"),
            ("trade_type", "NATIVE"),
            ("openid", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"),
            ("bank_type", "OTHERS"),
        ],
        SANDBOX_KEY,
        false,
    );
    let answer = app
        .http
        .post(app.url("/weixin/pay/notify/url"))
        .body(v2)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(answer.contains("FAIL"), "{answer}");
    assert!(paid_by(&app, &no).await.is_empty());

    // The control: the same notify, fresh and signed by WeChat's key, is taken (204).
    let (status, _) = post_notify(&app, &payment_notify(&no, total, &wechat, now)).await;
    assert_eq!(status, 204);
    assert!(app.wait_for_status(&no, "paid", DEADLINE).await);
    assert_eq!(paid_by(&app, &no).await, ["notify"]);
}

#[tokio::test]
async fn the_doctor_examines_v3_credentials() {
    let app = TestApp::spawn_with(&[V3]).await;
    let dir = tempfile::TempDir::new().unwrap();
    V3Keys::shared()
        .write_to(dir.path(), &SecretString::from(DEMO_APIV3_KEY))
        .unwrap();
    let env = read_env(dir.path());
    let key = dir.path().join("apiclient_key.pem").display().to_string();
    let pub_key = dir.path().join("pub_key.pem").display().to_string();
    let sandbox = app.sandbox.to_string();
    let base = format!("http://{}", app.addr);
    let vars = |serial: &str| -> Vec<(String, String)> {
        [
            ("WEIXIN_API_VERSION", "v3"),
            ("WEIXIN_APPID", SANDBOX_APPID),
            ("WEIXIN_PARTNER", SANDBOX_MCH_ID),
            ("SHOP_NAME", "龙井茶庄"),
            ("WEIXIN_API_BASE", sandbox.as_str()),
            ("PUBLIC_BASE_URL", base.as_str()),
            (
                "CONTACT_KEY",
                "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            ),
            ("WEIXIN_APIV3_KEY", env["WEIXIN_APIV3_KEY"].as_str()),
            ("WEIXIN_MCH_SERIAL", serial),
            ("WEIXIN_MCH_PRIVATE_KEY", key.as_str()),
            ("WEIXIN_PAY_PUBLIC_KEY", pub_key.as_str()),
            (
                "WEIXIN_PAY_PUBLIC_KEY_ID",
                env["WEIXIN_PAY_PUBLIC_KEY_ID"].as_str(),
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    let run = |vars: Vec<(String, String)>| async move {
        let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (code, out, err) = crate::cli::run_with("sqlite::memory:", &env, &["doctor"], "").await;
        (code, format!("{out}{err}"))
    };
    let (code, out) = run(vars(&env["WEIXIN_MCH_SERIAL"])).await;
    assert_eq!(code, 0, "{out}");
    for expected in [
        "API v3",
        "[ OK ] 商户凭证 Credentials (mchid, API key and its serial, APIv3)",
        "ORDER_NOT_EXIST",
        "[ OK ] 微信支付公钥 WeChat Pay public key",
        "[ OK ] 商户API证书 Client certificate: API v3 signs every call",
        // The probe reached the shop's v3 route and was refused as unsigned.
        "answer: HTTP 401: {\"code\":\"FAIL\"",
    ] {
        assert!(out.contains(expected), "{expected:?} in {out}");
    }
    // Another serial: WeChat refuses the signature, and the doctor says where to look.
    let (code, out) = run(vars("1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C")).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("[FAIL] 商户凭证") && out.contains("SIGN_ERROR"),
        "{out}"
    );
    assert!(out.contains("WEIXIN_MCH_SERIAL"), "{out}");
}

#[tokio::test]
async fn a_live_v3_shop_starts_from_its_key_files_and_learns_of_a_payment_by_asking() {
    // WeChat: a sandbox of its own (it notifies whoever the order names; this shop's notify URL
    // is its own loopback, so the payment is learnt by the status path's v3 query as well).
    let wechat = crate::helpers::TestSandbox::start();
    let dir = tempfile::TempDir::new().unwrap();
    let key = dir.path().join("apiclient_key.pem");
    let pub_key = dir.path().join("pub_key.pem");
    std::fs::write(&key, wechat.v3.merchant_private_pem.expose_secret()).unwrap();
    std::fs::write(&pub_key, &wechat.v3.pay_public_pem).unwrap();
    let catalogue = dir.path().join("catalogue.toml");
    std::fs::write(
        &catalogue,
        "[[product]]\nsku = \"LJ-250\"\nname = \"西湖龙井茶 250g\"\nprice = \"128.00\"\nstock = 5\n",
    )
    .unwrap();
    let (key, pub_key) = (key.display().to_string(), pub_key.display().to_string());
    let sandbox = wechat.base.to_string();
    let catalogue = catalogue.display().to_string();
    // Live mode, v3, no v2 key and no client certificate (late payments still refunded
    // automatically: v3 needs no certificate for it).
    let shop = TestApp::spawn_with(&[
        V3,
        ("WEIXIN_APPID", SANDBOX_APPID),
        ("WEIXIN_PARTNER", SANDBOX_MCH_ID),
        ("SHOP_NAME", "龙井茶庄"),
        ("WEIXIN_API_BASE", sandbox.as_str()),
        ("CATALOGUE_FILE", catalogue.as_str()),
        ("CHECKOUT_FIELDS", ""),
        ("WEIXIN_APIV3_KEY", wechat.v3.apiv3_key.expose_secret()),
        ("WEIXIN_MCH_SERIAL", wechat.v3.serial_no.as_str()),
        ("WEIXIN_MCH_PRIVATE_KEY", key.as_str()),
        ("WEIXIN_PAY_PUBLIC_KEY", pub_key.as_str()),
        ("WEIXIN_PAY_PUBLIC_KEY_ID", wechat.v3.pay_key_id.as_str()),
    ])
    .await;
    let no = shop.place_order(1, 1).await;
    let code_url = shop.open_pay_page(&no).await;
    assert_eq!(
        wechat.json(&format!("sandbox/orders/{no}")).await["api"],
        "v3"
    );
    let (status, paid) = wechat.pay(&code_url, "success").await;
    assert_eq!(status, 200, "{paid}");
    let until = tokio::time::Instant::now() + DEADLINE;
    while shop.order_row(&no).await.0 != "paid" {
        // The pay page's poll: the shop asks WeChat (v3) when it has not heard.
        shop.status(&no).await;
        assert!(
            tokio::time::Instant::now() < until,
            "never learnt of the payment"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!paid_by(&shop, &no).await.is_empty());
}

/// `wechatpay_v3.env` as a map.
fn read_env(dir: &std::path::Path) -> std::collections::HashMap<String, String> {
    std::fs::read_to_string(dir.join("wechatpay_v3.env"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Waits for `css` on the page, reloading it every half second (what settles in the background
/// shows at the next load).
async fn until_shown(browser: &fantoccini::Client, css: &str, what: &str) {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        if browser.find(fantoccini::Locator::Css(css)).await.is_ok() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{what}: {css} never shown"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        browser.refresh().await.unwrap();
    }
}

/// The element at `css` once the page shows it.
async fn shown(browser: &fantoccini::Client, css: &str) -> fantoccini::elements::Element {
    browser
        .wait()
        .at_most(DEADLINE)
        .for_element(fantoccini::Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} never shown: {e}"))
}

async fn click(browser: &fantoccini::Client, css: &str) {
    shown(browser, css).await.click().await.unwrap();
}

#[tokio::test]
async fn a_shopper_pays_a_v3_shop_in_a_real_browser_and_the_merchant_refunds_and_reconciles() {
    if !crate::browser::browser_available() {
        return;
    }
    let (_driver, browser, _profile) = crate::browser::start_browser(None).await;
    let app = TestApp::spawn_with(&[V3, ("CHECKOUT_FIELDS", "")]).await;

    // Buy now from the catalogue: the pay page's QR code is v3's code_url.
    browser.goto(&app.url("/")).await.unwrap();
    click(&browser, "button.buy-now").await;
    shown(&browser, "#pay .qr svg[role=img]").await;
    let no = shown(&browser, "#out-trade-no").await.text().await.unwrap();
    let at_wechat = app.sandbox_order(&no).await;
    assert_eq!(at_wechat["api"], "v3", "{at_wechat}");

    // Paid on the "phone"; the v3 notify lands, the push moves the page on.
    app.pay_in_sandbox(at_wechat["code_url"].as_str().unwrap())
        .await;
    let success = format!("/pay/{no}/success");
    let until = tokio::time::Instant::now() + DEADLINE;
    while browser.current_url().await.unwrap().path() != success {
        assert!(
            tokio::time::Instant::now() < until,
            "never reached {success}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    click(&browser, "#receipt-link").await;
    let status = shown(&browser, "#receipt-status").await;
    assert!(status.text().await.unwrap().contains("Paid"));
    let receipt_url = browser.current_url().await.unwrap();

    // The merchant signs in and refunds ¥0.01 from the order's page; v3's refund notify
    // settles it.
    browser.goto(&app.url("/admin")).await.unwrap();
    shown(&browser, "#password")
        .await
        .send_keys(crate::helpers::ADMIN_PASSWORD)
        .await
        .unwrap();
    click(&browser, "#sign-in").await;
    shown(&browser, "#today-orders").await;
    browser
        .goto(&app.url(&format!("/admin/orders/{no}")))
        .await
        .unwrap();
    shown(&browser, "#refund-form input[name=amount]")
        .await
        .send_keys("0.01")
        .await
        .unwrap();
    click(&browser, "#refund").await;
    until_shown(
        &browser,
        "#refunds tr.refund-succeeded",
        "the refund settled",
    )
    .await;

    // The shopper's receipt shows it; the day's v3 bill agrees with the shop.
    browser.goto(receipt_url.as_str()).await.unwrap();
    shown(&browser, "#receipt-refunds").await;
    assert!(
        browser.source().await.unwrap().contains("¥0.01"),
        "the receipt shows the refund"
    );
    let day = crate::bills::pay_day(&app, &no).await;
    browser.goto(&app.url("/admin/bills")).await.unwrap();
    let date = shown(&browser, "form.filters input[name=day]").await;
    browser
        .execute(
            "arguments[0].value = arguments[1];",
            vec![serde_json::to_value(&date).unwrap(), day.clone().into()],
        )
        .await
        .unwrap();
    click(&browser, "#run-bill").await;
    shown(&browser, "#no-discrepancies").await;
    let lines = shown(&browser, "#bill-lines").await.text().await.unwrap();
    assert_eq!(lines, "2", "the payment and the refund");
}
