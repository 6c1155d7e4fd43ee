//! `wxpay-checkout doctor`, run as the real binary against the real sandbox (a shop with
//! merchant credentials pointed at it): it passes with the right settings and names the cause
//! for a wrong key, an appid of another merchant, a notify URL with a query string, nothing
//! answering at the notify URL, an expired or foreign client certificate and a skewed clock;
//! the console's `/admin/doctor` shows the same findings.

use std::path::Path;

use serde_json::json;
use wxpay_checkout::config::{SANDBOX_APPID, SANDBOX_KEY, SANDBOX_MCH_ID};

use crate::cli::run_with;
use crate::helpers::TestApp;

/// A client certificate naming `cn`, valid from `from` to `until` (years), written as
/// WeChat's PEM pair into `dir`; the doctor's environment for it.
fn certificate(dir: &Path, cn: &str, from: i32, until: i32) -> Vec<(String, String)> {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.not_before = rcgen::date_time_ymd(from, 1, 1);
    params.not_after = rcgen::date_time_ymd(until, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    let (cert_file, key_file) = (
        dir.join(format!("{cn}-{until}.pem")),
        dir.join(format!("{cn}-{until}.key")),
    );
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    vec![
        ("WEIXIN_CERT_PEM".into(), cert_file.display().to_string()),
        ("WEIXIN_KEY_PEM".into(), key_file.display().to_string()),
    ]
}

/// The doctor of a live-configured shop at `app`, whose WeChat is `app`'s sandbox, with
/// `changes` over the right settings; its exit code and what it printed.
async fn doctor(
    app: &TestApp,
    cert: &[(String, String)],
    changes: &[(&str, &str)],
) -> (i32, String) {
    let base = format!("http://{}", app.addr);
    let sandbox = app.sandbox.to_string();
    let mut env: Vec<(String, String)> = [
        ("WEIXIN_APPID", SANDBOX_APPID),
        ("WEIXIN_PARTNER", SANDBOX_MCH_ID),
        ("WEIXIN_PARTNERKEY", SANDBOX_KEY),
        ("SHOP_NAME", "龙井茶庄"),
        ("WEIXIN_API_BASE", sandbox.as_str()),
        ("PUBLIC_BASE_URL", base.as_str()),
        // A live shop that asks for contact details seals them with a key of its own.
        (
            "CONTACT_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.extend(cert.iter().cloned());
    for (name, value) in changes {
        env.retain(|(k, _)| k != name);
        env.push((name.to_string(), value.to_string()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (code, out, err) = run_with("sqlite::memory:", &env, &["doctor"], "").await;
    (code, format!("{out}{err}"))
}

#[tokio::test]
async fn the_doctor_passes_with_the_right_settings_and_names_each_cause() {
    let app = TestApp::spawn().await;
    let dir = tempfile::TempDir::new().unwrap();
    let good = certificate(dir.path(), SANDBOX_MCH_ID, 2020, 2099);

    let (code, out) = doctor(&app, &good, &[]).await;
    assert_eq!(code, 0, "{out}");
    for expected in [
        "[ OK ] 商户凭证 Credentials",
        "err_code=ORDERNOTEXIST",
        "[ OK ] 系统时钟 Clock",
        "[ OK ] 商户API证书 Client certificate: loads, names mch_id 1900000109, valid until 2099-01-01",
        // A local shop: reachable by its local WeChat, but plain http on an odd port.
        "[WARN] 支付通知地址 Payment notify URL",
        "it is http",
        "answer: HTTP 200: <xml><return_code>",
        "Nothing found that would stop payments.",
    ] {
        assert!(out.contains(expected), "{expected:?} in {out}");
    }
    // The probe came through the shop's own notify route, refused as unsigned: nothing paid.
    let paid: i64 =
        sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM orders WHERE status = 'paid'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(paid, 0);

    let (code, out) = doctor(
        &app,
        &good,
        &[("WEIXIN_PARTNERKEY", "0123456789abcdef0123456789abcdef")],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("[FAIL] 商户凭证") && out.contains("SIGNERROR"),
        "{out}"
    );
    assert!(
        out.contains("return_msg=签名错误"),
        "WeChat's own text: {out}"
    );
    assert!(out.contains("not the APIv3 key"), "the usual causes: {out}");
    assert!(
        !out.contains("0123456789abcdef0123456789abcdef"),
        "the key is never printed"
    );

    // Without CONTACT_KEY the shop would not start: the first finding, and nothing asked.
    let (code, out) = doctor(&app, &good, &[("CONTACT_KEY", "")]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("[FAIL] 配置 Configuration") && out.contains("CONTACT_KEY"),
        "{out}"
    );
    assert!(!out.contains("ORDERNOTEXIST"), "{out}");

    let (code, out) = doctor(&app, &good, &[("WEIXIN_APPID", "wx0000000000000001")]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("appid and the mch_id do not belong together"),
        "{out}"
    );
    assert!(
        out.contains("不匹配") && out.contains("AppID账号管理"),
        "{out}"
    );

    let notify_with_query = format!("http://{}/weixin/pay/notify/url?from=wechat", app.addr);
    let (code, out) = doctor(&app, &good, &[("WEIXIN_NOTIFYURL", &notify_with_query)]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("[FAIL]") && out.contains("WEIXIN_NOTIFYURL") && out.contains("query string"),
        "{out}"
    );

    // Nothing listens there.
    let port = crate::crash::free_port();
    let (code, out) = doctor(
        &app,
        &good,
        &[("PUBLIC_BASE_URL", &format!("http://127.0.0.1:{port}"))],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("[FAIL] 支付通知地址") && out.contains("nothing answers a POST there"),
        "{out}"
    );

    let expired = certificate(dir.path(), SANDBOX_MCH_ID, 2020, 2021);
    let (code, out) = doctor(&app, &expired, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("[FAIL] 商户API证书") && out.contains("expired on 2021-01-01"),
        "{out}"
    );
    let foreign = certificate(dir.path(), "1900009999", 2020, 2099);
    let (code, out) = doctor(&app, &foreign, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not this merchant's"), "{out}");

    // WeChat's clock ten minutes ahead of this machine's is this machine's ten minutes behind.
    app.set_faults(json!({ "clock_skew_secs": 600 })).await;
    let (code, out) = doctor(&app, &good, &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("[FAIL] 系统时钟") && out.contains("behind WeChat's by 60"),
        "{out}"
    );
    app.set_faults(json!({ "clock_skew_secs": -20 })).await;
    let (code, out) = doctor(&app, &good, &[]).await;
    assert_eq!(code, 0, "a small skew is a warning: {out}");
    assert!(
        out.contains("[WARN] 系统时钟") && out.contains("ahead of WeChat's by 2"),
        "{out}"
    );
}

#[tokio::test]
async fn the_console_shows_the_doctors_findings() {
    let app = TestApp::spawn().await;
    let (http, _) = crate::admin::sign_in(&app).await;
    let page = crate::admin::page(&app, &http, "/admin/doctor").await;
    for expected in [
        "<tr class=\"verdict-ok\" id=\"check-credentials\">",
        "<tr class=\"verdict-ok\" id=\"check-clock\">",
        "err_code=ORDERNOTEXIST",
        "id=\"check-notify_url\"",
        "Nothing found that would stop payments.",
    ] {
        assert!(page.contains(expected), "{expected:?} in {page}");
    }
}

#[tokio::test]
async fn in_sandbox_mode_the_doctor_examines_the_running_shops_sandbox() {
    let app = TestApp::spawn().await;
    let sandbox = format!(
        "{}:{}",
        app.sandbox.host_str().unwrap(),
        app.sandbox.port().unwrap()
    );
    let shop = app.addr.to_string();
    let env = [
        ("SANDBOX_LISTEN_ADDR", sandbox.as_str()),
        ("LISTEN_ADDR", shop.as_str()),
    ];
    let (code, out, _) = run_with("sqlite::memory:", &env, &["doctor"], "").await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(sandbox mode:"), "{out}");
    assert!(out.contains("[ OK ] 商户凭证"), "{out}");
    assert!(
        out.contains("[ OK ] 商户API证书 Client certificate: sandbox mode"),
        "{out}"
    );
    // Paying on a phone: H5 on, and the official account's AppSecret taken by its OAuth.
    assert!(out.contains("[ OK ] H5 支付 H5 payment"), "{out}");
    assert!(
        out.contains(
            "[ OK ] 公众号 Official account (JSAPI inside WeChat): WeChat takes the appid"
        ),
        "{out}"
    );
    let wrong_secret = [
        ("SANDBOX_LISTEN_ADDR", sandbox.as_str()),
        ("LISTEN_ADDR", shop.as_str()),
        ("WEIXIN_MP_APPSECRET", "0123456789abcdef0123456789abcdef"),
    ];
    let (code, out, _) = run_with("sqlite::memory:", &wrong_secret, &["doctor"], "").await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("[FAIL] 公众号 Official account"), "{out}");
    assert!(out.contains("errcode=40125"), "{out}");
    assert!(
        !out.contains("0123456789abcdef0123456789abcdef"),
        "the secret is never printed"
    );
    // With the shop stopped there is no sandbox to ask, and the doctor says what to do.
    let port = crate::crash::free_port();
    let nowhere = format!("127.0.0.1:{port}");
    let (code, out, _) = run_with(
        "sqlite::memory:",
        &[("SANDBOX_LISTEN_ADDR", nowhere.as_str())],
        &["doctor"],
        "",
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("start `wxpay-checkout`"), "{out}");
}
