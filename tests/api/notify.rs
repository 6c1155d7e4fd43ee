//! The payment notify against the real server: verified, durable, exactly once.

use std::time::Duration;

use wxpay_checkout::config::{SANDBOX_APPID, SANDBOX_KEY, SANDBOX_MCH_ID};
use wxpay_checkout::wxpay::{xml, Fields};

use crate::helpers::{hand_signed, hand_xml, TestApp};

pub fn notify_fields(no: &str, total_fee: i64, tid: &str) -> Vec<(&'static str, String)> {
    vec![
        ("appid", SANDBOX_APPID.into()),
        ("mch_id", SANDBOX_MCH_ID.into()),
        ("nonce_str", "5d2b6c2a8db53831f7eda20af46e531c".into()),
        ("return_code", "SUCCESS".into()),
        ("result_code", "SUCCESS".into()),
        ("openid", "oUpF8uMEb4qRXf22hE3X68TekukE".into()),
        ("is_subscribe", "N".into()),
        ("trade_type", "NATIVE".into()),
        ("bank_type", "CMC".into()),
        ("total_fee", total_fee.to_string()),
        ("cash_fee", total_fee.to_string()),
        ("fee_type", "CNY".into()),
        ("transaction_id", tid.into()),
        ("out_trade_no", no.into()),
        ("time_end", "20261128201513".into()),
    ]
}

