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
