//! The shop binary and server as an operator meets them.

use std::process::Command;

use tempfile::TempDir;
use wxpay_checkout::startup::Application;

use crate::helpers::settings;

#[tokio::test]
async fn the_server_starts_on_a_free_port_and_reports_health() {
    let dir = TempDir::new().unwrap();
    let app = Application::build(&settings(&dir, &[])).await.unwrap();
    let (addr, ops) = (app.addr(), app.ops_addr());
    tokio::spawn(app.run());
    let response = reqwest::get(format!("http://{ops}/healthz")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(dir.path().join("checkout.db").exists());
    // Operations are not on the public shop port.
    for path in ["/healthz", "/metrics"] {
        let response = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
}

#[test]
fn a_bad_setting_stops_start_up_with_one_line_naming_it() {
    let dir = TempDir::new().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_wxpay-checkout"))
        .env("ORDER_TTL_SECS", "60")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/x.db", dir.path().display()),
        )
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("ORDER_TTL_SECS"), "{stderr}");
    assert!(
        !dir.path().join("x.db").exists(),
        "nothing is created on a bad start"
    );
}

#[test]
fn bad_contact_settings_stop_start_up_with_one_line_and_never_echo_the_key() {
    let key = "c2VjcmV0LWJ1dC1ub3QtMzItYnl0ZXM=";
    let live = [
        ("WEIXIN_APPID", "wx1234567890abcdef"),
        ("WEIXIN_PARTNER", "1234567890"),
        ("WEIXIN_PARTNERKEY", "Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0Lm"),
        ("SHOP_NAME", "龙井茶庄"),
        ("AUTO_REFUND_LATE_PAYMENTS", "false"),
    ];
    for (vars, var) in [
        (vec![("CONTACT_KEY", key)], "CONTACT_KEY"),
        (
            vec![("CONTACT_KEY", &*format!("{CONTACT_KEY},{key}"))],
            "CONTACT_KEY",
        ),
        (
            vec![("CONTACT_RETENTION_DAYS", "0")],
            "CONTACT_RETENTION_DAYS",
        ),
        (
            vec![("CONTACT_RETENTION_DAYS", "3 years")],
            "CONTACT_RETENTION_DAYS",
        ),
        // A live shop that asks for contact details needs a key of its own.
        (live.to_vec(), "CONTACT_KEY"),
    ] {
        let dir = TempDir::new().unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_wxpay-checkout"))
            .envs(vars.iter().copied())
            .env(
                "DATABASE_URL",
                format!("sqlite://{}/x.db", dir.path().display()),
            )
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{vars:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(var), "{vars:?}: {stderr}");
        assert!(
            !stderr.contains(key) && !stderr.contains(CONTACT_KEY),
            "{stderr}"
        );
        assert!(!dir.path().join("x.db").exists(), "nothing is created");
    }
}

#[test]
fn the_api_key_is_not_printed_when_credentials_are_wrong() {
    let key = "a-secret-key-that-is-not-32-chars";
    let output = Command::new(env!("CARGO_BIN_EXE_wxpay-checkout"))
        .env("WEIXIN_APPID", "wx8888888888888888")
        .env("WEIXIN_PARTNER", "1900000109")
        .env("WEIXIN_PARTNERKEY", key)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(all.contains("WEIXIN_PARTNERKEY"), "{all}");
    assert!(!all.contains(key), "{all}");
}

#[tokio::test]
async fn serve_in_sandbox_mode_starts_the_builtin_sandbox_over_http() {
    use wxpay_checkout::wxpay::{Client, ClientConfig, SignType};
    let dir = TempDir::new().unwrap();
    let app = Application::build(&settings(&dir, &[])).await.unwrap();
    let api_base = app.api_base().clone();
    assert_ne!(api_base.port(), Some(0), "the bound port is reported");
    tokio::spawn(app.run());
    let client = Client::new(
        ClientConfig::new(api_base, crate::helpers::demo_merchant(), SignType::Md5),
        &wxpay_checkout::rt::AppRuntime::current(),
    )
    .unwrap();
    let err = client.order_query("nothing-yet").await.unwrap_err();
    assert!(err.err_code().is_some(), "a signed business answer: {err}");
}

