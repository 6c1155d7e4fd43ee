//! The sandbox's daily bill (`/pay/downloadbill`): made from the trades and refunds it holds,
//! downloaded with the crate's client and judged by the shop's own reader of WeChat's format
//! (plain and GZIP), byte for byte against WeChat's text where it matters, its refusals, and
//! the bill faults.

use std::time::Duration;

use chrono::{NaiveDate, Utc};
use wxpay_checkout::config::{SANDBOX_APPID, SANDBOX_MCH_ID};
use wxpay_checkout::wxpay::bill::{gunzip, Bill, BillRequest, BillType};
use wxpay_checkout::wxpay::refund::RefundRequest;
use wxpay_checkout::wxpay::time::{beijing_date, beijing_midnight, parse_beijing};
use wxpay_checkout::wxpay::{
    nonce_str, sign, xml, Client, Fields, Merchant, RefundStatus, SignType, TradeState, WxError,
};

use crate::helpers::{demo_merchant, native_order, settled_refunds, TestSandbox};

const ALL_HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";
const SUCCESS_HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,商品名称,商户数据包,手续费,费率,订单金额,费率备注";
const SUMMARY_HEADER: &str =
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额";

/// Moves the sandbox's clock to the next Beijing noon and returns that day: the test's trades
/// fall on it, whenever the test runs, far from the day's edges.
async fn at_noon(sandbox: &TestSandbox) -> NaiveDate {
    let now = Utc::now();
    let mut noon = beijing_midnight(beijing_date(now)) + chrono::Duration::hours(12);
    if noon <= now {
        noon += chrono::Duration::days(1);
    }
    sandbox.advance_clock((noon - now).num_seconds()).await;
    beijing_date(noon)
}

async fn download(
    client: &Client,
    day: NaiveDate,
    bill_type: BillType,
    gzip: bool,
) -> Result<Option<Bill>, WxError> {
    client
        .download_bill(&BillRequest {
            bill_date: day,
            bill_type,
            gzip,
        })
        .await
}

/// The day's bill, which must exist.
async fn bill(client: &Client, day: NaiveDate, bill_type: BillType) -> Bill {
    download(client, day, bill_type, false)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no {bill_type:?} bill for {day}"))
}

fn return_msg(err: &WxError) -> &str {
    match err {
        WxError::ReturnFail { return_msg, .. } => return_msg,
        other => panic!("not a return_code=FAIL: {other}"),
    }
}

/// A download request signed here (with the crate's signing), `pairs` besides the merchant's
/// fields and the nonce.
fn signed_request(pairs: &[(&str, &str)], merchant: &Merchant, sign_type: SignType) -> String {
    let mut fields: Fields = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    fields.insert("appid".into(), SANDBOX_APPID.into());
    fields.insert("mch_id".into(), SANDBOX_MCH_ID.into());
    fields.insert("nonce_str".into(), nonce_str());
    if sign_type == SignType::HmacSha256 {
        fields.insert("sign_type".into(), sign_type.as_str().into());
    }
    let signature = sign::sign(&fields, &merchant.key, sign_type);
    fields.insert("sign".into(), signature);
    xml::encode(&fields)
}

