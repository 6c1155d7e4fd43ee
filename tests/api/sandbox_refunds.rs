//! The sandbox's refunds: `/secapi/pay/refund` over TLS with the merchant's client certificate,
//! driven by the crate's own client (and by XML signed by hand), the checks WeChat makes, one
//! refund per `out_refund_no` however often it is asked, settlement, the encrypted refund
//! notify, and the faults.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use url::Url;
use wxpay_checkout::config::{SANDBOX_APPID, SANDBOX_KEY, SANDBOX_MCH_ID};
use wxpay_checkout::rt::AppRuntime;
use wxpay_checkout::wxpay::refund::{parse_refund_notify, RefundNotice, RefundRequest};
use wxpay_checkout::wxpay::{
    nonce_str, xml, Client, ClientConfig, ErrCode, Fields, RefundStatus, SecApi, SignType,
    TradeState, WxError,
};

use crate::helpers::{
    demo_merchant, hand_signed, native_order, settled_refunds, wait_until, TestSandbox,
};

/// How long a test waits for the sandbox to settle or deliver: generous for a loaded machine,
/// while a settlement takes 60 ms at the tests' time scale.
const DEADLINE: Duration = Duration::from_secs(10);

/// A raw HTTPS client trusting the sandbox CA, presenting the merchant certificate or not.
fn tls_http(sandbox: &TestSandbox, with_certificate: bool) -> reqwest::Client {
    let (_, credentials) = sandbox.tls.as_ref().expect("a sandbox with TLS");
    let mut builder = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(credentials.ca_pem.as_bytes()).unwrap(),
        )
        .timeout(Duration::from_secs(5));
    if with_certificate {
        builder = builder.identity(credentials.merchant.identity().unwrap());
    }
    builder.build().unwrap()
}

fn secapi_url(sandbox: &TestSandbox) -> Url {
    sandbox
        .tls
        .as_ref()
        .unwrap()
        .0
        .join("secapi/pay/refund")
        .unwrap()
}

fn refund(no: &str, out_refund_no: &str, total_fee: i64, refund_fee: i64) -> RefundRequest {
    RefundRequest {
        out_trade_no: no.into(),
        out_refund_no: out_refund_no.into(),
        total_fee,
        refund_fee,
        refund_desc: Some("退货".into()),
        notify_url: None,
    }
}

fn notified(request: RefundRequest, url: &Url) -> RefundRequest {
    RefundRequest {
        notify_url: Some(url.to_string()),
        ..request
    }
}

/// What the sandbox shows of one refund (`/sandbox/orders/{no}`).
async fn refund_view(sandbox: &TestSandbox, no: &str, out_refund_no: &str) -> serde_json::Value {
    let order = sandbox.json(&format!("sandbox/orders/{no}")).await;
    order["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["out_refund_no"] == out_refund_no)
        .cloned()
        .unwrap_or_else(|| panic!("no refund {out_refund_no} in {order}"))
}

fn business(err: &WxError) -> (&ErrCode, String) {
    match err {
        WxError::Business {
            err_code,
            err_code_des,
            ..
        } => (err_code, err_code_des.clone()),
        other => panic!("not a business failure: {other}"),
    }
}

/// A merchant's refund notify endpoint: records every body as received, answers FAIL to the
/// first `fail_first` deliveries and SUCCESS afterwards.
struct RefundReceiver {
    url: Url,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl RefundReceiver {
    fn start(fail_first: usize) -> RefundReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!(
            "http://{}/weixin/pay/refund/notify",
            listener.local_addr().unwrap()
        ))
        .unwrap();
        let bodies: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let recorded = bodies.clone();
        let server = HttpServer::new(move || {
            let recorded = recorded.clone();
            App::new().route(
                "/weixin/pay/refund/notify",
                web::post().to(move |body: web::Bytes| {
                    let recorded = recorded.clone();
                    async move {
                        let n = {
                            let mut all = recorded.lock().unwrap();
                            all.push(body.to_vec());
                            all.len()
                        };
                        let code = if n <= fail_first { "FAIL" } else { "SUCCESS" };
                        HttpResponse::Ok()
                            .content_type("text/xml")
                            .body(xml::encode_pairs([
                                ("return_code", code),
                                ("return_msg", "OK"),
                            ]))
                    }
                }),
            )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        RefundReceiver { url, bodies }
    }

    fn count(&self) -> usize {
        self.bodies.lock().unwrap().len()
    }

    /// Every notice received, decrypted with the demo merchant's key.
    fn notices(&self) -> Vec<RefundNotice> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|body| parse_refund_notify(body, &demo_merchant()).expect("a valid refund notify"))
            .collect()
    }
}

