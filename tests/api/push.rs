//! Push to the pay page: `/pay/{no}/events` tells a page its order's state at once and every
//! change as the shop applies it (a failed attempt, paid); streams are bounded per
//! client; on PostgreSQL a change applied on one replica reaches a page connected to another;
//! and shutting down ends open streams instead of waiting for them.

use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::crash::{free_port, start_shop_with};
use crate::helpers::{
    database_url, no_redirects, on_postgres, pay_at_sandbox, place_order_at, TestApp,
};

/// An open event stream, read event by event.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(url: &str) -> Stream {
        let response = no_redirects().get(url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{url}"
        );
        Stream {
            response,
            buffer: String::new(),
        }
    }

    /// The next `state` event's data within `deadline` (heartbeats skipped); `None` when the
    /// stream ended.
    async fn next_state(&mut self, deadline: Duration) -> Option<String> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(data) = block
                    .lines()
                    .skip_while(|l| *l != "event: state")
                    .find_map(|l| l.strip_prefix("data: "))
                {
                    return Some(data.to_owned());
                }
            }
            let chunk = tokio::time::timeout_at(until, self.response.chunk())
                .await
                .expect("no event in time")
                .unwrap();
            match chunk {
                Some(bytes) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                None => return None,
            }
        }
    }
}

#[tokio::test]
async fn a_page_hears_its_order_fail_then_get_paid_the_moment_the_shop_applies_it() {
    let app = TestApp::spawn().await;
    // WeChat follows the decline with a signed FAIL notify.
    app.set_faults(serde_json::json!({ "fail_notify": 1.0 }))
        .await;
    let no = app.place_order(1, 1).await;
    let code_url = app.open_pay_page(&no).await;
    let mut stream = Stream::open(&app.url(&format!("/pay/{no}/events"))).await;
    assert_eq!(
        stream.next_state(Duration::from_secs(5)).await.unwrap(),
        "pending"
    );
    // A declined payment, then a good one.
    app.pay_in_sandbox_as(&code_url, "fail").await;
    assert_eq!(
        stream.next_state(Duration::from_secs(5)).await.unwrap(),
        "payerror"
    );
    let paid_at = Instant::now();
    app.pay_in_sandbox(&code_url).await;
    assert_eq!(
        stream.next_state(Duration::from_secs(5)).await.unwrap(),
        "paid"
    );
    eprintln!("payment to event: {:?}", paid_at.elapsed());
    // A page that connects afterwards hears where the order stands.
    let mut late = Stream::open(&app.url(&format!("/pay/{no}/events"))).await;
    assert_eq!(
        late.next_state(Duration::from_secs(5)).await.unwrap(),
        "paid"
    );
    // No stream for what is no order.
    let none = app.get("/pay/20261130000000000000000000000/events").await;
    assert_eq!(none.status(), 404);
}

#[tokio::test]
async fn one_client_holds_a_bounded_number_of_streams() {
    let app = TestApp::spawn().await;
    let no = app.place_order(1, 1).await;
    let url = app.url(&format!("/pay/{no}/events"));
    let mut open = Vec::new();
    for _ in 0..16 {
        open.push(Stream::open(&url).await);
    }
    let refused = no_redirects().get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 429, "the 17th stream of one client");
    // A page that goes away frees its place (seen at the latest when its next heartbeat finds
    // the connection gone).
    drop(open.pop());
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let again = no_redirects().get(&url).send().await.unwrap();
        if again.status() == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the place was never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = app.ops_get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("event_streams_open 16"), "{metrics}");
}

#[tokio::test]
async fn shutting_down_ends_open_streams_instead_of_waiting_for_them() {
    let dir = TempDir::new().unwrap();
    let database_url = database_url(&dir).await;
    let port = free_port();
    let mut shop = start_shop_with(&database_url, port, &[]).await;
    let base = format!("http://127.0.0.1:{port}");
    let location = place_order_at(&no_redirects(), &base, "1").await;
    let mut stream = Stream::open(&format!("{base}{location}/events")).await;
    assert_eq!(
        stream.next_state(Duration::from_secs(5)).await.unwrap(),
        "pending"
    );
    let asked = Instant::now();
    crate::helpers::sigterm(&shop.0);
    assert_eq!(
        stream.next_state(Duration::from_secs(10)).await,
        None,
        "the stream ends"
    );
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while shop.0.try_wait().unwrap().is_none() {
        assert!(tokio::time::Instant::now() < until, "the shop did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // actix would wait 30 s for a response still streaming.
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    shop.kill();
}

#[tokio::test]
async fn a_payment_applied_on_one_replica_reaches_a_page_connected_to_another() {
    if !on_postgres() {
        eprintln!("SKIPPED: replicas share PostgreSQL; run with TEST_DATABASE=postgres");
        return;
    }
    let dir = TempDir::new().unwrap();
    let database_url = database_url(&dir).await;
    let (_sandbox, sandbox) = crate::crash::start_sandbox().await;
    let env = [("WEIXIN_API_BASE", sandbox.as_str())];
    let (port_a, port_b) = (free_port(), free_port());
    let (_a, _b) = tokio::join!(
        start_shop_with(&database_url, port_a, &env),
        start_shop_with(&database_url, port_b, &env)
    );
    let (a, b) = (
        format!("http://127.0.0.1:{port_a}"),
        format!("http://127.0.0.1:{port_b}"),
    );
    let http = no_redirects();
    // Ordered and shown on A (its notify comes to A); the page listens on B.
    let location = place_order_at(&http, &a, "1").await;
    assert_eq!(
        http.get(format!("{a}{location}"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let mut stream = Stream::open(&format!("{b}{location}/events")).await;
    assert_eq!(
        stream.next_state(Duration::from_secs(5)).await.unwrap(),
        "pending"
    );
    let no = location.trim_start_matches("/pay/");
    pay_at_sandbox(&http, &sandbox, no).await;
    assert_eq!(
        stream.next_state(Duration::from_secs(10)).await.unwrap(),
        "paid"
    );
}
