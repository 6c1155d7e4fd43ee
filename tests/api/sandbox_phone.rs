//! The sandbox standing in for WeChat on the shopper's phone: H5 (`MWEB`) orders and the page
//! `mweb_url` opens, the official account's OAuth, JSAPI orders and the `WeixinJSBridge`
//! stand-in. Requests are written and signed by hand, so a mistake shared by the crate's client
//! and the sandbox cannot hide.

use std::time::Duration;

use wxpay_checkout::config::{SANDBOX_APPID, SANDBOX_KEY, SANDBOX_MCH_ID};
use wxpay_checkout::sandbox::DEMO_MP_APPSECRET;
use wxpay_checkout::wxpay::Fields;

use crate::helpers::{
    cookie_browser, hand_signed, independent_sign, independently_verified, no_redirects,
    wait_until, NotifyReceiver, TestSandbox,
};

const SCENE_INFO: &str =
    r#"{"h5_info":{"type":"Wap","wap_url":"https://shop.example.com","wap_name":"茶铺"}}"#;
const DISCARD_NOTIFY: &str = "http://127.0.0.1:9/weixin/pay/notify/url";

type Params = Vec<(&'static str, String)>;

/// An order's fields as a hand-written unifiedorder carries them, without the trade type's own.
fn hand_order(no: &str, trade_type: &str, notify_url: &str) -> Params {
    vec![
        ("appid", SANDBOX_APPID.into()),
        ("mch_id", SANDBOX_MCH_ID.into()),
        ("nonce_str", wxpay_checkout::wxpay::nonce_str()),
        ("body", "龙井茶".into()),
        ("out_trade_no", no.into()),
        ("total_fee", "1250".into()),
        ("spbill_create_ip", "203.0.113.7".into()),
        ("notify_url", notify_url.into()),
        ("trade_type", trade_type.into()),
    ]
}

fn mweb_order(no: &str, notify_url: &str) -> Params {
    with(hand_order(no, "MWEB", notify_url), "scene_info", SCENE_INFO)
}

fn jsapi_order(no: &str, openid: &str, notify_url: &str) -> Params {
    with(hand_order(no, "JSAPI", notify_url), "openid", openid)
}

fn with(mut fields: Params, name: &'static str, value: &str) -> Params {
    fields.retain(|(k, _)| *k != name);
    fields.push((name, value.into()));
    fields
}

fn without(mut fields: Params, name: &str) -> Params {
    fields.retain(|(k, _)| *k != name);
    fields
}

async fn unified(sandbox: &TestSandbox, fields: &Params) -> Fields {
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    sandbox
        .post_raw("pay/unifiedorder", hand_signed(&pairs, SANDBOX_KEY, false))
        .await
}

fn assert_return_fail(answer: &Fields, message: &str) {
    assert_eq!(answer["return_code"], "FAIL", "{answer:?}");
    assert_eq!(answer["return_msg"], message, "{answer:?}");
    assert!(!answer.contains_key("sign"), "{answer:?}");
}

fn assert_success(answer: &Fields) {
    assert_eq!(answer["return_code"], "SUCCESS", "{answer:?}");
    assert_eq!(answer["result_code"], "SUCCESS", "{answer:?}");
    assert!(
        independently_verified(answer, SANDBOX_KEY, false),
        "{answer:?}"
    );
}

fn assert_business_failure(answer: &Fields, code: &str, des: Option<&str>) {
    assert_eq!(answer["return_code"], "SUCCESS", "{answer:?}");
    assert_eq!(answer["result_code"], "FAIL", "{answer:?}");
    assert_eq!(answer["err_code"], code, "{answer:?}");
    if let Some(des) = des {
        assert_eq!(answer["err_code_des"], des, "{answer:?}");
    }
    assert!(
        independently_verified(answer, SANDBOX_KEY, false),
        "{answer:?}"
    );
}

fn encoded(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The `Location` of a redirect.
fn location(response: &reqwest::Response) -> String {
    response.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned()
}

/// The H5 page's form fields for an `mweb_url` (its `prepay_id` and `package`).
fn ticket(mweb_url: &str) -> Vec<(String, String)> {
    url::Url::parse(mweb_url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn post_form(
    sandbox: &TestSandbox,
    path: &str,
    form: &[(String, String)],
) -> reqwest::Response {
    no_redirects()
        .post(sandbox.url(path))
        .form(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn h5_orders_need_their_scene_and_answer_an_mweb_url() {
    let sandbox = TestSandbox::start();
    assert_return_fail(
        &unified(
            &sandbox,
            &without(mweb_order("h5-1", DISCARD_NOTIFY), "scene_info"),
        )
        .await,
        "缺少参数scene_info",
    );
    for bad in [
        "not json",
        r#"{"h5_info":{"type":"Wap","wap_url":"https://shop.example.com"}}"#,
        r#"{"store_info":{"id":"1"}}"#,
    ] {
        let answer = unified(
            &sandbox,
            &with(mweb_order("h5-1", DISCARD_NOTIFY), "scene_info", bad),
        )
        .await;
        assert_eq!(answer["return_code"], "FAIL", "{answer:?}");
        assert!(
            answer["return_msg"].starts_with("scene_info参数格式错误"),
            "{answer:?}"
        );
    }
    assert_return_fail(
        &unified(
            &sandbox,
            &with(
                mweb_order("h5-1", DISCARD_NOTIFY),
                "spbill_create_ip",
                "shopper",
            ),
        )
        .await,
        "invalid spbill_create_ip",
    );

    let first = unified(&sandbox, &mweb_order("h5-1", DISCARD_NOTIFY)).await;
    assert_success(&first);
    assert_eq!(first["trade_type"], "MWEB");
    assert!(!first.contains_key("code_url"), "{first:?}");
    let mweb_url = &first["mweb_url"];
    let expected = format!(
        "{}sandbox/mweb?prepay_id={}&package=",
        sandbox.base, first["prepay_id"]
    );
    assert!(mweb_url.starts_with(&expected), "{mweb_url}");

    // An identical re-entry: the same prepay, a fresh ticket. A changed scene is refused.
    let again = unified(&sandbox, &mweb_order("h5-1", DISCARD_NOTIFY)).await;
    assert_success(&again);
    assert_eq!(again["prepay_id"], first["prepay_id"]);
    assert_ne!(again["mweb_url"], first["mweb_url"]);
    let other_scene = SCENE_INFO.replace("茶铺", "别的店");
    let changed = unified(
        &sandbox,
        &with(
            mweb_order("h5-1", DISCARD_NOTIFY),
            "scene_info",
            &other_scene,
        ),
    )
    .await;
    assert_business_failure(&changed, "INVALID_REQUEST", None);
    let as_native = unified(
        &sandbox,
        &with(
            hand_order("h5-1", "NATIVE", DISCARD_NOTIFY),
            "product_id",
            "1",
        ),
    )
    .await;
    assert_business_failure(&as_native, "OUT_TRADE_NO_USED", None);

    // What the shop sent, for its tests.
    let view = sandbox.json("sandbox/orders/h5-1").await;
    assert_eq!(view["trade_type"], "MWEB");
    assert_eq!(view["spbill_create_ip"], "203.0.113.7");
    assert_eq!(view["scene_info"], SCENE_INFO);
    assert!(view["code_url"].is_null(), "{view}");
    assert!(view["openid"].is_null(), "{view}");
}

#[tokio::test]
async fn the_h5_page_pays_and_returns_to_the_shop_only() {
    let receiver = NotifyReceiver::start(0);
    let shop = receiver.url.clone();
    // Built-in mode: the shop's notify URL is the one origin the browser may be sent back to.
    let sandbox = TestSandbox::start_with(|c| c.notify_only = Some(shop.clone()));
    let back = shop.join("/pay/h5-2/return?from=wechat").unwrap();
    let answer = unified(&sandbox, &mweb_order("h5-2", shop.as_str())).await;
    assert_success(&answer);
    let mweb_url = answer["mweb_url"].clone();

    // Elsewhere: refused, on the page and on Pay, and nothing is paid.
    let foreign = format!(
        "{mweb_url}&redirect_url={}",
        encoded("https://evil.example/")
    );
    let page = sandbox.http.get(&foreign).send().await.unwrap();
    assert_eq!(page.status(), 400);
    let mut form = ticket(&mweb_url);
    form.push(("redirect_url".into(), "https://evil.example/".into()));
    assert_eq!(
        post_form(&sandbox, "sandbox/mweb/pay", &form)
            .await
            .status(),
        400
    );
    assert_eq!(
        sandbox.json("sandbox/orders/h5-2").await["trade_state"],
        "NOTPAY"
    );

    let page = sandbox
        .http
        .get(format!(
            "{mweb_url}&redirect_url={}",
            encoded(back.as_str())
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    for shown in [
        "¥12.50",
        "龙井茶",
        "wxpay-checkout 演示商户",
        "支付 Pay",
        "取消 Cancel",
    ] {
        assert!(html.contains(shown), "{shown} missing: {html}");
    }

    let mut form = ticket(&mweb_url);
    form.push(("redirect_url".into(), back.to_string()));
    let paid = post_form(&sandbox, "sandbox/mweb/pay", &form).await;
    assert_eq!(paid.status(), 303);
    assert_eq!(location(&paid), back.as_str());
    assert!(wait_until(Duration::from_secs(5), || receiver.count() >= 1).await);
    let notify = &receiver.all()[0];
    assert_eq!(notify["trade_type"], "MWEB");
    assert_eq!(notify["out_trade_no"], "h5-2");
    assert_eq!(notify["total_fee"], "1250");
    assert!(
        independently_verified(notify, SANDBOX_KEY, false),
        "{notify:?}"
    );
    assert_eq!(
        sandbox.json("sandbox/orders/h5-2").await["trade_state"],
        "SUCCESS"
    );
    // Paid once: the page says so and Pay is refused.
    let again = post_form(&sandbox, "sandbox/mweb/pay", &form).await;
    assert_eq!(again.status(), 409);

    // The OAuth's redirect_uri is held to the same origin.
    let authorize = |redirect_uri: &str| {
        sandbox.url(&format!(
            "connect/oauth2/authorize?appid={SANDBOX_APPID}&redirect_uri={}&response_type=code&scope=snsapi_base&state=s",
            encoded(redirect_uri)
        ))
    };
    let refused = no_redirects()
        .get(authorize("https://evil.example/cb"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let ok = no_redirects()
        .get(authorize(back.as_str()))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 302);
}

#[tokio::test]
async fn cancelling_leaves_the_order_unpaid_and_an_old_mweb_url_expires() {
    let sandbox = TestSandbox::start();
    let answer = unified(&sandbox, &mweb_order("h5-3", DISCARD_NOTIFY)).await;
    let mweb_url = answer["mweb_url"].clone();
    let back = "https://shop.example.com/pay/h5-3/return";
    let mut form = ticket(&mweb_url);
    form.push(("redirect_url".into(), back.into()));
    let cancelled = post_form(&sandbox, "sandbox/mweb/cancel", &form).await;
    assert_eq!(cancelled.status(), 303);
    assert_eq!(location(&cancelled), back);
    assert_eq!(
        sandbox.json("sandbox/orders/h5-3").await["trade_state"],
        "NOTPAY"
    );
    // Without a redirect_url, a page says so.
    let page = post_form(&sandbox, "sandbox/mweb/cancel", &ticket(&mweb_url)).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("已取消"));

    // Five minutes on, the ticket is dead; a re-entry gives a live one.
    sandbox.advance_clock(5 * 60 + 1).await;
    let expired = sandbox.http.get(&mweb_url).send().await.unwrap();
    assert_eq!(expired.status(), 410);
    assert!(expired.text().await.unwrap().contains("支付请求已失效"));
    assert_eq!(
        post_form(&sandbox, "sandbox/mweb/pay", &form)
            .await
            .status(),
        410
    );
    let fresh = unified(&sandbox, &mweb_order("h5-3", DISCARD_NOTIFY)).await;
    assert_eq!(fresh["prepay_id"], answer["prepay_id"]);
    let page = sandbox.http.get(&fresh["mweb_url"]).send().await.unwrap();
    assert_eq!(page.status(), 200);
    // A ticket is for its own prepay only.
    let mut crossed = ticket(&fresh["mweb_url"]);
    crossed[0].1 = "wx00000000000000000000000000000000".into();
    assert_eq!(
        post_form(&sandbox, "sandbox/mweb/pay", &crossed)
            .await
            .status(),
        410
    );
}

/// The browser goes through the sandbox's authorize; returns the `code` it came back with.
async fn authorize(sandbox: &TestSandbox, browser: &reqwest::Client, state: &str) -> String {
    authorize_at(sandbox, SANDBOX_APPID, browser, state).await
}

async fn authorize_at(
    sandbox: &TestSandbox,
    appid: &str,
    browser: &reqwest::Client,
    state: &str,
) -> String {
    let response = browser
        .get(sandbox.url(&format!(
            "connect/oauth2/authorize?appid={appid}&redirect_uri={}&response_type=code&scope=snsapi_base&state={state}",
            encoded("https://shop.example.com/pay/J1/wechat?x=1")
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let to = url::Url::parse(&location(&response)).unwrap();
    assert_eq!(to.host_str(), Some("shop.example.com"));
    assert_eq!(to.path(), "/pay/J1/wechat");
    let pairs: Vec<(String, String)> = to
        .query_pairs()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    assert_eq!(pairs[0], ("x".into(), "1".into()), "{to}");
    assert_eq!(pairs[2], ("state".into(), state.into()), "{to}");
    assert_eq!(pairs[1].0, "code");
    pairs[1].1.clone()
}

async fn access_token(
    sandbox: &TestSandbox,
    appid: &str,
    secret: &str,
    code: &str,
) -> serde_json::Value {
    sandbox
        .json(&format!(
            "sns/oauth2/access_token?appid={appid}&secret={secret}&code={code}&grant_type=authorization_code"
        ))
        .await
}

/// A browser's openid, through the OAuth.
async fn openid_of(sandbox: &TestSandbox, browser: &reqwest::Client) -> String {
    openid_of_at(sandbox, SANDBOX_APPID, browser).await
}

async fn openid_of_at(sandbox: &TestSandbox, appid: &str, browser: &reqwest::Client) -> String {
    let code = authorize_at(sandbox, appid, browser, "st").await;
    let answer = access_token(sandbox, appid, DEMO_MP_APPSECRET, &code).await;
    answer["openid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn oauth_gives_one_browser_one_openid_and_a_code_works_once() {
    let sandbox = TestSandbox::start();
    let browser = cookie_browser();
    // The first visit sets the shopper's cookie.
    let first = browser
        .get(sandbox.url(&format!(
            "connect/oauth2/authorize?appid={SANDBOX_APPID}&redirect_uri={}&response_type=code&scope=snsapi_base&state=",
            encoded("https://shop.example.com/cb")
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 302);
    let cookie = first.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("sbx_wxuser="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let to = location(&first);
    assert!(to.starts_with("https://shop.example.com/cb?code="), "{to}");
    assert!(
        to.ends_with("&state="),
        "an empty state comes back empty: {to}"
    );

    let code = authorize(&sandbox, &browser, "st8").await;
    let answer = access_token(&sandbox, SANDBOX_APPID, DEMO_MP_APPSECRET, &code).await;
    let openid = answer["openid"].as_str().unwrap().to_owned();
    assert_eq!(openid.len(), 28, "{answer}");
    assert!(wxpay_checkout::wxpay::oauth::valid_openid(&openid));
    assert_eq!(answer["scope"], "snsapi_base");
    assert_eq!(answer["expires_in"], 7200);
    assert!(answer["access_token"].is_string() && answer["refresh_token"].is_string());
    assert_eq!(
        access_token(&sandbox, SANDBOX_APPID, DEMO_MP_APPSECRET, &code).await["errcode"],
        40163
    );
    // The same browser is the same shopper; another is another.
    assert_eq!(openid_of(&sandbox, &browser).await, openid);
    assert_ne!(openid_of(&sandbox, &cookie_browser()).await, openid);

    // WeChat's refusals.
    let code = authorize(&sandbox, &browser, "st").await;
    let errcode = |answer: serde_json::Value| answer["errcode"].as_i64().unwrap();
    assert_eq!(
        errcode(access_token(&sandbox, SANDBOX_APPID, "0".repeat(32).as_str(), &code).await),
        40125
    );
    assert_eq!(
        errcode(access_token(&sandbox, "wx0000000000000000", DEMO_MP_APPSECRET, &code).await),
        40013
    );
    assert_eq!(
        errcode(access_token(&sandbox, SANDBOX_APPID, DEMO_MP_APPSECRET, "nonsense").await),
        40029
    );
    let wrong_grant = sandbox
        .json(&format!(
            "sns/oauth2/access_token?appid={SANDBOX_APPID}&secret={DEMO_MP_APPSECRET}&code={code}&grant_type=client_credential"
        ))
        .await;
    assert_eq!(errcode(wrong_grant), 40002);
    // None of those used the code up; five minutes do.
    sandbox.advance_clock(5 * 60 + 1).await;
    let late = access_token(&sandbox, SANDBOX_APPID, DEMO_MP_APPSECRET, &code).await;
    assert_eq!(late["errcode"], 40029, "{late}");
    assert!(
        late["errmsg"].as_str().unwrap().starts_with("invalid code"),
        "{late}"
    );

    // Pages instead of a redirect.
    for query in [
        "appid=wx0000000000000000&redirect_uri=https%3A%2F%2Fshop.example.com%2F&response_type=code&scope=snsapi_base",
        "appid={appid}&response_type=code&scope=snsapi_base",
        "appid={appid}&redirect_uri=https%3A%2F%2Fshop.example.com%2F&scope=snsapi_base",
        "appid={appid}&redirect_uri=https%3A%2F%2Fshop.example.com%2F&response_type=code",
        "appid={appid}&redirect_uri=javascript%3Aalert(1)&response_type=code&scope=snsapi_base",
    ] {
        let query = query.replace("{appid}", SANDBOX_APPID);
        let response = no_redirects()
            .get(sandbox.url(&format!("connect/oauth2/authorize?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
    }
}

/// `getBrandWCPayRequest`'s parameters for `prepay_id`, signed independently of the crate.
fn brand_request(prepay_id: &str, time_stamp: i64) -> serde_json::Value {
    let time_stamp = time_stamp.to_string();
    let package = format!("prepay_id={prepay_id}");
    let nonce = "e61463f8efa94090b1f366cccfbbb444";
    let pay_sign = independent_sign(
        &[
            ("appId", SANDBOX_APPID),
            ("timeStamp", &time_stamp),
            ("nonceStr", nonce),
            ("package", &package),
            ("signType", "MD5"),
        ],
        SANDBOX_KEY,
        false,
    );
    serde_json::json!({
        "appId": SANDBOX_APPID,
        "timeStamp": time_stamp,
        "nonceStr": nonce,
        "package": package,
        "signType": "MD5",
        "paySign": pay_sign,
    })
}

/// What the bridge posts: the parameters as `text/plain` JSON.
async fn bridge(
    sandbox: &TestSandbox,
    path: &str,
    params: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = sandbox
        .http
        .post(sandbox.url(path))
        .header(reqwest::header::CONTENT_TYPE, "text/plain;charset=UTF-8")
        .body(params.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()[reqwest::header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "*"
    );
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn jsapi_orders_take_the_oauth_openid_and_the_bridge_pays_them() {
    let receiver = NotifyReceiver::start(0);
    let sandbox = TestSandbox::start();
    let notify_url = receiver.url.as_str();
    let browser = cookie_browser();
    let openid = openid_of(&sandbox, &browser).await;

    assert_return_fail(
        &unified(&sandbox, &hand_order("js-1", "JSAPI", notify_url)).await,
        "JSAPI支付必须传openid",
    );
    // An openid the merchant's appid never issued: made up, or another account's.
    let other_appid = "wx1111111111111111";
    let other = TestSandbox::start_with(|c| c.merchant.appid = other_appid.into());
    let theirs = openid_of_at(&other, other_appid, &cookie_browser()).await;
    for foreign in ["oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".to_owned(), theirs] {
        let answer = unified(&sandbox, &jsapi_order("js-1", &foreign, notify_url)).await;
        assert_business_failure(&answer, "PARAM_ERROR", Some("appid和openid不匹配"));
    }

    let answer = unified(&sandbox, &jsapi_order("js-1", &openid, notify_url)).await;
    assert_success(&answer);
    assert_eq!(answer["trade_type"], "JSAPI");
    assert!(
        !answer.contains_key("code_url") && !answer.contains_key("mweb_url"),
        "{answer:?}"
    );
    let prepay_id = answer["prepay_id"].clone();
    // Another payer on re-entry is a changed order.
    let someone_else = openid_of(&sandbox, &cookie_browser()).await;
    let changed = unified(&sandbox, &jsapi_order("js-1", &someone_else, notify_url)).await;
    assert_business_failure(&changed, "INVALID_REQUEST", None);
    let view = sandbox.json("sandbox/orders/js-1").await;
    assert_eq!(view["trade_type"], "JSAPI");
    assert_eq!(view["openid"], openid.as_str());

    // The bridge's check: right parameters show the sheet; anything tampered is refused.
    let now = chrono::Utc::now().timestamp();
    let params = brand_request(&prepay_id, now);
    let (status, sheet) = bridge(&sandbox, "sandbox/jsapi/check", &params).await;
    assert_eq!(status, 200, "{sheet}");
    assert_eq!(sheet["ok"], true);
    assert_eq!(sheet["total_fee"], 1250);
    assert_eq!(sheet["amount"], "12.50");
    assert_eq!(sheet["body"], "龙井茶");
    assert_eq!(sheet["merchant"], "wxpay-checkout 演示商户");
    let mut tampered = params.clone();
    tampered["nonceStr"] = "x".into();
    let mut wrong_app = brand_request(&prepay_id, now);
    wrong_app["appId"] = "wx0000000000000000".into();
    let native = unified(
        &sandbox,
        &with(
            hand_order("js-native", "NATIVE", DISCARD_NOTIFY),
            "product_id",
            "1",
        ),
    )
    .await;
    for refused in [
        tampered,
        wrong_app,
        brand_request(&prepay_id, now - 2 * 24 * 3600),
        brand_request("wx00000000000000000000000000000000", now),
        brand_request(&native["prepay_id"], now),
        serde_json::json!({ "appId": SANDBOX_APPID }),
    ] {
        let (status, answer) = bridge(&sandbox, "sandbox/jsapi/check", &refused).await;
        assert_eq!(status, 400, "{refused}: {answer}");
        assert_eq!(answer["ok"], false);
        assert!(
            answer["err_desc"].as_str().is_some_and(|d| !d.is_empty()),
            "{answer}"
        );
        let (status, _) = bridge(&sandbox, "sandbox/jsapi/pay", &refused).await;
        assert_eq!(status, 400, "{refused}");
    }
    assert_eq!(
        sandbox.json("sandbox/orders/js-1").await["trade_state"],
        "NOTPAY"
    );

    // Pay: the notify names the trade type and the payer.
    let (status, paid) = bridge(&sandbox, "sandbox/jsapi/pay", &params).await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(paid["ok"], true);
    assert_eq!(paid["out_trade_no"], "js-1");
    assert!(wait_until(Duration::from_secs(5), || receiver.count() >= 1).await);
    let notify = &receiver.all()[0];
    assert_eq!(notify["trade_type"], "JSAPI");
    assert_eq!(notify["openid"], openid);
    assert_eq!(
        notify["transaction_id"],
        paid["transaction_id"].as_str().unwrap()
    );
    assert!(
        independently_verified(notify, SANDBOX_KEY, false),
        "{notify:?}"
    );
    let (status, again) = bridge(&sandbox, "sandbox/jsapi/check", &params).await;
    assert_eq!(status, 400, "paid already: {again}");
}

#[tokio::test]
async fn the_phone_pays_any_order_by_its_prepay_id() {
    let receiver = NotifyReceiver::start(0);
    let sandbox = TestSandbox::start();
    let answer = unified(&sandbox, &mweb_order("h5-4", receiver.url.as_str())).await;
    let pay = |body: serde_json::Value| {
        sandbox
            .http
            .post(sandbox.url("sandbox/pay"))
            .json(&body)
            .send()
    };
    let unknown = pay(serde_json::json!({ "prepay_id": "wx0" }))
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let both = pay(serde_json::json!({ "prepay_id": answer["prepay_id"], "code_url": "x" }))
        .await
        .unwrap();
    assert_eq!(both.status(), 400);
    let paid = pay(serde_json::json!({ "prepay_id": answer["prepay_id"] }))
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);
    assert!(wait_until(Duration::from_secs(5), || receiver.count() >= 1).await);
    assert_eq!(receiver.all()[0]["trade_type"], "MWEB");
}

#[tokio::test]
async fn the_bridge_script_is_served_as_javascript() {
    let sandbox = TestSandbox::start();
    let response = sandbox
        .http
        .get(sandbox.url("sandbox/jsbridge.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()[reqwest::header::CONTENT_TYPE],
        "application/javascript; charset=utf-8"
    );
    let script = response.text().await.unwrap();
    for part in [
        "window.WeixinJSBridge",
        "WeixinJSBridgeReady",
        "getBrandWCPayRequest",
        "/sandbox/jsapi/check",
        "/sandbox/jsapi/pay",
        "wx-sandbox-sheet",
        "wx-sandbox-pay",
        "wx-sandbox-cancel",
        "document.currentScript",
    ] {
        assert!(script.contains(part), "{part} missing");
    }
    // A strict CSP allows none of these.
    for banned in [
        "eval(",
        "innerHTML",
        "setAttribute(\"style\"",
        "new Function",
    ] {
        assert!(!script.contains(banned), "{banned} in the bridge");
    }
}