#[tokio::test]
async fn a_full_and_two_partial_refunds_settle_and_the_query_lists_them() {
    // A settlement of 1.2 s: long enough to see PROCESSING right after the call.
    let sandbox = TestSandbox::start_tls_with(|c| c.time_scale = 0.02);
    let md5 = sandbox.tls_client();
    let hmac = sandbox.tls_client_with(SignType::HmacSha256, Duration::from_secs(5));

    let tid = sandbox.paid_order(&md5, "rf-full", 2500).await;
    let full = md5
        .refund(&refund("rf-full", "RF-1", 2500, 2500))
        .await
        .unwrap();
    assert_eq!(full.transaction_id.as_deref(), Some(tid.as_str()));
    assert_eq!((full.refund_fee, full.total_fee), (2500, 2500));
    assert!(
        full.refund_id.len() == 29
            && full.refund_id.starts_with("50")
            && full.refund_id.bytes().all(|b| b.is_ascii_digit()),
        "{}",
        full.refund_id
    );
    let listed = md5.refund_query("rf-full").await.unwrap();
    assert_eq!(listed.refunds.len(), 1);
    assert_eq!(listed.refunds[0].status, RefundStatus::Processing);
    assert_eq!(listed.refunds[0].success_time, None);
    assert_eq!(
        md5.order_query("rf-full").await.unwrap().trade_state,
        TradeState::Refund
    );

    sandbox.paid_order(&hmac, "rf-part", 2500).await;
    let first = hmac
        .refund(&refund("rf-part", "RP-1", 2500, 1000))
        .await
        .unwrap();
    let second = hmac
        .refund(&refund("rf-part", "RP-2", 2500, 500))
        .await
        .unwrap();
    assert_ne!(first.refund_id, second.refund_id);

    for (no, expected) in [
        ("rf-full", vec![("RF-1", 2500, &full.refund_id)]),
        (
            "rf-part",
            vec![
                ("RP-1", 1000, &first.refund_id),
                ("RP-2", 500, &second.refund_id),
            ],
        ),
    ] {
        let answer = settled_refunds(&md5, no).await;
        assert_eq!(answer.total_fee, 2500);
        let got: Vec<_> = answer
            .refunds
            .iter()
            .map(|r| (r.out_refund_no.as_str(), r.refund_fee, &r.refund_id))
            .collect();
        assert_eq!(got, expected);
        for r in &answer.refunds {
            assert_eq!(r.status, RefundStatus::Success);
            let when = r.success_time.as_deref().unwrap();
            assert!(
                chrono::NaiveDateTime::parse_from_str(when, "%Y-%m-%d %H:%M:%S").is_ok(),
                "{when}"
            );
        }
        assert_eq!(
            md5.order_query(no).await.unwrap().trade_state,
            TradeState::Refund
        );
    }
    let view = refund_view(&sandbox, "rf-part", "RP-2").await;
    assert_eq!(
        (view["refund_status"].as_str(), view["refund_fee"].as_i64()),
        (Some("SUCCESS"), Some(500))
    );
    let stats = sandbox.json("sandbox/stats").await;
    assert_eq!(stats["refund"], 3);
    assert_eq!(
        stats["refund_notify_attempts"], 0,
        "no notify_url, no notify"
    );
}

