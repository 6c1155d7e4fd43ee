//! The built-in sandbox over HTTP, driven by the crate's own client and by XML written and
//! signed by hand, so a mistake shared by the client and the sandbox cannot hide.

use std::net::TcpListener;
use std::time::Duration;

use chrono::Utc;
use wxpay_checkout::config::{SANDBOX_APPID, SANDBOX_KEY, SANDBOX_MCH_ID};
use wxpay_checkout::rt::AppRuntime;
use wxpay_checkout::wxpay::time::format_beijing;
use wxpay_checkout::wxpay::types::{Trade, UnifiedOrderRequest};
use wxpay_checkout::wxpay::{
    Client, ClientConfig, ErrCode, Merchant, RetryPolicy, SignType, TradeState, WxError,
};

use crate::helpers::{
    demo_merchant, hand_signed, hand_xml, independently_verified, wait_until, NotifyReceiver,
    TestSandbox,
};

const SIGNERROR: &str = "签名错误，请检查后再试";

fn client(sandbox: &TestSandbox, merchant: Merchant, sign_type: SignType) -> Client {
    let mut config = ClientConfig::new(sandbox.base.clone(), merchant, sign_type);
    config.timeout = Duration::from_millis(800);
    config.retry = RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    };
    Client::new(config, &AppRuntime::current()).unwrap()
}

fn order(no: &str, notify_url: &str) -> UnifiedOrderRequest {
    UnifiedOrderRequest {
        body: "龙井茶 x2".into(),
        out_trade_no: no.into(),
        total_fee: 2500,
        spbill_create_ip: "127.0.0.1".into(),
        notify_url: notify_url.into(),
        trade: Trade::Native {
            product_id: "1".into(),
        },
        attach: Some("]]> attach".into()),
        time_start: None,
        time_expire: None,
    }
}

/// A Native unifiedorder's fields as a hand-written request would carry them.
fn hand_order(no: &str) -> Vec<(&'static str, String)> {
    vec![
        ("appid", SANDBOX_APPID.into()),
        ("mch_id", SANDBOX_MCH_ID.into()),
        ("nonce_str", wxpay_checkout::wxpay::nonce_str()),
        ("body", "测试商品".into()),
        ("out_trade_no", no.into()),
        ("total_fee", "101".into()),
        ("spbill_create_ip", "203.0.113.7".into()),
        (
            "notify_url",
            "http://127.0.0.1:9/weixin/pay/notify/url".into(),
        ),
        ("trade_type", "NATIVE".into()),
        ("product_id", "7".into()),
    ]
}

fn pairs<'a>(fields: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    fields.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn with(
    mut fields: Vec<(&'static str, String)>,
    name: &'static str,
    value: &str,
) -> Vec<(&'static str, String)> {
    fields.retain(|(k, _)| *k != name);
    fields.push((name, value.into()));
    fields
}

