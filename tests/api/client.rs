//! The WeChat Pay client against a real local HTTP server that plays WeChat's side with
//! scripted answers (the built-in sandbox replaces it for end-to-end tests).

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use secrecy::SecretString;
use url::Url;
use wxpay_checkout::rt::AppRuntime;
use wxpay_checkout::wxpay::client::ResponseProblem;
use wxpay_checkout::wxpay::types::{Trade, UnifiedOrderRequest};
use wxpay_checkout::wxpay::{
    sign, xml, Client, ClientConfig, ErrCode, Fields, Merchant, RetryPolicy, SignType, TradeState,
    VerifyError, WxError,
};

const APPID: &str = "wxd930ea5d5a258f4f";
const MCH_ID: &str = "10000100";
const KEY: &str = "192006250b4c09247ec02edce69f6a2d";

fn key() -> SecretString {
    SecretString::from(KEY)
}

/// What the scripted server answers next.
#[derive(Clone, Debug)]
enum Script {
    /// A correct, signed success answer.
    Ok,
    /// A signed answer with one field changed afterwards.
    Tampered,
    /// A success answer without a sign.
    Unsigned,
    /// A signed answer for another merchant.
    OtherMerchant,
    /// `return_code=FAIL`, unsigned, as WeChat does.
    ReturnFail(&'static str),
    /// `result_code=FAIL` with this err_code, signed.
    Business(&'static str),
    /// HTTP 502 from a proxy.
    BadGateway,
    /// Answer after this long.
    Slow(Duration),
}

#[derive(Default)]
struct Recorded {
    /// Scripted answers, one per request; `Ok` once they run out.
    script: Vec<Script>,
    /// Every request received, decoded.
    requests: Vec<Fields>,
}

#[derive(Clone)]
struct FakeWechat {
    state: Arc<Mutex<Recorded>>,
    base: Url,
}

impl FakeWechat {
    async fn start(script: Vec<Script>) -> FakeWechat {
        let state = Arc::new(Mutex::new(Recorded {
            script: script.into_iter().rev().collect(),
            requests: Vec::new(),
        }));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/pay/{api}", web::post().to(answer))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        FakeWechat { state, base }
    }

    fn client(&self, sign_type: SignType) -> Client {
        let mut config = ClientConfig::new(
            self.base.clone(),
            Merchant {
                appid: APPID.into(),
                mch_id: MCH_ID.into(),
                key: key(),
            },
            sign_type,
        );
        config.timeout = Duration::from_millis(500);
        config.retry = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
        };
        Client::new(config, &AppRuntime::current()).unwrap()
    }

    fn requests(&self) -> Vec<Fields> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn signed(mut fields: Fields, sign_type: SignType) -> String {
    fields.insert("sign".into(), sign::sign(&fields, &key(), sign_type));
    xml::encode(&fields)
}

async fn answer(
    api: web::Path<String>,
    body: web::Bytes,
    state: web::Data<Arc<Mutex<Recorded>>>,
) -> HttpResponse {
    let request = xml::decode(&body).expect("the client sends well-formed XML");
    let sign_type: SignType = request["sign_type"].parse().unwrap();
    let script = {
        let mut state = state.lock().unwrap();
        state.requests.push(request.clone());
        state.script.pop().unwrap_or(Script::Ok)
    };
    // The server checks what a real one checks before anything else.
    if sign::verify(&request, &key(), sign_type).is_err() {
        return xml_response(xml::encode_pairs([
            ("return_code", "FAIL"),
            ("return_msg", "签名错误"),
        ]));
    }
    let mut fields: Fields = [
        ("return_code", "SUCCESS"),
        ("return_msg", "OK"),
        ("appid", APPID),
        ("mch_id", MCH_ID),
        ("nonce_str", "6YTwy4nJWbEUdSEF"),
        ("result_code", "SUCCESS"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let out_trade_no = request["out_trade_no"].clone();
    match api.as_str() {
        "unifiedorder" => {
            fields.insert("trade_type".into(), "NATIVE".into());
            fields.insert(
                "prepay_id".into(),
                "wx201411101639507cbf6ffd8b0779950874".into(),
            );
            fields.insert(
                "code_url".into(),
                "weixin://wxpay/bizpayurl?pr=AbCdEf1".into(),
            );
        }
        "orderquery" => {
            fields.insert("out_trade_no".into(), out_trade_no);
            fields.insert("trade_state".into(), "NOTPAY".into());
            fields.insert("trade_state_desc".into(), "订单未支付".into());
        }
        _ => {}
    }
    match script {
        Script::Ok => xml_response(signed(fields, sign_type)),
        Script::Tampered => {
            let mut doc = xml::decode(signed(fields, sign_type).as_bytes()).unwrap();
            doc.insert("nonce_str".into(), "tampered".into());
            xml_response(xml::encode(&doc))
        }
        Script::Unsigned => xml_response(xml::encode(&fields)),
        Script::OtherMerchant => {
            fields.insert("mch_id".into(), "99999999".into());
            xml_response(signed(fields, sign_type))
        }
        Script::ReturnFail(msg) => xml_response(xml::encode_pairs([
            ("return_code", "FAIL"),
            ("return_msg", msg),
        ])),
        Script::Business(code) => {
            fields.insert("result_code".into(), "FAIL".into());
            fields.insert("err_code".into(), code.into());
            fields.insert("err_code_des".into(), "scripted".into());
            fields.remove("trade_state");
            xml_response(signed(fields, sign_type))
        }
        Script::BadGateway => HttpResponse::BadGateway().finish(),
        Script::Slow(delay) => {
            tokio::time::sleep(delay).await;
            xml_response(signed(fields, sign_type))
        }
    }
}

fn xml_response(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/xml; charset=utf-8")
        .body(body)
}

fn unified_order() -> UnifiedOrderRequest {
    UnifiedOrderRequest {
        body: "龙井茶 x1".into(),
        out_trade_no: "20261128120000000123456789012".into(),
        total_fee: 1250,
        spbill_create_ip: "127.0.0.1".into(),
        notify_url: "http://127.0.0.1:8080/weixin/pay/notify/url".into(),
        trade: Trade::Native {
            product_id: "1".into(),
        },
        attach: None,
        time_start: Some("20261128200000".into()),
        time_expire: Some("20261128201000".into()),
    }
}

#[tokio::test]
async fn signed_requests_are_accepted_with_both_algorithms() {
    let wechat = FakeWechat::start(vec![]).await;
    for sign_type in [SignType::Md5, SignType::HmacSha256] {
        let client = wechat.client(sign_type);
        let prepay = client.unified_order(&unified_order()).await.unwrap();
        assert_eq!(
            prepay.code_url.as_deref(),
            Some("weixin://wxpay/bizpayurl?pr=AbCdEf1")
        );
        let query = client.order_query("o-1").await.unwrap();
        assert_eq!(query.trade_state, TradeState::NotPay);
        client.close_order("o-1").await.unwrap();
    }
    let requests = wechat.requests();
    assert_eq!(requests.len(), 6);
    let first = &requests[0];
    assert_eq!(first["trade_type"], "NATIVE");
    assert_eq!(first["total_fee"], "1250");
    assert_eq!(first["body"], "龙井茶 x1");
    assert_eq!(first["appid"], APPID);
    assert_eq!(first["nonce_str"].len(), 32);
    assert_eq!(requests[3]["sign_type"], "HMAC-SHA256");
    assert_eq!(requests[3]["sign"].len(), 64);
}

#[tokio::test]
async fn tampered_unsigned_and_foreign_answers_are_rejected() {
    let wechat = FakeWechat::start(vec![
        Script::Tampered,
        Script::Unsigned,
        Script::OtherMerchant,
    ])
    .await;
    let client = wechat.client(SignType::Md5);
    let err = client.order_query("o-1").await.unwrap_err();
    assert!(
        matches!(
            err,
            WxError::InvalidResponse {
                problem: ResponseProblem::Signature(VerifyError::Mismatch),
                ..
            }
        ),
        "{err}"
    );
    let err = client.order_query("o-1").await.unwrap_err();
    assert!(
        matches!(
            err,
            WxError::InvalidResponse {
                problem: ResponseProblem::Signature(VerifyError::Missing),
                ..
            }
        ),
        "{err}"
    );
    let err = client.order_query("o-1").await.unwrap_err();
    assert!(
        matches!(
            err,
            WxError::InvalidResponse {
                problem: ResponseProblem::Mismatch("mch_id"),
                ..
            }
        ),
        "{err}"
    );
    // An answer that cannot be trusted is not retried as if it were a transport failure.
    assert_eq!(wechat.requests().len(), 3);
}

#[tokio::test]
async fn fail_answers_map_to_their_level() {
    let wechat = FakeWechat::start(vec![
        Script::ReturnFail("签名错误"),
        Script::Business("ORDERPAID"),
        Script::Business("ORDERNOTEXIST"),
        Script::Business("A_CODE_FROM_THE_FUTURE"),
    ])
    .await;
    let client = wechat.client(SignType::Md5);
    match client.unified_order(&unified_order()).await.unwrap_err() {
        WxError::ReturnFail { return_msg, .. } => assert_eq!(return_msg, "签名错误"),
        other => panic!("{other}"),
    }
    let err = client.close_order("o-1").await.unwrap_err();
    assert_eq!(err.err_code(), Some(&ErrCode::OrderPaid));
    assert!(!err.is_transient());
    let err = client.order_query("o-1").await.unwrap_err();
    assert_eq!(err.err_code(), Some(&ErrCode::OrderNotExist));
    let err = client.order_query("o-1").await.unwrap_err();
    assert_eq!(
        err.err_code(),
        Some(&ErrCode::Other("A_CODE_FROM_THE_FUTURE".into()))
    );
    assert_eq!(wechat.requests().len(), 4);
}

#[tokio::test]
async fn a_server_that_does_not_answer_in_time_hits_the_timeout() {
    let wechat = FakeWechat::start(vec![Script::Slow(Duration::from_secs(3))]).await;
    let client = wechat.client(SignType::Md5);
    let started = std::time::Instant::now();
    let err = client.unified_order(&unified_order()).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(err.is_transient());
    assert!(started.elapsed() < Duration::from_secs(2));
    // A unifiedorder that may have reached WeChat is never sent again by the client.
    assert_eq!(wechat.requests().len(), 1);
}

#[tokio::test]
async fn queries_retry_system_errors_and_gateway_failures_then_succeed() {
    let wechat = FakeWechat::start(vec![Script::Business("SYSTEMERROR"), Script::BadGateway]).await;
    let client = wechat.client(SignType::Md5);
    let query = client.order_query("o-7").await.unwrap();
    assert_eq!(query.out_trade_no, "o-7");
    let requests = wechat.requests();
    assert_eq!(requests.len(), 3);
    // Each attempt is freshly signed.
    assert_ne!(requests[0]["nonce_str"], requests[1]["nonce_str"]);
}

#[tokio::test]
async fn retries_are_bounded() {
    let wechat = FakeWechat::start(vec![Script::Business("SYSTEMERROR"); 5]).await;
    let client = wechat.client(SignType::Md5);
    let err = client.close_order("o-8").await.unwrap_err();
    assert_eq!(err.err_code(), Some(&ErrCode::SystemError));
    assert_eq!(wechat.requests().len(), 3);
}

#[tokio::test]
async fn unified_order_is_not_retried_after_a_system_error() {
    let wechat = FakeWechat::start(vec![Script::Business("SYSTEMERROR")]).await;
    let client = wechat.client(SignType::Md5);
    let err = client.unified_order(&unified_order()).await.unwrap_err();
    assert!(err.is_transient());
    assert_eq!(wechat.requests().len(), 1);
}

#[tokio::test]
async fn a_refused_connection_is_a_transient_transport_error() {
    // Reserve a port, then close it: connecting is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = ClientConfig::new(
        Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap(),
        Merchant {
            appid: APPID.into(),
            mch_id: MCH_ID.into(),
            key: key(),
        },
        SignType::Md5,
    );
    config.retry.base_delay = Duration::from_millis(5);
    let client = Client::new(config, &AppRuntime::current()).unwrap();
    let err = client.unified_order(&unified_order()).await.unwrap_err();
    assert!(matches!(err, WxError::Transport { .. }), "{err}");
    assert!(err.is_transient() && !err.is_timeout());
}
