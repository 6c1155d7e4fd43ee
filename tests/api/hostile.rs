//! The shop as an attacker on the open internet meets it: every input a stranger controls is
//! bounded. Real server, real sandbox, loopback.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::TestApp;

/// Sends raw bytes on a fresh connection and returns what comes back (bounded wait).
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer)).await;
    answer
}

#[tokio::test]
async fn odd_methods_never_become_metric_labels() {
    let app = TestApp::spawn().await;
    for i in 0..500 {
        let method = format!("X{}{i}", "M".repeat(1000));
        let request = format!("{method} / HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n");
        raw(app.addr, request.as_bytes()).await;
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        !metrics.contains("MMMM"),
        "a client's method became a label"
    );
    assert!(
        metrics.len() < 64 * 1024,
        "/metrics is {} bytes",
        metrics.len()
    );
}

#[tokio::test]
async fn every_page_carries_the_security_headers_and_order_data_is_never_stored() {
    let app = TestApp::spawn().await;
    let no = app.place_order(1, 1).await;
    app.open_pay_page(&no).await;
    let closed = app.place_order(1, 1).await;
    sqlx::query("UPDATE orders SET status = 'closed', closed_at = 1 WHERE out_trade_no = $1")
        .bind(&closed)
        .execute(&app.db)
        .await
        .unwrap();
    let order_data = [
        format!("/pay/{no}"),
        format!("/pay/{closed}/failed"),
        format!("/weixin/pay/status/query?out_trade_no={no}"),
    ];
    let others = [
        "/".to_string(),
        format!("/pay/{no}/success"),
        "/static/app.css".into(),
        "/no/such/page".into(),
        "/pay/nonsense!".into(),
    ];
    for path in order_data.iter().chain(others.iter()) {
        let response = app.get(path).await;
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert!(headers.contains_key("referrer-policy"), "{path}");
        if order_data.contains(path) {
            assert_eq!(headers["cache-control"], "no-store", "{path}");
        }
    }
}

#[tokio::test]
async fn a_form_posted_from_another_site_is_refused_and_reserves_nothing() {
    let app = TestApp::spawn().await;
    let before = app.stock(1).await;
    let post = |headers: Vec<(&'static str, String)>| {
        let mut request = app
            .http
            .post(app.url("/orders"))
            .form(&[("sku_id", "1"), ("num", "1")]);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    for foreign in [
        vec![("sec-fetch-site", "cross-site".to_string())],
        vec![("sec-fetch-site", "same-site".to_string())],
        vec![("origin", "https://evil.example".to_string())],
    ] {
        assert_eq!(post(foreign).await.unwrap().status(), 403);
    }
    assert_eq!(app.stock(1).await, before);
    // The shop's own pages (and clients that are not browsers) may.
    let own = format!("http://{}", app.addr);
    for fine in [
        vec![("sec-fetch-site", "same-origin".to_string())],
        vec![("origin", own)],
        vec![],
    ] {
        assert_eq!(post(fine).await.unwrap().status(), 303);
    }
    assert_eq!(app.stock(1).await, before - 3);
}
