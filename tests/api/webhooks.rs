//! Outgoing events end to end: a local receiver (a real HTTP server) stands in for the
//! merchant's other systems and for the WeCom and DingTalk robots. Every paid order gives one
//! `order.paid` event id, signed per Standard Webhooks (checked here with an independent
//! HMAC); a receiver that was down gets every event once it is back, each order's in order; a
//! SIGKILL between the change and the delivery loses nothing.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tempfile::TempDir;

use crate::admin::sign_in;
use crate::crash::{free_port, start_shop_with};
use crate::helpers::{
    database_url, no_redirects, place_order_at, raw_pool, wait_for_count, wait_for_zero,
    wait_until, TestApp,
};
use crate::notify::{notify_fields, signed};

/// The secret the shop signs with, as the merchant would configure it.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Received {
    path_and_query: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
    answered_ok: bool,
}

impl Received {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

/// A receiver: records every request; answers 200 (a robot's `errcode` 0) while up, 503 while
/// down.
#[derive(Clone)]
pub(crate) struct Receiver {
    port: u16,
    up: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Received>>>,
}

async fn receive(
    request: HttpRequest,
    body: web::Bytes,
    receiver: web::Data<Receiver>,
) -> HttpResponse {
    let up = receiver.up.load(Ordering::SeqCst);
    receiver.seen.lock().unwrap().push(Received {
        path_and_query: request
            .uri()
            .path_and_query()
            .map_or_else(String::new, |p| p.to_string()),
        headers: request
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: body.to_vec(),
        answered_ok: up,
    });
    if up {
        HttpResponse::Ok().body(r#"{"errcode":0,"errmsg":"ok"}"#)
    } else {
        HttpResponse::ServiceUnavailable().finish()
    }
}

impl Receiver {
    pub(crate) async fn start() -> Receiver {
        Self::start_on(free_port()).await
    }

    async fn start_on(port: u16) -> Receiver {
        let receiver = Receiver {
            port,
            up: Arc::new(AtomicBool::new(true)),
            seen: Arc::default(),
        };
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let data = web::Data::new(receiver.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::post().to(receive))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        receiver
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn seen(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }

    /// The events it took (answered 200), in the order they arrived.
    pub(crate) fn taken(&self) -> Vec<serde_json::Value> {
        self.seen()
            .iter()
            .filter(|r| r.answered_ok)
            .map(Received::json)
            .collect()
    }

    /// Ids of the `order.paid` events it took, per order.
    fn paid_ids(&self) -> HashMap<String, HashSet<String>> {
        let mut ids: HashMap<String, HashSet<String>> = HashMap::new();
        for event in self.taken() {
            if event["type"] == "order.paid" {
                ids.entry(event["data"]["out_trade_no"].as_str().unwrap().to_owned())
                    .or_default()
                    .insert(event["id"].as_str().unwrap().to_owned());
            }
        }
        ids
    }
}

/// Standard Webhooks' signature, computed here without the product's code: Base64 of
/// HMAC-SHA256 over `{id}.{timestamp}.{body}`, keyed with the Base64-decoded secret.
fn independent_signature(id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = BASE64
        .decode(SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

fn signature_verifies(r: &Received, body: &[u8]) -> bool {
    let expected =
        independent_signature(r.header("webhook-id"), r.header("webhook-timestamp"), body);
    r.header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}

async fn paid_order(app: &TestApp, sku_id: i64) -> String {
    let no = app.place_order(sku_id, 1).await;
    let code_url = app.open_pay_page(&no).await;
    app.pay_in_sandbox(&code_url).await;
    assert!(
        app.wait_for_status(&no, "paid", Duration::from_secs(10))
            .await,
        "never paid"
    );
    no
}

#[tokio::test]
async fn every_paid_order_gives_one_signed_event_and_the_robots_a_message() {
    let hooks = Receiver::start().await;
    let wecom = Receiver::start().await;
    let dingtalk = Receiver::start().await;
    let app = TestApp::spawn_with(&[
        ("WEBHOOK_URLS", &hooks.url("/hooks?token=t0ken")),
        ("WEBHOOK_SECRET", SECRET),
        (
            "WECOM_ROBOT_URL",
            &wecom.url("/cgi-bin/webhook/send?key=R0B0T"),
        ),
        (
            "DINGTALK_ROBOT_URL",
            &dingtalk.url("/robot/send?access_token=D1NG"),
        ),
        ("DINGTALK_ROBOT_SECRET", "SECding"),
        ("WEBHOOK_RETRY_SCALE", "0.001"),
    ])
    .await;
    let mut nos = Vec::new();
    for sku in 1..=3 {
        nos.push(paid_order(&app, sku).await);
    }
    assert!(
        wait_until(Duration::from_secs(15), || {
            hooks.paid_ids().len() == 3 && wecom.taken().len() == 3 && dingtalk.taken().len() == 3
        })
        .await,
        "not every event arrived: {:?}",
        hooks.paid_ids()
    );
    // One id per paid order, signed; any byte changed and the signature no longer verifies.
    let ids = hooks.paid_ids();
    for no in &nos {
        assert_eq!(ids[no].len(), 1, "{no}: {:?}", ids[no]);
    }
    for r in hooks.seen() {
        assert_eq!(r.path_and_query, "/hooks?token=t0ken");
        assert_eq!(r.header("content-type"), "application/json");
        let event = r.json();
        assert_eq!(r.header("webhook-id"), event["id"]);
        assert!(r.header("webhook-id").starts_with("evt_"));
        let timestamp: i64 = r.header("webhook-timestamp").parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 60);
        assert!(signature_verifies(&r, &r.body), "{r:?}");
        let mut tampered = r.body.clone();
        for i in [0, tampered.len() / 2, tampered.len() - 1] {
            tampered[i] ^= 1;
            assert!(!signature_verifies(&r, &tampered));
            tampered[i] ^= 1;
        }
        // The event's data is the order's, amounts in fen.
        let no = event["data"]["out_trade_no"].as_str().unwrap();
        let total: i64 = sqlx::query_scalar("SELECT total_fee FROM orders WHERE out_trade_no = $1")
            .bind(no)
            .fetch_one(&app.db)
            .await
            .unwrap();
        assert_eq!(event["type"], "order.paid");
        assert_eq!(event["data"]["total_fee"], total);
        assert!(event["data"]["transaction_id"].as_str().unwrap().len() > 10);
        assert_eq!(event["data"]["items"][0]["num"], 1);
        assert!(event["created_at"].as_str().unwrap().ends_with('Z'));
    }
    // The robots: a markdown message naming the order; DingTalk's URL signed.
    for r in wecom.seen() {
        assert_eq!(r.path_and_query, "/cgi-bin/webhook/send?key=R0B0T");
        let message = r.json();
        assert_eq!(message["msgtype"], "markdown");
        let text = message["markdown"]["content"].as_str().unwrap();
        assert!(text.contains("New paid order"), "{text}");
        assert!(nos.iter().any(|no| text.contains(no.as_str())));
        assert!(text.contains('¥'));
    }
    for r in dingtalk.seen() {
        let url = url::Url::parse(&format!("http://x{}", r.path_and_query)).unwrap();
        let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(query["access_token"], "D1NG");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"SECding").unwrap();
        mac.update(format!("{}\nSECding", query["timestamp"]).as_bytes());
        assert_eq!(query["sign"], BASE64.encode(mac.finalize().into_bytes()));
        assert_eq!(
            r.json()["markdown"]["title"],
            "新订单已支付 / New paid order"
        );
    }

    // The console lists the deliveries (never a target's token) and sends one again: the same
    // id and the same bytes, which a receiver deduplicates by.
    let (http, csrf) = sign_in(&app).await;
    let page = http
        .get(app.url("/admin/webhooks"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(nos[0].as_str()) && page.contains("order.paid"),
        "{page}"
    );
    assert!(page.contains("已送达 Delivered"));
    let order_page = http
        .get(app.url(&format!("/admin/orders/{}", nos[0])))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(order_page.contains("id=\"deliveries\"") && order_page.contains("WeCom robot"));
    assert!(!page.contains("t0ken") && !page.contains("R0B0T") && !page.contains("D1NG"));
    let (seq, target): (i64, String) = sqlx::query_as(
        "SELECT d.event_seq, d.target FROM outbox_deliveries AS d
         JOIN outbox_events AS e ON e.seq = d.event_seq
         WHERE e.subject = $1 AND d.target LIKE 'hook-%'",
    )
    .bind(&nos[0])
    .fetch_one(&app.db)
    .await
    .unwrap();
    let first = hooks
        .seen()
        .into_iter()
        .find(|r| r.json()["data"]["out_trade_no"] == nos[0].as_str())
        .unwrap();
    let resent = http
        .post(app.url(&format!("/admin/webhooks/{seq}/{target}/resend")))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resent.status(), 303);
    assert!(
        wait_until(Duration::from_secs(10), || hooks
            .seen()
            .iter()
            .filter(|r| r.header("webhook-id") == first.header("webhook-id"))
            .count()
            == 2)
        .await
    );
    let again = hooks.seen().pop().unwrap();
    assert_eq!(again.body, first.body);
    assert_eq!(hooks.paid_ids()[&nos[0]].len(), 1);
    // Without the session's CSRF token nothing is sent again.
    let refused = http
        .post(app.url(&format!("/admin/webhooks/{seq}/{target}/resend")))
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
}

#[tokio::test]
async fn a_receiver_that_was_down_gets_every_event_after_it_returns_in_order_per_order() {
    let hooks = Receiver::start().await;
    hooks.up.store(false, Ordering::SeqCst);
    let app = TestApp::spawn_with(&[
        ("WEBHOOK_URLS", &hooks.url("/hooks")),
        ("WEBHOOK_SECRET", SECRET),
        ("WEBHOOK_RETRY_SCALE", "0.001"),
    ])
    .await;
    let a = paid_order(&app, 1).await;
    let b = paid_order(&app, 2).await;
    // A refunded in full: its refund.succeeded must come after its order.paid.
    let (http, csrf) = sign_in(&app).await;
    let refund = http
        .post(app.url(&format!("/admin/orders/{a}/refunds")))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(refund.status(), 303);
    let db = app.db.clone();
    wait_for_count(
        &db,
        "SELECT COUNT(*) FROM outbox_events WHERE kind = 'refund.succeeded'",
        1,
        Duration::from_secs(15),
    )
    .await;
    // Refused a few times while down; nothing taken.
    assert!(
        wait_until(Duration::from_secs(15), || hooks.seen().len() >= 4).await,
        "no retries while down"
    );
    assert!(hooks.taken().is_empty());
    hooks.up.store(true, Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(20), || {
            let types: Vec<String> = hooks
                .taken()
                .iter()
                .map(|e| e["type"].as_str().unwrap().to_owned())
                .collect();
            types.iter().filter(|t| *t == "order.paid").count() >= 2
                && types.iter().any(|t| t == "refund.succeeded")
        })
        .await,
        "not everything arrived: {:?}",
        hooks.taken()
    );
    assert_eq!(hooks.paid_ids()[&a].len(), 1);
    assert_eq!(hooks.paid_ids()[&b].len(), 1);
    // In order per order: no attempt of A's refund event before A's payment event was taken.
    let seen = hooks.seen();
    let paid_taken = seen
        .iter()
        .position(|r| {
            r.answered_ok && {
                let e = r.json();
                e["type"] == "order.paid" && e["data"]["out_trade_no"] == a.as_str()
            }
        })
        .unwrap();
    let first_refund_attempt = seen
        .iter()
        .position(|r| r.json()["type"] == "refund.succeeded")
        .unwrap();
    assert!(paid_taken < first_refund_attempt, "{seen:?}");
    let refund = &seen[first_refund_attempt].json();
    assert_eq!(refund["data"]["out_trade_no"], a.as_str());
    assert!(refund["data"]["refund_fee"].as_i64().unwrap() > 0);
    // Nothing is left waiting once the shop has recorded what the receiver took.
    wait_for_zero(
        &db,
        "SELECT COUNT(*) FROM outbox_deliveries WHERE state <> 'delivered'",
        Duration::from_secs(10),
    )
    .await;
}

#[tokio::test]
async fn sigkill_between_the_change_and_its_delivery_loses_no_event() {
    let dir = TempDir::new().unwrap();
    let database_url = database_url(&dir).await;
    let port = free_port();
    let hook_port = free_port();
    let hook_url = format!("http://127.0.0.1:{hook_port}/hooks");
    let env = [
        ("SANDBOX_FAULTS", "drop_notify=1"),
        ("WEBHOOK_URLS", hook_url.as_str()),
        ("WEBHOOK_SECRET", SECRET),
        ("WEBHOOK_RETRY_SCALE", "0.001"),
    ];
    let mut shop = start_shop_with(&database_url, port, &env).await;
    let base = format!("http://127.0.0.1:{port}");
    let http = no_redirects();
    let db = raw_pool(&database_url).await;
    // Ten orders paid by verified notifies, with nothing listening where the events go.
    let mut orders = Vec::new();
    for i in 0..10 {
        let location = place_order_at(&http, &base, &(i % 3 + 1).to_string()).await;
        let no = location.trim_start_matches("/pay/").to_owned();
        let total: i64 = sqlx::query_scalar("SELECT total_fee FROM orders WHERE out_trade_no = $1")
            .bind(&no)
            .fetch_one(&db)
            .await
            .unwrap();
        let body = signed(
            &notify_fields(&no, total, &format!("42000012342026113000{i:08}")),
            false,
        );
        let answer = http
            .post(format!("{base}/weixin/pay/notify/url"))
            .body(body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(answer.contains("SUCCESS"), "{answer}");
        orders.push(no);
    }
    wait_for_count(
        &db,
        "SELECT COUNT(*) FROM outbox_events WHERE kind = 'order.paid'",
        10,
        Duration::from_secs(15),
    )
    .await;
    shop.kill();
    // The receiver comes up, and the shop again on the same database.
    let hooks = Receiver::start_on(hook_port).await;
    let _shop = start_shop_with(&database_url, port, &env).await;
    assert!(
        wait_until(Duration::from_secs(30), || hooks.paid_ids().len() == 10).await,
        "events lost: {:?}",
        hooks.paid_ids()
    );
    let ids = hooks.paid_ids();
    for no in &orders {
        assert_eq!(ids[no].len(), 1, "{no}");
    }
    for r in hooks.seen() {
        assert!(signature_verifies(&r, &r.body));
    }
}