pub fn signed(fields: &[(&'static str, String)], hmac: bool) -> String {
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    hand_signed(&pairs, SANDBOX_KEY, hmac)
}

fn with(
    fields: &[(&'static str, String)],
    name: &'static str,
    value: &str,
) -> Vec<(&'static str, String)> {
    let mut fields: Vec<_> = fields.iter().filter(|(k, _)| *k != name).cloned().collect();
    fields.push((name, value.into()));
    fields
}

pub async fn send_notify(app: &TestApp, body: impl Into<reqwest::Body>) -> (u16, Fields) {
    let response = app
        .http
        .post(app.url("/weixin/pay/notify/url"))
        .header("content-type", "text/xml")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    (status, xml::decode(&bytes).unwrap_or_default())
}

/// An order with a prepay (so the shop knows its sign type), and its amount.
async fn order_with_prepay(app: &TestApp, sku: i64) -> (String, i64) {
    let no = app.place_order(sku, 1).await;
    app.open_pay_page(&no).await;
    let total: i64 = sqlx::query_scalar("SELECT total_fee FROM orders WHERE out_trade_no = $1")
        .bind(&no)
        .fetch_one(&app.db)
        .await
        .unwrap();
    (no, total)
}

#[tokio::test]
async fn a_valid_notify_pays_the_order_once_even_sent_ten_times_at_once() {
    let app = TestApp::spawn().await;
    // Notifies are not the sandbox's here: keep its own deliveries out.
    app.set_faults(serde_json::json!({ "drop_notify": 1.0 }))
        .await;
    let (no, total) = order_with_prepay(&app, 2).await;
    let tid = "4200001234202611281234567890";
    let body = signed(&notify_fields(&no, total, tid), false);
    let sends: Vec<_> = (0..10).map(|_| send_notify(&app, body.clone())).collect();
    for (status, answer) in futures_util::future::join_all(sends).await {
        assert_eq!(status, 200);
        assert_eq!(answer["return_code"], "SUCCESS");
        assert_eq!(answer["return_msg"], "OK");
    }
    assert!(
        app.wait_for_status(&no, "paid", Duration::from_secs(5))
            .await
    );
    let (_, stored_tid, pay_time) = app.order_row(&no).await;
    assert_eq!(stored_tid.as_deref(), Some(tid));
    // 2026-11-28 20:15:13 in Beijing is 12:15:13 UTC.
    assert_eq!(pay_time, Some(1_795_868_113));
    let events: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT source, outcome FROM payment_events WHERE out_trade_no = $1")
            .bind(&no)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(
        events,
        vec![("notify".to_string(), Some("paid".to_string()))]
    );
    // Later duplicates are still answered SUCCESS and change nothing.
    assert_eq!(send_notify(&app, body).await.1["return_code"], "SUCCESS");
    assert_eq!(app.order_row(&no).await.0, "paid");
}

#[tokio::test]
async fn forged_or_broken_notifies_are_refused_and_change_nothing() {
    let app = TestApp::spawn().await;
    app.set_faults(serde_json::json!({ "drop_notify": 1.0 }))
        .await;
    let (no, total) = order_with_prepay(&app, 1).await;
    let good = notify_fields(&no, total, "4200001234202611280000000001");
    let pairs: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let mut tampered = signed(&good, false);
    tampered = tampered.replace(
        &format!("<total_fee><![CDATA[{total}]]></total_fee>"),
        "<total_fee><![CDATA[1]]></total_fee>",
    );
    let billion_laughs = {
        let mut doc = String::from("<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">");
        for i in 1..10 {
            let prev = if i == 1 {
                "lol".to_string()
            } else {
                format!("lol{}", i - 1)
            };
            doc.push_str(&format!(
                "<!ENTITY lol{i} \"{}\">",
                format!("&{prev};").repeat(10)
            ));
        }
        doc.push_str("]><xml><attach>&lol9;</attach></xml>");
        doc
    };
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("wrong key", hand_signed(&pairs, "0123456789abcdef0123456789abcdef", false).into_bytes(), 200),
        ("no sign", hand_xml(&pairs).into_bytes(), 200),
        ("tampered total_fee", tampered.into_bytes(), 200),
        ("other appid", signed(&with(&good, "appid", "wx0000000000000000"), false).into_bytes(), 200),
        ("other mch_id", signed(&with(&good, "mch_id", "1234567890"), false).into_bytes(), 200),
        ("unknown order", signed(&with(&good, "out_trade_no", "20990101000000000000000000000"), false).into_bytes(), 200),
        ("signed malformed transaction_id", signed(&with(&good, "transaction_id", "42000012342026112800000000019999999"), false).into_bytes(), 200),
        ("HMAC sign on an MD5 order", signed(&good, true).into_bytes(), 200),
        (
            "external entity",
            format!("<?xml version=\"1.0\"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><xml><out_trade_no>{no}</out_trade_no><attach>&xxe;</attach></xml>").into_bytes(),
            200,
        ),
        ("billion laughs", billion_laughs.into_bytes(), 200),
        ("1 MiB body", format!("<xml><attach>{}</attach></xml>", "A".repeat(1 << 20)).into_bytes(), 413),
        ("empty body", Vec::new(), 200),
        ("not XML", b"{\"return_code\": \"SUCCESS\"}".to_vec(), 200),
        ("truncated XML", signed(&good, false).as_bytes()[..200].to_vec(), 200),
    ];
    for (name, body, status) in cases {
        let (got, answer) = send_notify(&app, body).await;
        assert_eq!(got, status, "{name}");
        if status == 200 {
            assert_eq!(answer["return_code"], "FAIL", "{name}: {answer:?}");
            assert!(!answer["return_msg"].is_empty(), "{name}: a reason");
        }
    }
    assert_eq!(app.order_row(&no).await, ("pending".into(), None, None));
    let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM payment_events")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(events, 0);
    assert_eq!(app.ops_get("/healthz").await.status(), 200);
    // The genuine one still works.
    assert_eq!(
        send_notify(&app, signed(&good, false)).await.1["return_code"],
        "SUCCESS"
    );
    assert!(
        app.wait_for_status(&no, "paid", Duration::from_secs(5))
            .await
    );
}

#[tokio::test]
async fn an_hmac_order_takes_only_hmac_notifies_even_without_sign_type() {
    let app = TestApp::spawn_with(&[("WEIXIN_SIGN_TYPE", "HMAC-SHA256")]).await;
    app.set_faults(serde_json::json!({ "drop_notify": 1.0 }))
        .await;
    let (no, total) = order_with_prepay(&app, 3).await;
    let fields = notify_fields(&no, total, "4200001234202611280000000002");
    assert_eq!(
        send_notify(&app, signed(&fields, false)).await.1["return_code"],
        "FAIL"
    );
    assert_eq!(
        send_notify(&app, signed(&with(&fields, "sign_type", "MD5"), false))
            .await
            .1["return_code"],
        "FAIL"
    );
    assert_eq!(app.order_row(&no).await.0, "pending");
    assert_eq!(
        send_notify(&app, signed(&fields, true)).await.1["return_code"],
        "SUCCESS"
    );
    assert!(
        app.wait_for_status(&no, "paid", Duration::from_secs(5))
            .await
    );
}

#[tokio::test]
async fn the_sandboxs_own_notify_pays_the_order() {
    let app = TestApp::spawn_with(&[("WEIXIN_SIGN_TYPE", "HMAC-SHA256")]).await;
    let (no, _) = order_with_prepay(&app, 4).await;
    let code_url = app.sandbox_order(&no).await["code_url"]
        .as_str()
        .unwrap()
        .to_owned();
    app.pay_in_sandbox(&code_url).await;
    assert!(
        app.wait_for_status(&no, "paid", Duration::from_secs(5))
            .await
    );
    // The sandbox notes the shop's SUCCESS once it has read it, a moment after the shop sent it.
    let mut sandbox = app.sandbox_order(&no).await;
    for _ in 0..500 {
        if sandbox["notify_acknowledged"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        sandbox = app.sandbox_order(&no).await;
    }
    assert_eq!(sandbox["notify_acknowledged"], true);
    assert_eq!(sandbox["notify_attempts"], 1);
}

#[tokio::test]
async fn a_verified_failure_is_shown_and_the_order_stays_payable() {
    let app = TestApp::spawn().await;
    app.set_faults(serde_json::json!({ "drop_notify": 1.0 }))
        .await;
    let before = app.stock(5).await;
    let (no, total) = order_with_prepay(&app, 5).await;
    assert_eq!(app.stock(5).await, before - 1);
    let failure: Vec<_> = with(
        &with(&notify_fields(&no, total, ""), "result_code", "FAIL"),
        "err_code",
        "BANKERROR",
    )
    .into_iter()
    .filter(|(k, _)| *k != "transaction_id")
    .collect();
    for _ in 0..3 {
        assert_eq!(
            send_notify(&app, signed(&failure, false)).await.1["return_code"],
            "SUCCESS"
        );
    }
    // Recorded once, and shown: the status says PAYERROR and the pay page offers the code
    // again.
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.status(&no).await["trade_state"] != "PAYERROR" {
        assert!(tokio::time::Instant::now() < until, "PAYERROR never shown");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM payment_events WHERE out_trade_no = $1")
            .bind(&no)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(events, 1);
    assert_eq!(app.order_row(&no).await.0, "pending");
    assert_eq!(
        app.stock(5).await,
        before - 1,
        "a failed attempt releases nothing"
    );
    let page = app.get(&format!("/pay/{no}")).await;
    assert_eq!(page.status(), 200);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("scan again, maybe with another card"));
    // The shopper scans again and pays: the order is paid.
    app.set_faults(serde_json::json!({})).await;
    let code_url = app.sandbox_order(&no).await["code_url"]
        .as_str()
        .unwrap()
        .to_owned();
    app.pay_in_sandbox(&code_url).await;
    assert!(
        app.wait_for_status(&no, "paid", Duration::from_secs(5))
            .await
    );
    assert_eq!(app.stock(5).await, before - 1);
}

#[tokio::test]
async fn a_signed_payment_of_another_amount_is_recorded_and_due_back() {
    let app = TestApp::spawn().await;
    app.set_faults(serde_json::json!({ "drop_notify": 1.0 }))
        .await;
    let before = app.stock(2).await;
    let (no, total) = order_with_prepay(&app, 2).await;
    let (other, other_total) = order_with_prepay(&app, 2).await;
    let wrong_amount = with(
        &notify_fields(&no, total, "4200001234202611280000000011"),
        "total_fee",
        "1",
    );
    let wrong_currency = with(
        &notify_fields(&other, other_total, "4200001234202611280000000012"),
        "fee_type",
        "USD",
    );
    for body in [signed(&wrong_amount, false), signed(&wrong_currency, false)] {
        let answer = send_notify(&app, body).await.1;
        assert_eq!(answer["return_code"], "SUCCESS", "{answer:?}");
    }
    for no in [&no, &other] {
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let (status, refund_due): (String, i64) =
                sqlx::query_as("SELECT status, refund_due FROM orders WHERE out_trade_no = $1")
                    .bind(no)
                    .fetch_one(&app.db)
                    .await
                    .unwrap();
            if (status.as_str(), refund_due) == ("closed", 1) {
                break;
            }
            assert!(tokio::time::Instant::now() < until, "{status} {refund_due}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let outcomes: Vec<String> = sqlx::query_scalar(
        "SELECT outcome FROM payment_events WHERE outcome IS NOT NULL ORDER BY id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(outcomes, ["amount_mismatch", "amount_mismatch"]);
    assert_eq!(app.stock(2).await, before, "never paid: the stock is back");
}

#[tokio::test]
async fn a_payment_for_a_closed_order_is_recorded_as_refund_due() {
    // Due back, and left so (the automatic refund is the refunds tests' business).
    let app = TestApp::spawn_with(&[("AUTO_REFUND_LATE_PAYMENTS", "false")]).await;
    app.set_faults(serde_json::json!({ "drop_notify": 1.0 }))
        .await;
    let (no, total) = order_with_prepay(&app, 1).await;
    // The shop closed it (as the reconciliation job does).
    sqlx::query("UPDATE orders SET status = 'closed', closed_at = 1, is_deleted = 1 WHERE out_trade_no = $1")
        .bind(&no)
        .execute(&app.db)
        .await
        .unwrap();
    let body = signed(
        &notify_fields(&no, total, "4200001234202611280000000003"),
        false,
    );
    assert_eq!(send_notify(&app, body).await.1["return_code"], "SUCCESS");
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let outcome: Option<String> =
            sqlx::query_scalar("SELECT outcome FROM payment_events WHERE out_trade_no = $1")
                .bind(&no)
                .fetch_one(&app.db)
                .await
                .unwrap();
        if outcome.as_deref() == Some("paid_after_close") {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "outcome {outcome:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, refund_due): (String, i64) =
        sqlx::query_as("SELECT status, refund_due FROM orders WHERE out_trade_no = $1")
            .bind(&no)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!((status.as_str(), refund_due), ("closed", 1));
}