#[tokio::test]
async fn refunds_are_refused_as_wechat_refuses_them() {
    let sandbox = TestSandbox::start_tls_with(|_| {});
    let client = sandbox.tls_client();
    sandbox.paid_order(&client, "rr-1", 1000).await;

    let err = client
        .refund(&refund("rr-1", "RR-over", 1000, 1001))
        .await
        .unwrap_err();
    assert_eq!(business(&err).0, &ErrCode::InvalidRequest, "{err}");
    client
        .refund(&refund("rr-1", "RR-1", 1000, 600))
        .await
        .unwrap();
    // 500 more would pass what is left (400).
    let err = client
        .refund(&refund("rr-1", "RR-2", 1000, 500))
        .await
        .unwrap_err();
    assert_eq!(business(&err).0, &ErrCode::InvalidRequest, "{err}");
    // total_fee must be the order's.
    let err = client
        .refund(&refund("rr-1", "RR-3", 999, 100))
        .await
        .unwrap_err();
    let (code, des) = business(&err);
    assert_eq!(
        (code, des.as_str()),
        (
            &ErrCode::InvalidRequest,
            "订单金额或退款金额与之前请求不一致，请核实后再试"
        )
    );
    let err = client
        .refund(&refund("rr-none", "RR-4", 1000, 100))
        .await
        .unwrap_err();
    assert_eq!(business(&err).0, &ErrCode::OrderNotExist, "{err}");
    // Placed, never paid.
    client
        .unified_order(&native_order("rr-unpaid", 1000))
        .await
        .unwrap();
    let err = client
        .refund(&refund("rr-unpaid", "RR-5", 1000, 100))
        .await
        .unwrap_err();
    assert_eq!(business(&err).0, &ErrCode::Error, "{err}");

    // Hand-signed requests missing a required field: unsigned return_code=FAIL.
    let http = tls_http(&sandbox, true);
    let nonce = nonce_str();
    let full = [
        ("appid", SANDBOX_APPID),
        ("mch_id", SANDBOX_MCH_ID),
        ("nonce_str", nonce.as_str()),
        ("out_trade_no", "rr-1"),
        ("out_refund_no", "RR-6"),
        ("total_fee", "1000"),
        ("refund_fee", "100"),
    ];
    for (missing, message) in [
        ("out_trade_no", "缺少参数out_trade_no或transaction_id"),
        ("out_refund_no", "缺少参数out_refund_no"),
        ("total_fee", "缺少参数total_fee"),
        ("refund_fee", "缺少参数refund_fee"),
    ] {
        let pairs: Vec<_> = full
            .iter()
            .copied()
            .filter(|(k, _)| *k != missing)
            .collect();
        let answer = post_xml(
            &http,
            &secapi_url(&sandbox),
            hand_signed(&pairs, SANDBOX_KEY, false),
        )
        .await;
        assert_eq!(answer["return_code"], "FAIL", "{answer:?}");
        assert_eq!(answer["return_msg"], message, "{answer:?}");
        assert!(!answer.contains_key("sign"), "{answer:?}");
    }
    // The complete request, signed by hand, is a refund.
    let answer = post_xml(
        &http,
        &secapi_url(&sandbox),
        hand_signed(&full, SANDBOX_KEY, false),
    )
    .await;
    assert_eq!(
        (
            answer["return_code"].as_str(),
            answer["result_code"].as_str()
        ),
        ("SUCCESS", "SUCCESS"),
        "{answer:?}"
    );
    assert!(crate::helpers::independently_verified(
        &answer,
        SANDBOX_KEY,
        false
    ));
    let listed = settled_refunds(&client, "rr-1").await;
    let got: Vec<_> = listed
        .refunds
        .iter()
        .map(|r| (r.out_refund_no.as_str(), r.refund_fee))
        .collect();
    assert_eq!(got, [("RR-1", 600), ("RR-6", 100)]);

    // At most 50 refunds per order.
    sandbox.paid_order(&client, "rr-many", 100).await;
    for n in 0..50 {
        client
            .refund(&refund("rr-many", &format!("RM-{n}"), 100, 1))
            .await
            .unwrap();
    }
    let err = client
        .refund(&refund("rr-many", "RM-50", 100, 1))
        .await
        .unwrap_err();
    assert_eq!(business(&err).0, &ErrCode::Error, "{err}");
}

