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

#[test]
fn sandbox_mode_on_a_public_address_refuses_to_start_without_the_opt_in() {
    use std::process::Command;
    let dir = tempfile::TempDir::new().unwrap();
    let port = crate::crash::free_port();
    let shop = |public: bool, wait: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wxpay-checkout"));
        command
            .env("LISTEN_ADDR", format!("0.0.0.0:{port}"))
            .env("SANDBOX_LISTEN_ADDR", "127.0.0.1:0")
            .env(
                "DATABASE_URL",
                format!("sqlite://{}/open.db", dir.path().display()),
            )
            .env("RUST_LOG", "warn");
        if public {
            command.env("SANDBOX_PUBLIC", "1");
        }
        if wait {
            command.output().unwrap()
        } else {
            let mut child = command
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            // Up and answering, then stopped.
            let healthy = (0..200).any(|_| {
                std::thread::sleep(Duration::from_millis(25));
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            assert!(healthy, "with SANDBOX_PUBLIC=1 it starts");
            output
        }
    };
    let refused = shop(false, true);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("LISTEN_ADDR") && stderr.contains("SANDBOX_PUBLIC=1"),
        "{stderr}"
    );
    let demo = shop(true, false);
    let log = String::from_utf8_lossy(&demo.stdout);
    assert!(log.contains("sandbox mode"), "a warning says so: {log}");
    // The sandbox alone, likewise.
    let alone = Command::new(env!("CARGO_BIN_EXE_wxpay-checkout"))
        .arg("sandbox")
        .env("SANDBOX_LISTEN_ADDR", "0.0.0.0:0")
        .output()
        .unwrap();
    assert_eq!(alone.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&alone.stderr).contains("SANDBOX_LISTEN_ADDR"));
}

#[tokio::test]
async fn the_builtin_sandbox_is_no_relay_and_keeps_orders_small() {
    use wxpay_checkout::config::{SANDBOX_APPID, SANDBOX_KEY, SANDBOX_MCH_ID};
    let app = TestApp::spawn().await;
    let order = |no: &str, notify_url: String, detail: String| {
        let fields: Vec<(&str, String)> = vec![
            ("appid", SANDBOX_APPID.into()),
            ("mch_id", SANDBOX_MCH_ID.into()),
            ("nonce_str", wxpay_checkout::wxpay::nonce_str()),
            ("body", "x".into()),
            ("detail", detail),
            ("out_trade_no", no.into()),
            ("total_fee", "1".into()),
            ("spbill_create_ip", "127.0.0.1".into()),
            ("notify_url", notify_url),
            ("trade_type", "NATIVE".into()),
            ("product_id", "1".into()),
        ];
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        crate::helpers::hand_signed(&pairs, SANDBOX_KEY, false)
    };
    let call = |body: String| async {
        let answer = app
            .http
            .post(app.sandbox_url("pay/unifiedorder"))
            .body(body)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        wxpay_checkout::wxpay::xml::decode(&answer).unwrap()
    };
    let own = app.url("/weixin/pay/notify/url");
    // Signed POSTs to anywhere else: refused.
    let foreign = call(order(
        "relay-1",
        "http://203.0.113.9/hook".into(),
        String::new(),
    ))
    .await;
    assert_eq!(foreign["return_code"], "FAIL", "{foreign:?}");
    // Padding: refused, not kept.
    let padded = call(order("pad-1", own.clone(), "A".repeat(16 * 1024))).await;
    assert_eq!(padded["return_code"], "FAIL", "{padded:?}");
    let fine = call(order("fine-1", own, String::new())).await;
    assert_eq!(fine["result_code"], "SUCCESS", "{fine:?}");
}