#[test]
fn the_sandbox_command_serves_alone_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_wxpay-checkout"))
        .arg("sandbox")
        .env("SANDBOX_LISTEN_ADDR", "127.0.0.1:0")
        .env("SANDBOX_TLS_LISTEN_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut base_url = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        if let Some(url) = event["base_url"].as_str() {
            base_url = Some(url.to_owned());
            break;
        }
    }
    let base_url = base_url.expect("the sandbox logs its base URL");
    // Keep reading, so the sandbox's later lines do not meet a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let answer = blocking::get_text(&format!("{base_url}pay/orderquery"));
    assert!(answer.contains("<return_code>"), "{answer}");
    crate::helpers::sigterm(&child);
    assert!(child.wait().unwrap().success());
}

/// `wxpay-checkout sandbox` with `SANDBOX_CERT_DIR`: its log lines up to the base URL, and the
/// process (stopped by the caller).
fn standalone_sandbox(dir: &std::path::Path) -> (std::process::Child, Vec<String>) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_wxpay-checkout"))
        .arg("sandbox")
        .env("SANDBOX_LISTEN_ADDR", "127.0.0.1:0")
        .env("SANDBOX_TLS_LISTEN_ADDR", "127.0.0.1:0")
        .env("SANDBOX_CERT_DIR", dir)
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.contains("\"base_url\"");
        seen.push(line);
        if done {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    (child, seen)
}

#[test]
fn the_sandbox_command_writes_the_v3_keys_and_keeps_them_across_restarts() {
    let dir = TempDir::new().unwrap();
    let (child, logs) = standalone_sandbox(dir.path());
    let base_url = serde_json::from_str::<serde_json::Value>(logs.last().unwrap()).unwrap()
        ["base_url"]
        .as_str()
        .unwrap()
        .to_owned();
    // v3 is served on the plain listener; unsigned, it is SIGN_ERROR. (The answer also means
    // the sandbox is past start-up, its signal handler in place.)
    let answer = blocking::get_text(&format!(
        "{base_url}v3/pay/transactions/out-trade-no/X1234567?mchid=1"
    ));
    assert!(answer.contains("SIGN_ERROR"), "{answer}");
    crate::helpers::sigterm(&child);
    let mut child = child;
    assert!(child.wait().unwrap().success());
    let env = std::fs::read_to_string(dir.path().join("wechatpay_v3.env")).unwrap();
    let value = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {env}"))
            .to_owned()
    };
    let serial = value("WEIXIN_MCH_SERIAL");
    assert_eq!(serial.len(), 40);
    assert!(value("WEIXIN_PAY_PUBLIC_KEY_ID").starts_with("PUB_KEY_ID_01"));
    let apiv3 = value("WEIXIN_APIV3_KEY");
    assert_eq!(apiv3, wxpay_checkout::sandbox::DEMO_APIV3_KEY);
    assert!(
        logs.iter().any(|l| l.contains(&serial)),
        "the serial is logged"
    );
    assert!(
        !logs
            .iter()
            .any(|l| l.contains(&apiv3) || l.contains("PRIVATE KEY")),
        "no secret is logged"
    );
    #[cfg(unix)]
    for name in ["apiclient_key.pem", "wechatpay_v3.env"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{name} is the owner's only");
    }
    // The merchant's API key is v3's and the v2 client certificate's, whose serial is v3's.
    let key = std::fs::read_to_string(dir.path().join("apiclient_key.pem")).unwrap();
    wxpay_checkout::wxpay::v3::MerchantKey::from_pem(&key).expect("an RSA key v3 signs with");
    let cert = pem::parse(std::fs::read(dir.path().join("apiclient_cert.pem")).unwrap()).unwrap();
    let serial_bytes = hex::decode(&serial).unwrap();
    assert!(
        cert.contents()
            .windows(serial_bytes.len())
            .any(|w| w == serial_bytes),
        "the certificate carries the serial"
    );
    let pub_key = std::fs::read_to_string(dir.path().join("pub_key.pem")).unwrap();

    // Restarted: the same keys.
    let (child, logs) = standalone_sandbox(dir.path());
    let base_url = serde_json::from_str::<serde_json::Value>(logs.last().unwrap()).unwrap()
        ["base_url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(blocking::get_text(&format!("{base_url}v3/bill/tradebill")).contains("SIGN_ERROR"));
    crate::helpers::sigterm(&child);
    let mut child = child;
    assert!(child.wait().unwrap().success());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("wechatpay_v3.env")).unwrap(),
        env
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("apiclient_key.pem")).unwrap(),
        key
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("pub_key.pem")).unwrap(),
        pub_key
    );
}