fn without(mut fields: Vec<(&'static str, String)>, name: &str) -> Vec<(&'static str, String)> {
    fields.retain(|(k, _)| *k != name);
    fields
}

async fn unified_raw(
    sandbox: &TestSandbox,
    fields: &[(&'static str, String)],
    hmac: bool,
) -> wxpay_checkout::wxpay::Fields {
    sandbox
        .post_raw(
            "pay/unifiedorder",
            hand_signed(&pairs(fields), SANDBOX_KEY, hmac),
        )
        .await
}

fn assert_business_failure(answer: &wxpay_checkout::wxpay::Fields, code: &str, hmac: bool) {
    assert_eq!(answer["return_code"], "SUCCESS", "{answer:?}");
    assert_eq!(answer["result_code"], "FAIL", "{answer:?}");
    assert_eq!(answer["err_code"], code, "{answer:?}");
    assert!(
        independently_verified(answer, SANDBOX_KEY, hmac),
        "{answer:?}"
    );
}

fn assert_return_fail(answer: &wxpay_checkout::wxpay::Fields, message: &str) {
    assert_eq!(answer["return_code"], "FAIL", "{answer:?}");
    assert_eq!(answer["return_msg"], message, "{answer:?}");
    assert!(
        !answer.contains_key("sign"),
        "FAIL answers are unsigned: {answer:?}"
    );
}

#[tokio::test]
async fn the_client_places_queries_and_closes_orders_with_both_sign_types() {
    let sandbox = TestSandbox::start();
    for (i, sign_type) in [SignType::Md5, SignType::HmacSha256]
        .into_iter()
        .enumerate()
    {
        let client = client(&sandbox, demo_merchant(), sign_type);
        let no = format!("client-{i}");
        let prepay = client
            .unified_order(&order(&no, "http://127.0.0.1:9/n"))
            .await
            .unwrap();
        assert!(prepay
            .code_url
            .as_deref()
            .unwrap()
            .starts_with("weixin://wxpay/bizpayurl?pr="));
        assert_eq!(prepay.trade_type, "NATIVE");
        let query = client.order_query(&no).await.unwrap();
        assert_eq!(query.trade_state, TradeState::NotPay);
        client.close_order(&no).await.unwrap();
        let query = client.order_query(&no).await.unwrap();
        assert_eq!(query.trade_state, TradeState::Closed);
        let err = client.close_order(&no).await.unwrap_err();
        assert_eq!(err.err_code(), Some(&ErrCode::OrderClosed));
    }
}

#[tokio::test]
async fn hand_built_requests_are_answered_with_independently_verifiable_signatures() {
    let sandbox = TestSandbox::start();
    for hmac in [false, true] {
        let no = format!("hand-{hmac}");
        let mut fields = hand_order(&no);
        if hmac {
            fields.push(("sign_type", "HMAC-SHA256".into()));
        }
        let answer = unified_raw(&sandbox, &fields, hmac).await;
        assert_eq!(answer["return_code"], "SUCCESS", "{answer:?}");
        assert_eq!(answer["result_code"], "SUCCESS");
        assert!(answer["code_url"].starts_with("weixin://wxpay/bizpayurl?pr="));
        assert!(
            independently_verified(&answer, SANDBOX_KEY, hmac),
            "{answer:?}"
        );
        assert_eq!(answer["sign"].len(), if hmac { 64 } else { 32 });
    }
}

#[tokio::test]
async fn bad_signatures_get_signerror() {
    let sandbox = TestSandbox::start();
    // The crate's client with the wrong key.
    let wrong = Merchant {
        key: "00000000000000000000000000000000".to_string().into(),
        ..demo_merchant()
    };
    for sign_type in [SignType::Md5, SignType::HmacSha256] {
        match client(&sandbox, wrong.clone(), sign_type)
            .unified_order(&order("sig-1", "http://127.0.0.1:9/n"))
            .await
            .unwrap_err()
        {
            WxError::ReturnFail { return_msg, .. } => assert_eq!(return_msg, SIGNERROR),
            other => panic!("{other}"),
        }
    }
    let fields = hand_order("sig-2");
    // Signed with another key.
    let answer = sandbox
        .post_raw(
            "pay/unifiedorder",
            hand_signed(&pairs(&fields), "0123456789abcdef0123456789abcdef", false),
        )
        .await;
    assert_return_fail(&answer, SIGNERROR);
    // HMAC-signed without saying so: verified as MD5, and fails.
    let answer = unified_raw(&sandbox, &fields, true).await;
    assert_return_fail(&answer, SIGNERROR);
    // sign_type says HMAC-SHA256 but the sign is MD5.
    let answer = unified_raw(
        &sandbox,
        &with(fields.clone(), "sign_type", "HMAC-SHA256"),
        false,
    )
    .await;
    assert_return_fail(&answer, SIGNERROR);
    // A field changed after signing.
    let mut doc = hand_signed(&pairs(&fields), SANDBOX_KEY, false);
    doc = doc.replace("<![CDATA[101]]>", "<![CDATA[1]]>");
    let answer = sandbox.post_raw("pay/unifiedorder", doc).await;
    assert_return_fail(&answer, SIGNERROR);
    // No sign at all.
    let answer = sandbox
        .post_raw("pay/unifiedorder", hand_xml(&pairs(&fields)))
        .await;
    assert_return_fail(&answer, "缺少参数sign");
    // Nothing was created by any of them.
    let answer = sandbox
        .post_raw(
            "pay/orderquery",
            hand_signed(
                &[
                    ("appid", SANDBOX_APPID),
                    ("mch_id", SANDBOX_MCH_ID),
                    ("nonce_str", "n1"),
                    ("out_trade_no", "sig-2"),
                ],
                SANDBOX_KEY,
                false,
            ),
        )
        .await;
    assert_business_failure(&answer, "ORDERNOTEXIST", false);
}

#[tokio::test]
async fn transport_level_refusals_are_unsigned_return_fail() {
    let sandbox = TestSandbox::start();
    let response = sandbox
        .http
        .get(sandbox.url("pay/unifiedorder"))
        .send()
        .await
        .unwrap();
    let answer = wxpay_checkout::wxpay::xml::decode(&response.bytes().await.unwrap()).unwrap();
    assert_return_fail(&answer, "请使用post方法");
    assert_return_fail(
        &sandbox.post_raw("pay/unifiedorder", "").await,
        "post数据为空",
    );
    assert_return_fail(
        &sandbox
            .post_raw("pay/orderquery", b"<xml><a>\xff</a></xml>".to_vec())
            .await,
        "编码格式错误",
    );
    for hostile in [
        "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><xml><appid>&e;</appid></xml>",
        "<xml><appid>wx",
        "not xml",
        "<xml><a><b>1</b></a></xml>",
    ] {
        assert_return_fail(&sandbox.post_raw("pay/unifiedorder", hostile).await, "XML格式错误");
    }
    let fields = hand_order("who");
    assert_return_fail(
        &unified_raw(
            &sandbox,
            &with(fields.clone(), "appid", "wx0000000000000000"),
            false,
        )
        .await,
        "商户号mch_id与appid不匹配",
    );
    assert_return_fail(
        &unified_raw(
            &sandbox,
            &with(fields.clone(), "mch_id", "1234567890"),
            false,
        )
        .await,
        "商户号mch_id与appid不匹配",
    );
    assert_return_fail(
        &unified_raw(
            &sandbox,
            &with(
                with(fields.clone(), "mch_id", "1234567890"),
                "appid",
                "wx0000000000000000",
            ),
            false,
        )
        .await,
        "appid不存在",
    );
    assert_return_fail(
        &unified_raw(&sandbox, &without(fields.clone(), "appid"), false).await,
        "缺少参数appid",
    );
    assert_return_fail(
        &unified_raw(&sandbox, &with(fields, "sign_type", "SHA1"), false).await,
        "sign_type参数格式错误",
    );
}

#[tokio::test]
async fn missing_required_fields_are_refused_before_business() {
    let sandbox = TestSandbox::start();
    for name in [
        "body",
        "out_trade_no",
        "total_fee",
        "spbill_create_ip",
        "notify_url",
        "trade_type",
        "product_id",
    ] {
        let answer = unified_raw(&sandbox, &without(hand_order("lack"), name), false).await;
        assert_return_fail(&answer, &format!("缺少参数{name}"));
    }
    // The crate's client sees the same as a typed error.
    let err = client(&sandbox, demo_merchant(), SignType::Md5)
        .unified_order(&UnifiedOrderRequest {
            trade: Trade::Native {
                product_id: String::new(),
            },
            ..order("lack-2", "http://127.0.0.1:9/n")
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, WxError::ReturnFail { return_msg, .. } if return_msg == "缺少参数product_id"),
        "{err}"
    );
}

#[tokio::test]
async fn bad_values_are_refused_at_the_level_wechat_uses() {
    let sandbox = TestSandbox::start();
    let now = Utc::now();
    // Malformed values are parameter errors: unsigned return_code=FAIL, before any business.
    let malformed: Vec<(&'static str, String, &'static str)> = vec![
        ("total_fee", "0".into(), "invalid total_fee"),
        ("total_fee", "-1".into(), "invalid total_fee"),
        ("total_fee", "1.5".into(), "invalid total_fee"),
        ("total_fee", "+5".into(), "invalid total_fee"),
        ("notify_url", "not a url".into(), "notify_url参数格式错误"),
        (
            "out_trade_no",
            "has space".into(),
            "out_trade_no参数格式错误",
        ),
        ("out_trade_no", "订单".into(), "out_trade_no参数格式错误"),
        ("out_trade_no", "9".repeat(33), "out_trade_no参数格式错误"),
        (
            "spbill_create_ip",
            "localhost".into(),
            "invalid spbill_create_ip",
        ),
        (
            "time_expire",
            "2026-11-28".into(),
            "time_expire参数格式错误",
        ),
        ("body", "字".repeat(43), "body参数长度有误"),
        ("fee_type", "USD".into(), "fee_type参数格式错误"),
    ];
    for (name, value, message) in malformed {
        let answer = unified_raw(&sandbox, &with(hand_order("bad-1"), name, &value), false).await;
        assert_return_fail(&answer, message);
    }
    // Well-formed but not acceptable: signed INVALID_REQUEST.
    let cases: Vec<(&'static str, String)> = vec![
        ("notify_url", "http://127.0.0.1:9/notify?order=1".into()),
        (
            "time_expire",
            format_beijing(now + chrono::Duration::minutes(4)),
        ),
    ];
    for (name, value) in cases {
        let answer = unified_raw(&sandbox, &with(hand_order("bad-1"), name, &value), false).await;
        assert_eq!(
            answer["err_code"], "INVALID_REQUEST",
            "{name}={value}: {answer:?}"
        );
        assert_business_failure(&answer, "INVALID_REQUEST", false);
    }
    // Five minutes from WeChat's now exactly is allowed, whatever time_start says (an hour ago
    // here); under five is refused however far time_start lies before it.
    let start = format_beijing(now - chrono::Duration::hours(1));
    let expire = format_beijing(now + chrono::Duration::minutes(5));
    let fields = with(
        with(hand_order("ok-5min"), "time_start", &start),
        "time_expire",
        &expire,
    );
    assert_eq!(
        unified_raw(&sandbox, &fields, false).await["result_code"],
        "SUCCESS"
    );
    // Trade types beyond Native, H5 and JSAPI are products the sandbox's merchant has not
    // opened.
    let answer = unified_raw(
        &sandbox,
        &with(hand_order("app"), "trade_type", "APP"),
        false,
    )
    .await;
    assert_return_fail(
        &answer,
        "商户号该产品权限未开通，请前往商户平台>产品中心检查后重试",
    );
}

#[tokio::test]
async fn re_entry_returns_the_same_prepay_and_changed_parameters_are_refused() {
    let sandbox = TestSandbox::start();
    let first = unified_raw(&sandbox, &hand_order("again"), false).await;
    // Same parameters, a new nonce: the same prepay.
    let second = unified_raw(&sandbox, &hand_order("again"), false).await;
    assert_eq!(first["prepay_id"], second["prepay_id"]);
    assert_eq!(first["code_url"], second["code_url"]);
    let changed = unified_raw(
        &sandbox,
        &with(hand_order("again"), "total_fee", "102"),
        false,
    )
    .await;
    assert_business_failure(&changed, "INVALID_REQUEST", false);
    let changed = unified_raw(&sandbox, &with(hand_order("again"), "body", "别的"), false).await;
    assert_business_failure(&changed, "INVALID_REQUEST", false);
    let other_type = unified_raw(
        &sandbox,
        &with(hand_order("again"), "trade_type", "JSAPI"),
        false,
    )
    .await;
    assert_business_failure(&other_type, "OUT_TRADE_NO_USED", false);
    // And the client agrees.
    let client = client(&sandbox, demo_merchant(), SignType::Md5);
    let a = client
        .unified_order(&order("again-2", "http://127.0.0.1:9/n"))
        .await
        .unwrap();
    let b = client
        .unified_order(&order("again-2", "http://127.0.0.1:9/n"))
        .await
        .unwrap();
    assert_eq!(a, b);
    let err = client
        .unified_order(&UnifiedOrderRequest {
            total_fee: 1,
            ..order("again-2", "http://127.0.0.1:9/n")
        })
        .await
        .unwrap_err();
    assert_eq!(err.err_code(), Some(&ErrCode::InvalidRequest));
}

#[tokio::test]
async fn paid_and_closed_orders_answer_orderpaid_and_orderclosed() {
    let sandbox = TestSandbox::start();
    let client = client(&sandbox, demo_merchant(), SignType::Md5);
    let paid = client
        .unified_order(&order("paid-1", "http://127.0.0.1:9/n"))
        .await
        .unwrap();
    let (status, receipt) = sandbox
        .pay(&paid.code_url.clone().unwrap(), "success")
        .await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["trade_state"], "SUCCESS");
    let err = client
        .unified_order(&order("paid-1", "http://127.0.0.1:9/n"))
        .await
        .unwrap_err();
    assert_eq!(err.err_code(), Some(&ErrCode::OrderPaid));
    let err = client.close_order("paid-1").await.unwrap_err();
    assert_eq!(err.err_code(), Some(&ErrCode::OrderPaid));
    let query = client.order_query("paid-1").await.unwrap();
    assert_eq!(query.trade_state, TradeState::Success);
    assert_eq!(query.total_fee, Some(2500));
    assert_eq!(query.transaction_id.as_ref().map(String::len), Some(28));
    assert_eq!(query.attach.as_deref(), Some("]]> attach"));
    // Paying twice is refused.
    assert_eq!(
        sandbox
            .pay(&paid.code_url.clone().unwrap(), "success")
            .await
            .0,
        409
    );

    client
        .unified_order(&order("closed-1", "http://127.0.0.1:9/n"))
        .await
        .unwrap();
    client.close_order("closed-1").await.unwrap();
    let err = client
        .unified_order(&order("closed-1", "http://127.0.0.1:9/n"))
        .await
        .unwrap_err();
    assert_eq!(err.err_code(), Some(&ErrCode::OrderClosed));

    for raw_api in ["pay/orderquery", "pay/closeorder"] {
        let answer = sandbox
            .post_raw(
                raw_api,
                hand_signed(
                    &[
                        ("appid", SANDBOX_APPID),
                        ("mch_id", SANDBOX_MCH_ID),
                        ("nonce_str", "x1"),
                        ("out_trade_no", "never-placed"),
                    ],
                    SANDBOX_KEY,
                    false,
                ),
            )
            .await;
        assert_business_failure(&answer, "ORDERNOTEXIST", false);
    }
    let err = client.order_query("never-placed").await.unwrap_err();
    assert_eq!(err.err_code(), Some(&ErrCode::OrderNotExist));
}

#[tokio::test]
async fn a_failed_payment_is_payerror_and_can_be_paid_again() {
    let sandbox = TestSandbox::start();
    let client = client(&sandbox, demo_merchant(), SignType::Md5);
    let prepay = client
        .unified_order(&order("fails-1", "http://127.0.0.1:9/n"))
        .await
        .unwrap();
    let (status, receipt) = sandbox.pay(&prepay.code_url.clone().unwrap(), "fail").await;
    assert_eq!(
        (status, receipt["trade_state"].as_str()),
        (200, Some("PAYERROR"))
    );
    assert_eq!(
        client.order_query("fails-1").await.unwrap().trade_state,
        TradeState::PayError
    );
    let (status, _) = sandbox
        .pay(&prepay.code_url.clone().unwrap(), "success")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        client.order_query("fails-1").await.unwrap().trade_state,
        TradeState::Success
    );
}

#[tokio::test]
async fn no_payment_after_time_expire_or_after_the_code_url_expires() {
    let sandbox = TestSandbox::start();
    let client = client(&sandbox, demo_merchant(), SignType::Md5);
    let now = Utc::now();
    let expiring = UnifiedOrderRequest {
        time_start: Some(format_beijing(now)),
        time_expire: Some(format_beijing(now + chrono::Duration::minutes(5))),
        ..order("expires-1", "http://127.0.0.1:9/n")
    };
    let short = client.unified_order(&expiring).await.unwrap();
    let long = client
        .unified_order(&order("expires-2", "http://127.0.0.1:9/n"))
        .await
        .unwrap();
    sandbox.advance_clock(6 * 60).await;
    let (status, answer) = sandbox
        .pay(&short.code_url.clone().unwrap(), "success")
        .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(
        client.order_query("expires-1").await.unwrap().trade_state,
        TradeState::NotPay
    );
    sandbox.advance_clock(2 * 3600).await;
    let (status, answer) = sandbox
        .pay(&long.code_url.clone().unwrap(), "success")
        .await;
    assert_eq!(status, 409, "{answer}");
    // A re-entry after the code_url expired gets a fresh one, which can be paid.
    let renewed = client
        .unified_order(&order("expires-2", "http://127.0.0.1:9/n"))
        .await
        .unwrap();
    assert_ne!(renewed.code_url, long.code_url);
    assert_eq!(
        sandbox
            .pay(&renewed.code_url.clone().unwrap(), "success")
            .await
            .0,
        200
    );
    assert_eq!(
        sandbox
            .pay("weixin://wxpay/bizpayurl?pr=nothing", "success")
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn notify_is_retried_until_success_exactly_three_deliveries() {
    let sandbox = TestSandbox::start();
    let receiver = NotifyReceiver::start(2);
    let client = client(&sandbox, demo_merchant(), SignType::HmacSha256);
    let prepay = client
        .unified_order(&order("notify-1", receiver.url.as_str()))
        .await
        .unwrap();
    sandbox
        .pay(&prepay.code_url.clone().unwrap(), "success")
        .await;
    assert!(wait_until(Duration::from_secs(5), || receiver.count() >= 3).await);
    // The sandbox records the acknowledgement before its delivery loop ends, so once it shows,
    // no further delivery can follow.
    let mut after = sandbox.json("sandbox/orders/notify-1").await;
    for _ in 0..500 {
        if after["notify_acknowledged"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        after = sandbox.json("sandbox/orders/notify-1").await;
    }
    assert_eq!(after["notify_acknowledged"], true);
    // Without the SUCCESS answer, two more deliveries would follow within 210 ms (30 s and
    // 3 min of the schedule, scaled): none may come.
    assert!(!wait_until(Duration::from_millis(300), || receiver.count() > 3).await);
    assert_eq!(
        sandbox.json("sandbox/orders/notify-1").await["notify_attempts"],
        3
    );

    let notify = &receiver.all()[0];
    // HMAC order: HMAC-signed, and like WeChat without a sign_type field.
    assert!(!notify.contains_key("sign_type"));
    assert!(
        independently_verified(notify, SANDBOX_KEY, true),
        "{notify:?}"
    );
    for field in [
        "appid",
        "mch_id",
        "nonce_str",
        "result_code",
        "return_code",
        "openid",
        "is_subscribe",
        "trade_type",
        "bank_type",
        "total_fee",
        "cash_fee",
        "fee_type",
        "transaction_id",
        "out_trade_no",
        "time_end",
        "attach",
    ] {
        assert!(
            notify.contains_key(field),
            "notify lacks {field}: {notify:?}"
        );
    }
    assert_eq!(notify["transaction_id"].len(), 28);
    assert_eq!(notify["total_fee"], "2500");
    assert!(wxpay_checkout::wxpay::time::parse_beijing(&notify["time_end"]).is_ok());
    assert_eq!(notify["out_trade_no"], "notify-1");
}

#[tokio::test]
async fn delivery_keeps_retrying_while_the_shop_is_down() {
    let sandbox = TestSandbox::start();
    // Reserve a port and close it: the shop is down.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/weixin/pay/notify/url");
    let client = client(&sandbox, demo_merchant(), SignType::Md5);
    let prepay = client.unified_order(&order("down-1", &url)).await.unwrap();
    sandbox
        .pay(&prepay.code_url.clone().unwrap(), "success")
        .await;
    // Wait (with a deadline a loaded CI machine meets) until at least two deliveries failed,
    // then bring the shop up on that port.
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let attempts = sandbox.json("sandbox/orders/down-1").await["notify_attempts"]
            .as_u64()
            .unwrap();
        if attempts >= 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{attempts} deliveries in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let receiver = NotifyReceiver::start_on(TcpListener::bind(("127.0.0.1", port)).unwrap(), 0);
    // The next retry may be the schedule's 10.8 s one (scaled) if this test was held up.
    assert!(wait_until(Duration::from_secs(30), || receiver.count() >= 1).await);
    assert_eq!(receiver.all()[0]["out_trade_no"], "down-1");
    // The sandbox notes the answer once it has read it: a moment after the receiver sent it.
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while sandbox.json("sandbox/orders/down-1").await["notify_acknowledged"] != true {
        assert!(tokio::time::Instant::now() < until, "never acknowledged");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn injected_faults_reach_the_client_and_a_lost_answer_still_took_effect() {
    let sandbox = TestSandbox::start();
    let client = client(&sandbox, demo_merchant(), SignType::Md5);
    sandbox
        .set_faults(serde_json::json!({ "http_5xx": 1.0 }))
        .await;
    let err = client.order_query("f-1").await.unwrap_err();
    assert!(
        matches!(err, WxError::HttpStatus { status: 503, .. }),
        "{err}"
    );
    sandbox
        .set_faults(serde_json::json!({ "system_error": 1.0 }))
        .await;
    let err = client
        .unified_order(&order("f-1", "http://127.0.0.1:9/n"))
        .await
        .unwrap_err();
    assert_eq!(err.err_code(), Some(&ErrCode::SystemError));
    sandbox
        .set_faults(serde_json::json!({ "timeout": 1.0 }))
        .await;
    let err = client
        .unified_order(&order("f-1", "http://127.0.0.1:9/n"))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    sandbox
        .set_faults(serde_json::json!({ "latency_ms": 50 }))
        .await;
    let started = std::time::Instant::now();
    // The timed-out unifiedorder happened: the order exists.
    assert_eq!(
        client.order_query("f-1").await.unwrap().trade_state,
        TradeState::NotPay
    );
    assert!(started.elapsed() >= Duration::from_millis(50));
    let stats = sandbox.json("sandbox/stats").await;
    assert_eq!(stats["unifiedorder"], 2);
    assert_eq!(stats["orderquery"], 2);
    // Nonsense faults are refused.
    let response = sandbox
        .http
        .put(sandbox.url("sandbox/faults"))
        .json(&serde_json::json!({ "http_5xx": 3.0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn dropped_and_duplicated_notifies() {
    let sandbox = TestSandbox::start();
    let client = client(&sandbox, demo_merchant(), SignType::Md5);
    let receiver = NotifyReceiver::start(0);

    sandbox
        .set_faults(serde_json::json!({ "drop_notify": 1.0 }))
        .await;
    let dropped = client
        .unified_order(&order("drop-1", receiver.url.as_str()))
        .await
        .unwrap();
    sandbox
        .pay(&dropped.code_url.clone().unwrap(), "success")
        .await;
    let mut attempts = 0;
    for _ in 0..300 {
        attempts = sandbox.json("sandbox/orders/drop-1").await["notify_attempts"]
            .as_u64()
            .unwrap();
        if attempts >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(attempts >= 3, "attempts {attempts}");
    assert_eq!(receiver.count(), 0, "every delivery was dropped");

    sandbox
        .set_faults(serde_json::json!({ "duplicate_notify": 1.0 }))
        .await;
    let twice = client
        .unified_order(&order("dup-1", receiver.url.as_str()))
        .await
        .unwrap();
    sandbox
        .pay(&twice.code_url.clone().unwrap(), "success")
        .await;
    assert!(
        wait_until(Duration::from_secs(5), || receiver
            .all()
            .iter()
            .filter(|n| n["out_trade_no"] == "dup-1")
            .count()
            >= 2)
        .await
    );
    let copies: Vec<_> = receiver
        .all()
        .into_iter()
        .filter(|n| n["out_trade_no"] == "dup-1")
        .collect();
    assert_eq!(copies[0], copies[1], "the same notify, twice");
}

#[tokio::test]
async fn the_scan_page_shows_the_order_and_pays_by_form() {
    let sandbox = TestSandbox::start();
    let client = client(&sandbox, demo_merchant(), SignType::Md5);
    let prepay = client
        .unified_order(&order("scan-1", "http://127.0.0.1:9/n"))
        .await
        .unwrap();
    let page = sandbox
        .http
        .get(sandbox.url("scan"))
        .query(&[("code_url", prepay.code_url.as_deref().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    for shown in [
        "wxpay-checkout 演示商户",
        "龙井茶 x2",
        "¥25.00",
        "scan-1",
        "/sandbox/pay",
        "Cancel",
    ] {
        assert!(html.contains(shown), "scan page lacks {shown}");
    }
    let paid = sandbox
        .http
        .post(sandbox.url("sandbox/pay"))
        .form(&[
            ("code_url", prepay.code_url.as_deref().unwrap()),
            ("outcome", "success"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);
    assert!(paid.text().await.unwrap().contains("支付成功"));
    assert_eq!(
        client.order_query("scan-1").await.unwrap().trade_state,
        TradeState::Success
    );
    let again = sandbox
        .http
        .get(sandbox.url("scan"))
        .query(&[("code_url", prepay.code_url.as_deref().unwrap())])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(again.contains("订单已支付"));
    let unknown = sandbox
        .http
        .get(sandbox.url("scan"))
        .query(&[("code_url", "weixin://wxpay/bizpayurl?pr=zzzzzzz")])
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn old_orders_are_forgotten_beyond_the_bound() {
    let sandbox = TestSandbox::start_with(|config| config.max_orders = 3);
    let client = client(&sandbox, demo_merchant(), SignType::Md5);
    for i in 0..5 {
        client
            .unified_order(&order(&format!("evict-{i}"), "http://127.0.0.1:9/n"))
            .await
            .unwrap();
    }
    assert_eq!(sandbox.json("sandbox/stats").await["orders"], 3);
    let err = client.order_query("evict-0").await.unwrap_err();
    assert_eq!(err.err_code(), Some(&ErrCode::OrderNotExist));
    assert!(client.order_query("evict-4").await.is_ok());
}

#[tokio::test]
async fn answers_have_the_shapes_wechat_sends() {
    let sandbox = TestSandbox::start();
    let placed = unified_raw(&sandbox, &hand_order("shape-1"), false).await;
    assert_eq!(placed["device_info"], "", "an empty element: {placed:?}");
    assert!(independently_verified(&placed, SANDBOX_KEY, false));
    let query = vec![
        ("appid", SANDBOX_APPID.to_string()),
        ("mch_id", SANDBOX_MCH_ID.into()),
        ("nonce_str", wxpay_checkout::wxpay::nonce_str()),
        ("out_trade_no", "shape-1".into()),
    ];
    let unpaid = sandbox
        .post_raw(
            "pay/orderquery",
            hand_signed(&pairs(&query), SANDBOX_KEY, false),
        )
        .await;
    assert_eq!(unpaid["trade_state"], "NOTPAY");
    assert_eq!(unpaid["trade_state_desc"], "订单未支付");
    assert_eq!(unpaid["total_fee"], "101", "the amount, even unpaid");
    assert_eq!(unpaid["attach"], "");
    assert!(independently_verified(&unpaid, SANDBOX_KEY, false));
    // Ids carry Beijing dates (from 16:00 UTC on, that is tomorrow).
    let (status, paid) = sandbox.pay(placed["code_url"].as_str(), "success").await;
    assert_eq!(status, 200, "{paid}");
    let beijing_today = (Utc::now() + chrono::Duration::hours(8))
        .format("%Y%m%d")
        .to_string();
    assert_eq!(
        &paid["transaction_id"].as_str().unwrap()[10..18],
        beijing_today
    );
}
