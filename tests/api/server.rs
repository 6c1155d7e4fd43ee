//! The shop binary and server as an operator meets them.

use std::process::Command;

use tempfile::TempDir;
use wxpay_checkout::startup::Application;

use crate::helpers::settings;

#[tokio::test]
async fn the_server_starts_on_a_free_port_and_reports_health() {
    let dir = TempDir::new().unwrap();
    let app = Application::build(&settings(&dir, &[])).await.unwrap();
    let addr = app.addr();
    tokio::spawn(app.run());
    let response = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(dir.path().join("checkout.db").exists());
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
    let client = Client::new(ClientConfig::new(
        api_base,
        crate::helpers::demo_merchant(),
        SignType::Md5,
    ))
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
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut base_url = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        if let Some(url) = event["base_url"].as_str() {
            base_url = Some(url.to_owned());
            break;
        }
    }
    let base_url = base_url.expect("the sandbox logs its base URL");
    let answer = blocking::get_text(&format!("{base_url}pay/orderquery"));
    assert!(answer.contains("<return_code>"), "{answer}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

/// A tiny blocking GET for a test that runs outside any async runtime.
mod blocking {
    pub fn get_text(url: &str) -> String {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async { ::reqwest::get(url).await.unwrap().text().await.unwrap() })
    }
}