/// A tiny blocking GET for a test that runs outside any async runtime.
mod blocking {
    pub fn get_text(url: &str) -> String {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async { ::reqwest::get(url).await.unwrap().text().await.unwrap() })
    }
}

#[tokio::test]
async fn metrics_count_requests_notifies_transitions_and_wechat_calls() {
    let app = crate::helpers::TestApp::spawn().await;
    let no = app.place_order(1, 1).await;
    let code_url = app.open_pay_page(&no).await;
    app.pay_in_sandbox(&code_url).await;
    assert!(
        app.wait_for_status(&no, "paid", std::time::Duration::from_secs(5))
            .await
    );
    let metrics = app.ops_get("/metrics").await.text().await.unwrap();
    for expected in [
        "http_requests_total{route=\"/orders\",method=\"POST\",status=\"303\"}",
        "http_requests_total{route=\"/pay/{out_trade_no}\",method=\"GET\",status=\"200\"}",
        "notify_total{outcome=\"accepted\"}",
        "order_transitions_total{to=\"paid\"}",
        "wechat_api_duration_seconds_bucket{api=\"unifiedorder\"",
        "payments_applied_total{outcome=\"paid\"}",
        "payments_channel_depth",
    ] {
        assert!(
            metrics.contains(expected),
            "/metrics lacks {expected}:\n{metrics}"
        );
    }
    // Order numbers never become label values.
    assert!(!metrics.contains(&no));
}

#[tokio::test]
async fn health_is_503_when_the_database_does_not_answer() {
    use actix_web::{test, web, App};
    use wxpay_checkout::checkout::Checkout;
    use wxpay_checkout::rt::AppRuntime;
    use wxpay_checkout::store::Store;
    use wxpay_checkout::web::{ops_routes, AppState};
    use wxpay_checkout::wxpay::{Client, ClientConfig, SignType};

    let dir = TempDir::new().unwrap();
    let rt = AppRuntime::current();
    let store = Store::connect(&format!("sqlite://{}/h.db", dir.path().display()), &rt)
        .await
        .unwrap();
    let wechat = Client::new(
        ClientConfig::new(
            "http://127.0.0.1:9/".parse().unwrap(),
            crate::helpers::demo_merchant(),
            SignType::Md5,
        ),
        &rt,
    )
    .unwrap();
    let terms = crate::helpers::test_terms(std::time::Duration::from_secs(30), None);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (checkout, _background) =
        Checkout::start(store.clone(), wechat.into(), terms, &rt, &shutdown);
    let console = wxpay_checkout::console::Console::start(
        store.clone(),
        Some(crate::helpers::admin_password_hash()),
    )
    .await
    .unwrap();
    let state = web::Data::new(AppState::new(
        checkout,
        console,
        None,
        &"http://127.0.0.1:9/".parse().unwrap(),
        Vec::new(),
    ));
    let app = test::init_service(App::new().app_data(state).configure(ops_routes)).await;
    let ok = test::call_service(&app, test::TestRequest::get().uri("/healthz").to_request()).await;
    assert_eq!(ok.status(), 200);
    store.close().await;
    let down =
        test::call_service(&app, test::TestRequest::get().uri("/healthz").to_request()).await;
    assert_eq!(down.status(), 503);
}

#[tokio::test]
async fn the_healthcheck_command_reports_the_shops_health() {
    let app = crate::helpers::TestApp::spawn().await;
    let check = |addr: String| {
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_wxpay-checkout"))
                .arg("healthcheck")
                .env("OPS_LISTEN_ADDR", addr)
                .output()
                .unwrap()
                .status
        })
    };
    assert!(check(app.ops.to_string()).await.unwrap().success());
    let nothing = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    assert!(!check(nothing.to_string()).await.unwrap().success());
}

/// A live shop's `CONTACT_KEY` (32 bytes, base64).
const CONTACT_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