#[tokio::test]
async fn the_sandboxs_test_controls_are_off_unless_enabled() {
    use wxpay_checkout::rt::AppRuntime;
    use wxpay_checkout::sandbox::{SandboxConfig, SandboxServer};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = SandboxConfig::new(crate::helpers::demo_merchant());
    let server = SandboxServer::start(listener, config, &AppRuntime::current()).unwrap();
    let base = server.base_url();
    let handle = server.handle();
    tokio::spawn(server.run());
    let http = reqwest::Client::new();
    for path in [
        "sandbox/stats",
        "sandbox/faults",
        "sandbox/orders/x",
        "sandbox/payments",
    ] {
        let status = http
            .get(base.join(path).unwrap())
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 404, "{path}");
    }
    let status = http
        .post(base.join("sandbox/clock").unwrap())
        .json(&serde_json::json!({ "advance_secs": 3600 }))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
    // WeChat's paths and the shopper's phone are still there.
    assert_eq!(http.get(base.clone()).send().await.unwrap().status(), 200);
    handle.stop().await;
}

#[tokio::test]
async fn log_lines_from_hostile_input_are_bounded_escaped_and_rate_limited() {
    use crate::crash::{free_port, start_shop_with};
    let dir = tempfile::TempDir::new().unwrap();
    let database_url = crate::helpers::database_url(&dir).await;
    let port = free_port();
    let shop = start_shop_with(&database_url, port, &[("RUST_LOG", "info")]).await;
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let notify = format!("{base}/weixin/pay/notify/url");
    let escape = "\u{1b}[31mFORGED\n2026-01-01T00:00:00Z  INFO order paid";
    let hostile = [
        format!("<{}>x</{0}>", "R".repeat(30_000)),
        format!("<R{escape}>x</R{escape}>"),
        format!("<xml><a>&x{escape};</a></xml>"),
        format!(
            "<xml><return_code>SUCCESS</return_code><out_trade_no>{escape}</out_trade_no></xml>"
        ),
        format!("<xml>{escape}</xml>"),
    ];
    for body in &hostile {
        http.post(&notify).body(body.clone()).send().await.unwrap();
    }
    // A flood of forgeries.
    let flood = (0..300).map(|_| http.post(&notify).body("<xml><a>1</a></xml>").send());
    futures_util::future::join_all(flood).await;
    http.get(format!("{base}/pay/%1B%5B31mX%0Aforged"))
        .send()
        .await
        .unwrap();
    http.get(format!(
        "{base}/weixin/pay/status/query?out_trade_no=%1B%5B2J{}",
        "Q".repeat(4000)
    ))
    .send()
    .await
    .unwrap();
    let log = std::fs::read(shop.1.as_ref().unwrap().path()).unwrap();
    assert!(!log.contains(&0x1b), "a raw escape reached the log");
    let log = String::from_utf8_lossy(&log);
    for line in log.lines() {
        assert!(
            line.len() < 2_000,
            "a {}-byte log line: {}",
            line.len(),
            &line[..300]
        );
        assert!(
            !line.starts_with("2026-01-01T00:00:00Z"),
            "a forged line: {line}"
        );
    }
    let refused = log.matches("payment notify refused").count();
    assert!(
        (1..=60).contains(&refused),
        "{refused} refusal lines for 303 refusals"
    );
}

#[tokio::test]
async fn stalled_bodies_are_cut_off_and_the_shop_keeps_answering() {
    let app = TestApp::spawn_with(&[("REQUEST_BODY_TIMEOUT_SECS", "1")]).await;
    let before = app.stock(1).await;
    // 200 clients announce a 16 KiB form and send one byte of it.
    let mut stalled = Vec::new();
    for _ in 0..200 {
        let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        socket
            .write_all(
                b"POST /orders HTTP/1.1\r\nHost: shop\r\n\
                  Content-Type: application/x-www-form-urlencoded\r\n\
                  Content-Length: 16384\r\n\r\ns",
            )
            .await
            .unwrap();
        stalled.push(socket);
    }
    // Meanwhile the shop answers everyone else.
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/").await.status(), 200);
    // Each stalled client is answered and its connection closed, past the deadline.
    let started = tokio::time::Instant::now();
    let cut = stalled.into_iter().map(|mut socket| async move {
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer))
            .await
            .is_ok()
    });
    let closed = futures_util::future::join_all(cut).await;
    assert!(
        closed.iter().all(|c| *c),
        "every stalled connection is closed"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(app.stock(1).await, before, "nothing reserved");
    assert_eq!(app.get("/healthz").await.status(), 200);
}
