//! The shop as an attacker on the open internet meets it: every input a stranger controls is
//! bounded. Real server, real sandbox, loopback.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{buy_form, TestApp};

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
    let metrics = app.ops_get("/metrics").await.text().await.unwrap();
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
        let mut request = app.http.post(app.url("/orders")).form(&buy_form("1", "1"));
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
    // The cart's and the checkout's forms alike: a foreign page cannot fill a shopper's cart
    // or place its order.
    let cart = "cart=1:1";
    for path in ["/cart", "/cart/update", "/checkout"] {
        let refused = app
            .http
            .post(app.url(path))
            .header("sec-fetch-site", "cross-site")
            .header("cookie", cart)
            .form(&buy_form("1", "2"))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "{path}");
        assert!(!refused.headers().contains_key("set-cookie"), "{path}");
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
            .env("OPS_LISTEN_ADDR", "127.0.0.1:0")
            .env("SANDBOX_LISTEN_ADDR", "127.0.0.1:0")
            .env("SANDBOX_TLS_LISTEN_ADDR", "127.0.0.1:0")
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
        .env("SANDBOX_TLS_LISTEN_ADDR", "127.0.0.1:0")
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
    assert_eq!(app.ops_get("/healthz").await.status(), 200);
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
    assert_eq!(app.ops_get("/healthz").await.status(), 200);
}

/// A shop with per-client limits on, behind a proxy on loopback (so tests can speak as many
/// clients through `X-Forwarded-For`).
async fn limited_shop() -> TestApp {
    TestApp::spawn_with(&[
        ("PENDING_ORDERS_PER_CLIENT", "3"),
        ("ORDER_RATE_PER_MINUTE", "10"),
        ("TRUSTED_PROXIES", "127.0.0.1/32"),
    ])
    .await
}

/// POST /orders as the client at `ip`; the status and where it sends the shopper.
async fn buy_as(app: &TestApp, ip: &str, sku: i64, num: i64) -> (u16, Option<String>) {
    let response = app
        .http
        .post(app.url("/orders"))
        .header("x-forwarded-for", ip)
        .form(&buy_form(&sku.to_string(), &num.to_string()))
        .send()
        .await
        .unwrap();
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    (response.status().as_u16(), location)
}

#[tokio::test]
async fn a_hoarder_stops_at_the_caps_and_a_real_shopper_still_buys() {
    let app = limited_shop().await;
    let start = app.stock(1).await; // 50 of the demo's first tea
                                    // Three unpaid orders of 10; the fourth and later are refused, reserving nothing.
    let hoarder = "203.0.113.66";
    for num in 1..=3 {
        assert_eq!(buy_as(&app, hoarder, 1, num * 2).await.0, 303);
    }
    for num in [20, 30, 40] {
        let (status, _) = buy_as(&app, hoarder, 1, num).await;
        assert_eq!(status, 429);
    }
    assert_eq!(app.stock(1).await, start - 12);
    // The refusal tells nothing of what is left; the page says wait and pay.
    let refused = app
        .http
        .post(app.url("/orders"))
        .header("x-forwarded-for", hoarder)
        .form(&buy_form("1", "5"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    // Another client buys as usual.
    let (status, location) = buy_as(&app, "198.51.100.7", 1, 1).await;
    assert_eq!(status, 303);
    assert!(location.unwrap().starts_with("/pay/"));
    // A shopper who buys the same again is sent back to the order waiting for it.
    let (_, first) = buy_as(&app, "198.51.100.8", 2, 1).await;
    let (_, again) = buy_as(&app, "198.51.100.8", 2, 1).await;
    assert_eq!(first, again);
    // The stock message tells no count.
    let (status, _) = buy_as(&app, "198.51.100.10", 6, 99).await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn orders_are_rate_limited_per_client() {
    let app = TestApp::spawn_with(&[
        ("PENDING_ORDERS_PER_CLIENT", "100"),
        ("ORDER_RATE_PER_MINUTE", "10"),
        ("TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    // 25 distinct orders from one client: ten a minute (a minute's turn during the run at most
    // lets ten more through).
    let mut refused = 0;
    for i in 0..25 {
        let (status, _) = buy_as(&app, "198.51.100.9", i % 6 + 1, i / 6 + 1).await;
        refused += usize::from(status == 429);
    }
    assert!((5..=15).contains(&refused), "{refused} refused");
    // Another client is not slowed by it.
    assert_eq!(buy_as(&app, "198.51.100.10", 1, 1).await.0, 303);
}

#[tokio::test]
async fn x_forwarded_for_is_believed_only_from_trusted_proxies() {
    // No trusted proxy: whatever a client writes in X-Forwarded-For, it is 127.0.0.1.
    let app = TestApp::spawn_with(&[("PENDING_ORDERS_PER_CLIENT", "2")]).await;
    let statuses = [
        buy_as(&app, "203.0.113.1", 1, 1).await.0,
        buy_as(&app, "203.0.113.2", 1, 2).await.0,
        buy_as(&app, "203.0.113.3", 1, 3).await.0,
    ];
    assert_eq!(statuses, [303, 303, 429]);
}

#[tokio::test]
async fn an_order_whose_pay_page_is_never_opened_releases_its_stock_in_minutes() {
    let app = limited_shop().await;
    let start = app.stock(1).await;
    let (_, location) = buy_as(&app, "203.0.113.70", 1, 9).await;
    let no = location.unwrap().trim_start_matches("/pay/").to_owned();
    assert_eq!(app.stock(1).await, start - 9);
    let mut terms = crate::helpers::test_terms(Duration::from_secs(10), None);
    terms.pending_per_client = 3;
    let job = app
        .reconciler_on(crate::helpers::demo_merchant(), terms)
        .await;
    let created = app.created_at(&no).await;
    let report = job
        .run_once(created + chrono::Duration::seconds(90))
        .await
        .unwrap();
    assert_eq!(report.expired_without_prepay, 0);
    let report = job
        .run_once(created + chrono::Duration::seconds(121))
        .await
        .unwrap();
    assert_eq!(report.expired_without_prepay, 1, "{report:?}");
    assert_eq!(app.stock(1).await, start);
    // An order whose page was opened keeps the whole TTL.
    let (_, location) = buy_as(&app, "203.0.113.71", 1, 1).await;
    let kept = location.unwrap().trim_start_matches("/pay/").to_owned();
    app.open_pay_page(&kept).await;
    let report = job
        .run_once(app.created_at(&kept).await + chrono::Duration::minutes(3))
        .await
        .unwrap();
    assert_eq!(report.expired_without_prepay, 0);
    assert_eq!(app.order_row(&kept).await.0, "pending");
}

#[tokio::test]
async fn abusing_create_native_makes_one_unifiedorder_and_then_429() {
    let app = limited_shop().await;
    let (_, location) = buy_as(&app, "203.0.113.80", 1, 1).await;
    let no = location.unwrap().trim_start_matches("/pay/").to_owned();
    // The limit counts calls per clock minute: a burst that straddled a minute's end would be
    // counted in two. Start it well inside one.
    let second = chrono::Utc::now().timestamp().rem_euclid(60);
    if second > 50 {
        tokio::time::sleep(std::time::Duration::from_secs((61 - second) as u64)).await;
    }
    let calls = (0..100).map(|_| {
        app.http
            .get(app.url(&format!("/weixin/pay/create/native?out_trade_no={no}")))
            .header("x-forwarded-for", "203.0.113.80")
            .send()
    });
    let statuses: Vec<u16> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 60);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 40);
    assert_eq!(app.sandbox_stats().await["unifiedorder"], 1);
}