async fn post_xml(http: &reqwest::Client, url: &Url, body: String) -> Fields {
    let response = http.post(url.clone()).body(body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    xml::decode(&response.bytes().await.unwrap()).unwrap()
}

#[tokio::test]
async fn the_same_out_refund_no_is_the_same_refund() {
    let sandbox = TestSandbox::start_tls_with(|_| {});
    let client = sandbox.tls_client();
    sandbox.paid_order(&client, "rs-1", 1000).await;
    sandbox.paid_order(&client, "rs-2", 1000).await;
    let first = client
        .refund(&refund("rs-1", "RS-1", 1000, 300))
        .await
        .unwrap();
    let again = client
        .refund(&refund("rs-1", "RS-1", 1000, 300))
        .await
        .unwrap();
    assert_eq!(again, first);
    // Also once it settled.
    settled_refunds(&client, "rs-1").await;
    let later = client
        .refund(&refund("rs-1", "RS-1", 1000, 300))
        .await
        .unwrap();
    assert_eq!(later, first);
    // Another amount under the same number is refused, and so is the number on another order.
    let err = client
        .refund(&refund("rs-1", "RS-1", 1000, 400))
        .await
        .unwrap_err();
    assert_eq!(business(&err).0, &ErrCode::InvalidRequest, "{err}");
    let err = client
        .refund(&refund("rs-2", "RS-1", 1000, 300))
        .await
        .unwrap_err();
    assert_eq!(business(&err).0, &ErrCode::InvalidRequest, "{err}");

    let listed = client.refund_query("rs-1").await.unwrap();
    assert_eq!(listed.refunds.len(), 1, "{listed:?}");
    assert_eq!(listed.refunds[0].refund_id, first.refund_id);
    assert_eq!(
        client.refund_query("rs-2").await.unwrap_err().err_code(),
        Some(&ErrCode::RefundNotExist)
    );
    assert_eq!(sandbox.json("sandbox/stats").await["refund"], 5);
}

#[tokio::test]
async fn a_refund_needs_the_merchant_certificate() {
    let sandbox = TestSandbox::start_tls_with(|_| {});
    let client = sandbox.tls_client();
    sandbox.paid_order(&client, "rc-1", 1000).await;
    let nonce = nonce_str();
    let request = hand_signed(
        &[
            ("appid", SANDBOX_APPID),
            ("mch_id", SANDBOX_MCH_ID),
            ("nonce_str", nonce.as_str()),
            ("out_trade_no", "rc-1"),
            ("out_refund_no", "RC-1"),
            ("total_fee", "1000"),
            ("refund_fee", "1000"),
        ],
        SANDBOX_KEY,
        false,
    );

    // Trusting the sandbox CA but presenting no certificate: the handshake fails.
    let anonymous = tls_http(&sandbox, false)
        .post(secapi_url(&sandbox))
        .body(request.clone())
        .send()
        .await;
    assert!(anonymous.is_err(), "{anonymous:?}");
    // On the plain listener: refused, unsigned, nothing done.
    let plain = sandbox.post_raw("secapi/pay/refund", request.clone()).await;
    assert_eq!(plain["return_code"], "FAIL", "{plain:?}");
    assert_eq!(
        plain["return_msg"], "证书错误，请使用商户API证书通过HTTPS访问",
        "{plain:?}"
    );
    assert!(!plain.contains_key("sign"));
    let get = sandbox
        .http
        .get(sandbox.url("secapi/pay/refund"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        xml::decode(&get).unwrap()["return_code"],
        "FAIL",
        "GET is refused"
    );
    assert_eq!(
        client.refund_query("rc-1").await.unwrap_err().err_code(),
        Some(&ErrCode::RefundNotExist)
    );

    // The same request with the certificate is a refund.
    let answer = post_xml(&tls_http(&sandbox, true), &secapi_url(&sandbox), request).await;
    assert_eq!(answer["result_code"], "SUCCESS", "{answer:?}");
    assert_eq!(client.refund_query("rc-1").await.unwrap().refunds.len(), 1);
    assert_eq!(sandbox.json("sandbox/stats").await["refund"], 2);
}

#[tokio::test]
async fn a_client_based_on_the_tls_listener_makes_every_call_there() {
    // WEIXIN_API_BASE=https://… (the sandbox's TLS listener, which asks every connection for the
    // certificate): the order calls offer the certificate too, not only the refund.
    let sandbox = TestSandbox::start_tls_with(|_| {});
    let (tls_base, credentials) = sandbox.tls.clone().expect("a sandbox with TLS");
    let mut config = ClientConfig::new(tls_base.clone(), demo_merchant(), SignType::Md5);
    config.extra_root_pem = Some(credentials.ca_pem);
    config.secapi = Some(SecApi {
        base_url: tls_base,
        cert: credentials.merchant,
    });
    let client = Client::new(config, &AppRuntime::current()).unwrap();

    let tid = sandbox.paid_order(&client, "tb-1", 1000).await;
    let query = client.order_query("tb-1").await.unwrap();
    assert_eq!(query.trade_state, TradeState::Success);
    assert_eq!(query.transaction_id.as_deref(), Some(tid.as_str()));
    client
        .refund(&refund("tb-1", "TB-1", 1000, 400))
        .await
        .unwrap();
    assert_eq!(client.refund_query("tb-1").await.unwrap().refunds.len(), 1);
}

#[tokio::test]
async fn a_refund_notify_is_delivered_encrypted_until_acknowledged() {
    let sandbox = TestSandbox::start_tls_with(|_| {});
    let client = sandbox.tls_client();
    let receiver = RefundReceiver::start(1);
    let tid = sandbox.paid_order(&client, "rn-1", 2500).await;
    let accepted = client
        .refund(&notified(refund("rn-1", "RN-1", 2500, 800), &receiver.url))
        .await
        .unwrap();

    assert!(wait_until(DEADLINE, || receiver.count() >= 2).await);
    // The sandbox records the acknowledgement before its delivery loop ends.
    let until = tokio::time::Instant::now() + DEADLINE;
    while refund_view(&sandbox, "rn-1", "RN-1").await["notify_acknowledged"] != true {
        assert!(tokio::time::Instant::now() < until, "never acknowledged");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Unacknowledged, a third delivery would follow within 30 ms (15 s of the schedule).
    assert!(!wait_until(Duration::from_millis(300), || receiver.count() > 2).await);
    assert_eq!(
        refund_view(&sandbox, "rn-1", "RN-1").await["notify_attempts"],
        2
    );
    assert_eq!(
        sandbox.json("sandbox/stats").await["refund_notify_attempts"],
        2
    );

    let notices = receiver.notices();
    assert_eq!(notices[0], notices[1], "the same notice, retried");
    let notice = &notices[0];
    assert_eq!(
        (
            notice.out_trade_no.as_str(),
            notice.transaction_id.as_str(),
            notice.out_refund_no.as_str(),
            notice.refund_id.as_str(),
        ),
        ("rn-1", tid.as_str(), "RN-1", accepted.refund_id.as_str())
    );
    assert_eq!(
        (
            notice.total_fee,
            notice.refund_fee,
            notice.settlement_refund_fee
        ),
        (2500, 800, Some(800))
    );
    assert_eq!(notice.status, RefundStatus::Success);
    assert_eq!(notice.refund_recv_accout.as_deref(), Some("支付用户零钱"));
    let listed = client.refund_query("rn-1").await.unwrap();
    assert_eq!(notice.success_time, listed.refunds[0].success_time);
    assert!(notice.success_time.is_some());
}

#[tokio::test]
async fn the_built_in_sandbox_notifies_refunds_only_to_its_shop() {
    let shop = Url::parse("http://127.0.0.1:9/weixin/pay/refund/notify").unwrap();
    let only = shop.clone();
    let sandbox = TestSandbox::start_tls_with(move |c| c.refund_notify_only = Some(only));
    let client = sandbox.tls_client();
    sandbox.paid_order(&client, "ro-1", 1000).await;
    let elsewhere = Url::parse("http://127.0.0.1:9/elsewhere").unwrap();
    let err = client
        .refund(&notified(refund("ro-1", "RO-1", 1000, 100), &elsewhere))
        .await
        .unwrap_err();
    assert!(matches!(err, WxError::ReturnFail { .. }), "{err}");
    client
        .refund(&notified(refund("ro-1", "RO-1", 1000, 100), &shop))
        .await
        .unwrap();
    client
        .refund(&refund("ro-1", "RO-2", 1000, 100))
        .await
        .unwrap();
    assert_eq!(client.refund_query("ro-1").await.unwrap().refunds.len(), 2);
}

#[tokio::test]
async fn faults_end_refunds_changed_closed_or_unnotified() {
    let sandbox = TestSandbox::start_tls_with(|_| {});
    let client = sandbox.tls_client();
    let receiver = RefundReceiver::start(0);

    sandbox
        .set_faults(serde_json::json!({ "refund_change": 1.0 }))
        .await;
    sandbox.paid_order(&client, "rx-change", 1000).await;
    client
        .refund(&notified(
            refund("rx-change", "RX-C", 1000, 1000),
            &receiver.url,
        ))
        .await
        .unwrap();
    let answer = settled_refunds(&client, "rx-change").await;
    assert_eq!(answer.refunds[0].status, RefundStatus::Change);
    assert_eq!(answer.refunds[0].success_time, None);
    assert!(wait_until(DEADLINE, || receiver.count() >= 1).await);
    assert_eq!(receiver.notices()[0].status, RefundStatus::Change);

    sandbox
        .set_faults(serde_json::json!({ "refund_close": 1.0 }))
        .await;
    sandbox.paid_order(&client, "rx-close", 1000).await;
    client
        .refund(&refund("rx-close", "RX-X1", 1000, 1000))
        .await
        .unwrap();
    let answer = settled_refunds(&client, "rx-close").await;
    assert_eq!(answer.refunds[0].status, RefundStatus::RefundClose);
    // A closed refund gave nothing back: the amount can be refunded again.
    sandbox.set_faults(serde_json::json!({})).await;
    client
        .refund(&refund("rx-close", "RX-X2", 1000, 1000))
        .await
        .unwrap();
    let answer = settled_refunds(&client, "rx-close").await;
    let statuses: Vec<_> = answer.refunds.iter().map(|r| r.status.clone()).collect();
    assert_eq!(statuses, [RefundStatus::RefundClose, RefundStatus::Success]);

    sandbox
        .set_faults(serde_json::json!({ "drop_refund_notify": 1.0 }))
        .await;
    sandbox.paid_order(&client, "rx-drop", 1000).await;
    client
        .refund(&notified(
            refund("rx-drop", "RX-D", 1000, 400),
            &receiver.url,
        ))
        .await
        .unwrap();
    let until = tokio::time::Instant::now() + DEADLINE;
    while refund_view(&sandbox, "rx-drop", "RX-D").await["notify_attempts"]
        .as_u64()
        .unwrap()
        < 3
    {
        assert!(tokio::time::Instant::now() < until, "fewer than 3 attempts");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        receiver.notices().iter().all(|n| n.out_refund_no != "RX-D"),
        "every delivery was dropped"
    );
    assert_eq!(
        settled_refunds(&client, "rx-drop").await.refunds[0].status,
        RefundStatus::Success
    );
    assert!(
        sandbox.json("sandbox/stats").await["refund_notify_attempts"]
            .as_u64()
            .unwrap()
            >= 4
    );
}

#[tokio::test]
async fn refused_refunds_leave_nothing_and_the_same_number_succeeds_later() {
    let sandbox = TestSandbox::start_tls_with(|_| {});
    let client = sandbox.tls_client();
    sandbox.paid_order(&client, "rf-1", 1000).await;
    for (faults, code) in [
        (
            serde_json::json!({ "refund_not_enough": 1.0 }),
            ErrCode::NotEnough,
        ),
        (
            serde_json::json!({ "refund_account_abnormal": 1.0 }),
            ErrCode::UserAccountAbnormal,
        ),
        (
            serde_json::json!({ "refund_frequency_limited": 1.0 }),
            ErrCode::FrequencyLimited,
        ),
        (
            serde_json::json!({ "system_error": 1.0 }),
            ErrCode::SystemError,
        ),
    ] {
        sandbox.set_faults(faults).await;
        let err = client
            .refund(&refund("rf-1", "RF-1", 1000, 1000))
            .await
            .unwrap_err();
        assert_eq!(business(&err).0, &code, "{err}");
        sandbox.set_faults(serde_json::json!({})).await;
        assert_eq!(
            client.refund_query("rf-1").await.unwrap_err().err_code(),
            Some(&ErrCode::RefundNotExist)
        );
    }
    sandbox
        .set_faults(serde_json::json!({ "http_5xx": 1.0 }))
        .await;
    let err = client
        .refund(&refund("rf-1", "RF-1", 1000, 1000))
        .await
        .unwrap_err();
    assert!(
        matches!(err, WxError::HttpStatus { status: 503, .. }),
        "{err}"
    );

    sandbox.set_faults(serde_json::json!({})).await;
    client
        .refund(&refund("rf-1", "RF-1", 1000, 1000))
        .await
        .unwrap();
    assert_eq!(client.refund_query("rf-1").await.unwrap().refunds.len(), 1);
    assert_eq!(sandbox.json("sandbox/stats").await["refund"], 6);
}

#[tokio::test]
async fn a_lost_answer_still_refunded_and_the_retry_gets_the_same_refund() {
    let sandbox = TestSandbox::start_tls_with(|_| {});
    let patient = sandbox.tls_client();
    let hasty = sandbox.tls_client_with(SignType::Md5, Duration::from_millis(1500));
    sandbox.paid_order(&patient, "rt-1", 1000).await;

    sandbox
        .set_faults(serde_json::json!({ "timeout": 1.0 }))
        .await;
    let err = hasty
        .refund(&refund("rt-1", "RT-1", 1000, 700))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    sandbox.set_faults(serde_json::json!({})).await;
    // The refund was made although its answer was lost.
    let made = patient.refund_query("rt-1").await.unwrap();
    assert_eq!(made.refunds.len(), 1);
    assert_eq!(made.refunds[0].refund_fee, 700);

    let retried = patient
        .refund(&refund("rt-1", "RT-1", 1000, 700))
        .await
        .unwrap();
    assert_eq!(retried.refund_id, made.refunds[0].refund_id);
    let listed = settled_refunds(&patient, "rt-1").await;
    assert_eq!(listed.refunds.len(), 1, "{listed:?}");
    assert_eq!(listed.refunds[0].status, RefundStatus::Success);
}