#[tokio::test]
async fn logs_are_json_lines_that_carry_the_order_number_and_never_the_api_key() {
    use crate::crash::{free_port, Shop};
    use std::process::Stdio;
    use std::time::Duration;

    let key = "Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0Lm";
    let merchant = [
        ("WEIXIN_APPID", "wx1234567890abcdef"),
        ("WEIXIN_PARTNER", "1234567890"),
        ("WEIXIN_PARTNERKEY", key),
        ("SHOP_NAME", "龙井茶庄"),
    ];
    let dir = TempDir::new().unwrap();
    let sandbox_port = free_port();
    let mut sandbox = Command::new(env!("CARGO_BIN_EXE_wxpay-checkout"));
    sandbox
        .arg("sandbox")
        .env("SANDBOX_LISTEN_ADDR", format!("127.0.0.1:{sandbox_port}"))
        .env("SANDBOX_TLS_LISTEN_ADDR", "127.0.0.1:0")
        .env("SANDBOX_CONTROLS", "1")
        .env("RUST_LOG", "debug")
        .env("LOG_FORMAT", "json")
        .stdout(std::fs::File::create(dir.path().join("sandbox.log")).unwrap())
        .stderr(Stdio::null());
    for (k, v) in merchant {
        sandbox.env(k, v);
    }
    let _sandbox = Shop(sandbox.spawn().unwrap(), None);
    let sandbox_url = format!("http://127.0.0.1:{sandbox_port}/");
    let port = free_port();
    let mut shop = Command::new(env!("CARGO_BIN_EXE_wxpay-checkout"));
    shop.env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("OPS_LISTEN_ADDR", "127.0.0.1:0")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/shop.db", dir.path().display()),
        )
        .env("WEIXIN_API_BASE", &sandbox_url)
        .env("AUTO_REFUND_LATE_PAYMENTS", "false")
        .env("CONTACT_KEY", CONTACT_KEY)
        .env("RUST_LOG", "debug")
        .env("LOG_FORMAT", "json")
        .stdout(std::fs::File::create(dir.path().join("shop.log")).unwrap())
        .stderr(Stdio::null());
    for (k, v) in merchant {
        shop.env(k, v);
    }
    let mut shop = Shop(shop.spawn().unwrap(), None);
    let base = format!("http://127.0.0.1:{port}");
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("{base}/")).await.is_err()
        || reqwest::get(&sandbox_url).await.is_err()
    {
        assert!(
            tokio::time::Instant::now() < until,
            "shop or sandbox did not start"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // A live shop sells only its own catalogue: one product, added by hand.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}/shop.db", dir.path().display()))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO products (id, sku, name, price_fen, stock, created_at, updated_at)
         VALUES (1, 'LJ', '龙井 250g', 12800, 5, 0, 0)",
    )
    .execute(&db)
    .await
    .unwrap();
    let http = crate::helpers::no_redirects();
    let location = crate::helpers::place_order_at(&http, &base, "1").await;
    let no = location.trim_start_matches("/pay/").to_owned();
    assert_eq!(
        http.get(format!("{base}{location}"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    crate::helpers::pay_at_sandbox(&http, &sandbox_url, &no).await;
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status: serde_json::Value = http
            .get(format!("{base}/weixin/pay/status/query?out_trade_no={no}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["data"]["trade_state"] == "SUCCESS" {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "not paid: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    crate::helpers::sigterm(&shop.0);
    shop.0.wait().unwrap();

    for log in ["shop.log", "sandbox.log"] {
        let text = std::fs::read_to_string(dir.path().join(log)).unwrap();
        assert!(!text.contains(key), "{log} shows the API key");
        assert!(!text.contains(CONTACT_KEY), "{log} shows the contact key");
        // Nor the buyer's phone number, in any spelling.
        assert!(
            !text.contains("13800138000"),
            "{log} shows the buyer's phone"
        );
        assert!(
            !text.contains("138 0013 8000"),
            "{log} shows the buyer's phone"
        );
        assert!(text.lines().count() > 3, "{log} is nearly empty");
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("{log}: not a JSON line ({e}): {line}"));
        }
    }
    let shop_log = std::fs::read_to_string(dir.path().join("shop.log")).unwrap();
    let with_order = shop_log
        .lines()
        .filter(|line| line.contains(&format!("\"out_trade_no\":\"{no}\"")))
        .count();
    assert!(
        with_order >= 3,
        "the order's spans and events name it:\n{shop_log}"
    );
}