/// POSTs a request to `/pay/downloadbill`: the content type and the bytes of the answer.
async fn post_bill(sandbox: &TestSandbox, body: String) -> (String, Vec<u8>) {
    let response = sandbox
        .http
        .post(sandbox.url("pay/downloadbill"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (content_type, response.bytes().await.unwrap().to_vec())
}

/// The unsigned refusal of a hand-signed request.
async fn refusal(sandbox: &TestSandbox, pairs: &[(&str, &str)]) -> Fields {
    let (_, bytes) = post_bill(
        sandbox,
        signed_request(pairs, &demo_merchant(), SignType::Md5),
    )
    .await;
    let answer = xml::decode(&bytes).unwrap();
    assert_eq!(answer["return_code"], "FAIL", "{answer:?}");
    assert!(!answer.contains_key("sign"), "{answer:?}");
    answer
}

/// Pays `no` with a coupon of `coupon_fee` fen paying part of it.
async fn paid_with_coupon(sandbox: &TestSandbox, client: &Client, no: &str, total_fee: i64) {
    let prepay = client
        .unified_order(&native_order(no, total_fee))
        .await
        .unwrap();
    let response = sandbox
        .http
        .post(sandbox.url("sandbox/pay"))
        .json(&serde_json::json!({ "code_url": prepay.code_url, "coupon_fee": 300 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// The merchant refunds `no` in full in the merchant platform: a refund that is `SUCCESS` at
/// once, numbered `MP{no}01`.
async fn refunded_in_the_platform(sandbox: &TestSandbox, no: &str) {
    let response = sandbox
        .http
        .post(sandbox.url("sandbox/refund"))
        .json(&serde_json::json!({ "out_trade_no": no }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

fn refund(no: &str, out_refund_no: &str, total_fee: i64, refund_fee: i64) -> RefundRequest {
    RefundRequest {
        out_trade_no: no.into(),
        out_refund_no: out_refund_no.into(),
        total_fee,
        refund_fee,
        refund_desc: None,
        notify_url: None,
    }
}

/// A bill's lines as (out_trade_no, trade_state, total_fee, settlement_fee, coupon_fee, the
/// refund's out_refund_no, refund_fee and status), sorted for comparison (`REFUND` lines before
/// `SUCCESS` ones of the same order).
type Seen = (String, String, i64, i64, i64, Option<(String, i64, String)>);

fn seen(bill: &Bill) -> Vec<Seen> {
    let mut lines: Vec<Seen> = bill
        .lines
        .iter()
        .map(|l| {
            (
                l.out_trade_no.clone(),
                l.trade_state.to_string(),
                l.total_fee,
                l.settlement_fee,
                l.coupon_fee,
                l.refund
                    .as_ref()
                    .map(|r| (r.out_refund_no.clone(), r.refund_fee, r.status.to_string())),
            )
        })
        .collect();
    lines.sort();
    lines
}

fn paid(no: &str, total_fee: i64, settlement: i64, coupon: i64) -> Seen {
    (
        no.into(),
        "SUCCESS".into(),
        total_fee,
        settlement,
        coupon,
        None,
    )
}

fn refunded(no: &str, out_refund_no: &str, refund_fee: i64, status: RefundStatus) -> Seen {
    (
        no.into(),
        "REFUND".into(),
        0,
        0,
        0,
        Some((out_refund_no.into(), refund_fee, status.to_string())),
    )
}

#[tokio::test]
async fn the_days_bill_lists_its_payments_and_refunds_as_the_shop_reads_them() {
    // At the real time scale a refund stays PROCESSING for the whole test.
    let sandbox = TestSandbox::start_tls_with(|c| c.time_scale = 1.0);
    let day = at_noon(&sandbox).await;
    let client = sandbox.tls_client();
    let tid1 = sandbox.paid_order(&client, "bl-1", 2500).await;
    paid_with_coupon(&sandbox, &client, "bl-2", 1000).await;
    let tid3 = sandbox.paid_order(&client, "bl-3", 1).await;
    let accepted = client
        .refund(&refund("bl-1", "BL-1a", 2500, 800))
        .await
        .unwrap();
    refunded_in_the_platform(&sandbox, "bl-3").await;
    client
        .unified_order(&native_order("bl-unpaid", 500))
        .await
        .unwrap();

    let all = bill(&client, day, BillType::All).await;
    assert_eq!(
        seen(&all),
        [
            refunded("bl-1", "BL-1a", 800, RefundStatus::Processing),
            paid("bl-1", 2500, 2500, 0),
            paid("bl-2", 1000, 700, 300),
            refunded("bl-3", "MPbl-301", 1, RefundStatus::Success),
            paid("bl-3", 1, 1, 0),
        ]
    );
    for line in &all.lines {
        assert_eq!(line.trade_type, "NATIVE");
        assert_eq!(beijing_date(line.time), day);
        let tid = match line.out_trade_no.as_str() {
            "bl-1" => &tid1,
            "bl-3" => &tid3,
            _ => continue,
        };
        assert_eq!(&line.transaction_id, tid, "{line:?}");
    }
    let refund_line = all
        .lines
        .iter()
        .find_map(|l| l.refund.as_ref().filter(|r| r.out_refund_no == "BL-1a"))
        .unwrap();
    assert_eq!(refund_line.refund_id, accepted.refund_id);
    assert!(
        all.lines
            .windows(2)
            .all(|w| (w[0].time, &w[0].out_trade_no) <= (w[1].time, &w[1].out_trade_no)),
        "sorted by time, then out_trade_no: {:?}",
        all.lines
    );
    // 0.6 % in whole fen: 15 + 4 (of the 7.00 settled) + 0 − 5 − 0.
    assert_eq!(
        (
            all.summary.trades,
            all.summary.settlement_total,
            all.summary.refund_total,
            all.summary.charges,
            all.summary.order_total,
            all.summary.requested_refund_total,
        ),
        (5, 3201, 801, 14_000, Some(3501), Some(801))
    );
    let charges: Vec<_> = all.lines.iter().map(|l| l.charge).collect();
    assert!(
        charges.contains(&15_000) && charges.contains(&-5_000),
        "{charges:?}"
    );

    // The same bill GZIP-compressed.
    let gzipped = download(&client, day, BillType::All, true).await.unwrap();
    assert_eq!(gzipped.as_ref(), Some(&all));

    let success = bill(&client, day, BillType::Success).await;
    assert_eq!(
        seen(&success),
        [
            paid("bl-1", 2500, 2500, 0),
            paid("bl-2", 1000, 700, 300),
            paid("bl-3", 1, 1, 0),
        ]
    );
    assert_eq!(success.summary.refund_total, 0);
    let refunds = bill(&client, day, BillType::Refund).await;
    assert_eq!(
        seen(&refunds),
        [
            refunded("bl-1", "BL-1a", 800, RefundStatus::Processing),
            refunded("bl-3", "MPbl-301", 1, RefundStatus::Success),
        ]
    );
    assert_eq!(sandbox.json("sandbox/stats").await["downloadbill"], 4);
}

#[tokio::test]
async fn the_bill_is_wechats_text_to_the_byte() {
    let sandbox = TestSandbox::start_tls_with(|_| {});
    let day = at_noon(&sandbox).await;
    let client = sandbox.tls_client();
    let tid = sandbox.paid_order(&client, "bx-1", 10000).await;
    let query = client.order_query("bx-1").await.unwrap();
    let time_end = parse_beijing(query.time_end.as_deref().unwrap()).unwrap();
    let time = time_end
        .with_timezone(&wxpay_checkout::wxpay::time::beijing())
        .format("%Y-%m-%d %H:%M:%S");
    let openid = query.openid.unwrap();
    let bank_type = query.bank_type.unwrap();
    let bill_date = day.format("%Y%m%d").to_string();

    let request = [("bill_date", bill_date.as_str()), ("bill_type", "ALL")];
    let (content_type, bytes) = post_bill(
        &sandbox,
        signed_request(&request, &demo_merchant(), SignType::Md5),
    )
    .await;
    assert_eq!(content_type, "text/plain;charset=utf-8");
    let expected = format!(
        "{ALL_HEADER}\r\n\
         `{time},`{SANDBOX_APPID},`{SANDBOX_MCH_ID},`0,`,`{tid},`bx-1,`{openid},`NATIVE,`SUCCESS,\
         `{bank_type},`CNY,`100.00,`0.00,`0,`0,`0.00,`0.00,`,`,`龙井茶,`,`0.60000,`0.60%,`100.00,\
         `0.00,`\r\n\
         {SUMMARY_HEADER}\r\n\
         `1,`100.00,`0.00,`0.00,`0.60000,`100.00,`0.00\r\n"
    );
    assert_eq!(String::from_utf8(bytes.clone()).unwrap(), expected);

    // GZIP: the same bytes compressed.
    let request = [
        ("bill_date", bill_date.as_str()),
        ("bill_type", "ALL"),
        ("tar_type", "GZIP"),
    ];
    let (content_type, packed) = post_bill(
        &sandbox,
        signed_request(&request, &demo_merchant(), SignType::HmacSha256),
    )
    .await;
    assert_eq!(content_type, "application/octet-stream");
    assert_eq!(&packed[..2], &[0x1f, 0x8b], "a GZIP member");
    assert_eq!(gunzip(&packed).unwrap(), bytes);

    // Without bill_type: the SUCCESS bill, with its own columns.
    let (_, bytes) = post_bill(
        &sandbox,
        signed_request(
            &[("bill_date", bill_date.as_str())],
            &demo_merchant(),
            SignType::Md5,
        ),
    )
    .await;
    let text = String::from_utf8(bytes).unwrap();
    let expected = format!(
        "{SUCCESS_HEADER}\r\n\
         `{time},`{SANDBOX_APPID},`{SANDBOX_MCH_ID},`0,`,`{tid},`bx-1,`{openid},`NATIVE,`SUCCESS,\
         `{bank_type},`CNY,`100.00,`0.00,`龙井茶,`,`0.60000,`0.60%,`100.00,`\r\n\
         {SUMMARY_HEADER}\r\n\
         `1,`100.00,`0.00,`0.00,`0.60000,`100.00,`0.00\r\n"
    );
    assert_eq!(text, expected);
}

#[tokio::test]
async fn days_without_a_bill_and_bad_requests_are_refused_as_wechat_refuses_them() {
    let sandbox = TestSandbox::start_tls_with(|_| {});
    let day = at_noon(&sandbox).await;
    let client = sandbox.tls_client();
    sandbox.paid_order(&client, "bn-1", 100).await;

    // No trades that day, or none of the type: no bill, and nothing wrong.
    let yesterday = day.pred_opt().unwrap();
    assert!(download(&client, yesterday, BillType::All, false)
        .await
        .unwrap()
        .is_none());
    for bill_type in [BillType::Refund, BillType::RechargeRefund] {
        assert!(download(&client, day, bill_type, true)
            .await
            .unwrap()
            .is_none());
    }
    let bill_date = |d: NaiveDate| d.format("%Y%m%d").to_string();
    let (_, bytes) = post_bill(
        &sandbox,
        signed_request(
            &[("bill_date", &bill_date(yesterday)), ("bill_type", "ALL")],
            &demo_merchant(),
            SignType::Md5,
        ),
    )
    .await;
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        "<xml><return_code><![CDATA[FAIL]]></return_code>\
         <return_msg><![CDATA[No Bill Exist]]></return_msg>\
         <error_code><![CDATA[20002]]></error_code></xml>"
    );

    // Tomorrow, and more than three months back.
    for when in [day.succ_opt().unwrap(), day - chrono::Duration::days(100)] {
        let err = download(&client, when, BillType::All, false)
            .await
            .unwrap_err();
        assert_eq!(return_msg(&err), "invalid bill_date", "{when}");
    }
    let today = bill_date(day);
    for (pairs, message) in [
        (vec![("bill_date", "20261131")], "invalid bill_date"),
        (vec![("bill_date", "2026-11-29")], "invalid bill_date"),
        (vec![("bill_date", "1129")], "invalid bill_date"),
        (
            vec![("bill_date", today.as_str()), ("bill_type", "PAID")],
            "invalid bill_type",
        ),
        (
            vec![("bill_date", today.as_str()), ("tar_type", "ZIP")],
            "invalid tar_type",
        ),
    ] {
        let answer = refusal(&sandbox, &pairs).await;
        assert_eq!(
            (answer["return_msg"].as_str(), answer["error_code"].as_str()),
            (message, "20001"),
            "{pairs:?}"
        );
    }
    // A missing bill_date is answered as every call answers a missing parameter.
    let answer = refusal(&sandbox, &[("bill_type", "ALL")]).await;
    assert_eq!(answer["return_msg"], "缺少参数bill_date");
    assert!(!answer.contains_key("error_code"), "{answer:?}");

    // A bad signature is refused before anything else.
    let stranger = Merchant {
        key: "0".repeat(32).into(),
        ..demo_merchant()
    };
    let (_, bytes) = post_bill(
        &sandbox,
        signed_request(&[("bill_date", today.as_str())], &stranger, SignType::Md5),
    )
    .await;
    let answer = xml::decode(&bytes).unwrap();
    assert_eq!(answer["return_code"], "FAIL");
    assert_eq!(answer["return_msg"], "签名错误，请检查后再试");
    assert!(!answer.contains_key("sign") && !answer.contains_key("error_code"));
    let get = sandbox
        .http
        .get(sandbox.url("pay/downloadbill"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(xml::decode(&get).unwrap()["return_msg"], "请使用post方法");
}

#[tokio::test]
async fn bill_faults_leave_out_raise_or_withhold_the_bill() {
    let sandbox = TestSandbox::start_tls_with(|_| {});
    let day = at_noon(&sandbox).await;
    let client = sandbox.tls_client();
    sandbox.paid_order(&client, "bf-1", 1000).await;
    sandbox.paid_order(&client, "bf-2", 2000).await;
    refunded_in_the_platform(&sandbox, "bf-2").await;
    let faithful = seen(&bill(&client, day, BillType::All).await);

    // A payment WeChat never settled: missing, and the summary agrees (the reader checks it).
    sandbox
        .set_faults(serde_json::json!({ "bill_omit_line": 1.0 }))
        .await;
    let omitted = bill(&client, day, BillType::All).await;
    assert_eq!(
        seen(&omitted),
        [refunded("bf-2", "MPbf-201", 2000, RefundStatus::Success)]
    );
    assert_eq!(
        (
            omitted.summary.trades,
            omitted.summary.settlement_total,
            omitted.summary.order_total
        ),
        (1, 0, Some(0))
    );
    assert!(download(&client, day, BillType::Success, false)
        .await
        .unwrap()
        .is_none());

    // Another amount: 1.00 yuan more in 订单金额 and 应结订单金额, the summary following.
    sandbox
        .set_faults(serde_json::json!({ "bill_alter_amount": 1.0 }))
        .await;
    let altered = bill(&client, day, BillType::All).await;
    let raised: Vec<Seen> = faithful
        .iter()
        .cloned()
        .map(|mut line| {
            if line.5.is_none() {
                line.2 += 100;
                line.3 += 100;
            }
            line
        })
        .collect();
    assert_eq!(seen(&altered), raised);
    assert_eq!(altered.summary.settlement_total, 3200);
    assert_eq!(altered.summary.order_total, Some(3200));

    // Not made yet.
    sandbox
        .set_faults(serde_json::json!({ "bill_creating": 1.0 }))
        .await;
    let err = download(&client, day, BillType::All, false)
        .await
        .unwrap_err();
    assert_eq!(return_msg(&err), "Bill Creating");
    let answer = refusal(
        &sandbox,
        &[("bill_date", &day.format("%Y%m%d").to_string())],
    )
    .await;
    assert_eq!(
        (answer["return_msg"].as_str(), answer["error_code"].as_str()),
        ("Bill Creating", "20003")
    );

    // The faults every call draws.
    sandbox
        .set_faults(serde_json::json!({ "system_error": 1.0 }))
        .await;
    let err = download(&client, day, BillType::All, false)
        .await
        .unwrap_err();
    assert_eq!(return_msg(&err), "SYSTEMERROR");
    sandbox
        .set_faults(serde_json::json!({ "http_5xx": 1.0 }))
        .await;
    let err = download(&client, day, BillType::All, false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, WxError::HttpStatus { status: 503, .. }),
        "{err}"
    );
    // The client waits long for a bill (a busy day's is tens of megabytes): a hasty caller
    // shows the answer held back.
    sandbox
        .set_faults(serde_json::json!({ "timeout": 1.0 }))
        .await;
    let lost = sandbox
        .http
        .post(sandbox.url("pay/downloadbill"))
        .timeout(Duration::from_millis(300))
        .body(signed_request(
            &[("bill_date", &day.format("%Y%m%d").to_string())],
            &demo_merchant(),
            SignType::Md5,
        ))
        .send()
        .await
        .unwrap_err();
    assert!(lost.is_timeout(), "{lost}");

    sandbox.set_faults(serde_json::json!({})).await;
    assert_eq!(seen(&bill(&client, day, BillType::All).await), faithful);
    assert_eq!(sandbox.json("sandbox/stats").await["downloadbill"], 10);
}

#[tokio::test]
async fn refund_lines_carry_the_status_at_the_download() {
    // Refunds settle 60 ms after they are accepted.
    let sandbox = TestSandbox::start_tls_with(|_| {});
    let day = at_noon(&sandbox).await;
    let client = sandbox.tls_client();
    for (no, out_refund_no, faults) in [
        (
            "bs-1",
            "BS-close",
            serde_json::json!({ "refund_close": 1.0 }),
        ),
        (
            "bs-2",
            "BS-change",
            serde_json::json!({ "refund_change": 1.0 }),
        ),
        ("bs-3", "BS-ok", serde_json::json!({})),
    ] {
        sandbox.set_faults(faults).await;
        sandbox.paid_order(&client, no, 1000).await;
        client
            .refund(&refund(no, out_refund_no, 1000, 400))
            .await
            .unwrap();
        settled_refunds(&client, no).await;
    }
    sandbox.set_faults(serde_json::json!({})).await;
    let refunds = bill(&client, day, BillType::Refund).await;
    assert_eq!(
        seen(&refunds),
        [
            refunded("bs-1", "BS-close", 400, RefundStatus::RefundClose),
            refunded("bs-2", "BS-change", 400, RefundStatus::Change),
            refunded("bs-3", "BS-ok", 400, RefundStatus::Success),
        ]
    );
    assert_eq!(
        client.order_query("bs-1").await.unwrap().trade_state,
        TradeState::Refund
    );
}
