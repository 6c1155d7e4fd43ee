//! The merchant's command line, run as the real binary against a shop's database (as `docker
//! exec` would): `orders` in its three formats, `bill DATE` reconciling a day against the
//! running shop's sandbox, and `admin hash-password` making a hash the console then accepts.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::helpers::{buy_form, TestApp};

/// Runs the binary with `args` against `database_url`, `stdin` piped in; exit code and output.
async fn run(database_url: &str, args: &[&str], stdin: &str) -> (i32, String, String) {
    run_with(database_url, &[], args, stdin).await
}

/// [`run`] with more of the environment.
pub(crate) async fn run_with(
    database_url: &str,
    env: &[(&str, &str)],
    args: &[&str],
    stdin: &str,
) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wxpay-checkout"));
    command
        .args(args)
        .envs(env.iter().copied())
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let stdin = stdin.to_owned();
    // The shop under test shares this runtime: the command runs off it.
    let output = tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn orders_lists_the_shops_orders_as_a_table_csv_or_json() {
    let app = TestApp::spawn().await;
    let paid = app.place_order(1, 2).await;
    let code_url = app.open_pay_page(&paid).await;
    app.pay_in_sandbox(&code_url).await;
    assert!(
        app.wait_for_status(&paid, "paid", std::time::Duration::from_secs(10))
            .await
    );
    let mut form = buy_form("3", "1");
    form[2].1 = "李四".into();
    let pending = app
        .http
        .post(app.url("/orders"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(pending.status(), 303);
    let url = app.database_url.clone();

    let (code, out, err) = run(
        &url,
        &["orders", "--status", "paid", "--format", "json"],
        "",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["out_trade_no"], paid.as_str());
    assert_eq!(rows[0]["total_fee"], 25_600, "fen");
    assert_eq!(rows[0]["status"], "paid");
    assert_eq!(rows[0]["name"], "王小明");

    let (code, out, _) = run(&url, &["orders", "--format", "csv"], "").await;
    assert_eq!(code, 0);
    let mut reader = csv::Reader::from_reader(out.as_bytes());
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 2);
    assert_eq!(&records[0][6], "李四", "newest first");
    assert_eq!(&records[1][3], "256.00", "yuan");

    let (code, out, _) = run(&url, &["orders", "--since", "2020-01-01"], "").await;
    assert_eq!(code, 0);
    assert!(out.starts_with("out_trade_no"), "{out}");
    assert!(out.contains(&paid) && out.contains("李四"));
    assert!(out.trim_end().ends_with("2 orders, ¥295.00"), "{out}");
    let (code, out, _) = run(&url, &["orders", "--since", "2099-01-01"], "").await;
    assert_eq!(code, 0);
    assert!(out.contains("0 orders, ¥0.00"));

    for bad in [
        &["orders", "--status", "lost"][..],
        &["orders", "--format", "xml"],
        &["orders", "--since", "yesterday"],
        &["orders", "--status"],
    ] {
        let (code, _, err) = run(&url, bad, "").await;
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(err.contains("usage"), "{err}");
    }
}

#[tokio::test]
async fn hash_password_makes_a_hash_the_console_accepts() {
    let dir = tempfile::TempDir::new().unwrap();
    let url = format!("sqlite://{}/unused.db", dir.path().display());
    let (code, out, err) = run(&url, &["admin", "hash-password"], "茶舍的新密码 2026\n").await;
    assert_eq!(code, 0, "{err}");
    let phc = out.trim();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    let (code, _, err) = run(&url, &["admin", "hash-password"], "short\n").await;
    assert_eq!(code, 1);
    assert!(err.contains("at least 10"), "{err}");

    let app = TestApp::spawn_with(&[("ADMIN_PASSWORD_HASH", phc)]).await;
    let signed_in = app
        .http
        .post(app.url("/admin/login"))
        .form(&[("password", "茶舍的新密码 2026")])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    assert!(signed_in.headers().contains_key("set-cookie"));
}

#[tokio::test]
async fn bill_reconciles_a_day_and_prints_what_differs() {
    let app = TestApp::spawn().await;
    let no = app.place_order(1, 1).await;
    let code_url = app.open_pay_page(&no).await;
    app.pay_in_sandbox(&code_url).await;
    assert!(
        app.wait_for_status(&no, "paid", std::time::Duration::from_secs(10))
            .await
    );
    let time_end = app.sandbox_order(&no).await["time_end"]
        .as_str()
        .unwrap()
        .to_owned();
    let day = format!("{}-{}-{}", &time_end[..4], &time_end[4..6], &time_end[6..8]);
    let url = app.database_url.clone();
    // The running shop's sandbox, as a merchant's `docker exec` in sandbox mode reaches it.
    let base = app.sandbox.to_string();
    let env = [("WEIXIN_API_BASE", base.as_str())];

    let (code, out, err) = run_with(&url, &env, &["bill", &day], "").await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("{day}: reconciled")), "{out}");
    assert!(
        out.contains("1 lines (1 payments ¥128.00, 0 refunds ¥0.00"),
        "{out}"
    );
    assert!(out.contains("1 matched, 0 open discrepancies"), "{out}");

    app.set_faults(serde_json::json!({ "bill_alter_amount": 1.0 }))
        .await;
    let compact = day.replace('-', "");
    let (code, out, err) = run_with(&url, &env, &["bill", &compact], "").await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 open discrepancy"), "{out}");
    let line = out.lines().nth(1).unwrap_or_default();
    assert!(
        line.trim_start().starts_with("amount") && line.contains("WeChat ¥129.00 shop ¥128.00"),
        "{out}"
    );

    // WeChat unreachable: not reconciled, said so, exit 1.
    let (code, out, _) = run_with(
        &url,
        &[("WEIXIN_API_BASE", "http://127.0.0.1:9/")],
        &["bill", &day],
        "",
    )
    .await;
    assert_eq!(code, 1);
    assert!(out.contains("not reconciled yet"), "{out}");

    let (code, _, err) = run(&url, &["bill", "yesterday"], "").await;
    assert_eq!(code, 1);
    assert!(err.contains("2026-11-29"), "{err}");
    let (code, _, err) = run(&url, &["bill"], "").await;
    assert_eq!(code, 2);
    assert!(err.contains("usage"), "{err}");
}

#[tokio::test]
async fn webhook_secret_prints_a_fresh_secret_the_shop_accepts() {
    let dir = tempfile::TempDir::new().unwrap();
    let url = format!("sqlite://{}/unused.db", dir.path().display());
    let (code, first, err) = run(&url, &["webhook-secret"], "").await;
    assert_eq!(code, 0, "{err}");
    let (_, second, _) = run(&url, &["webhook-secret"], "").await;
    assert_ne!(first, second);
    let secret = wxpay_checkout::webhooks::Secret::parse(first.trim());
    assert!(secret.is_ok(), "{first}");
    let app = TestApp::spawn_with(&[
        ("WEBHOOK_URLS", "http://127.0.0.1:9/hooks"),
        ("WEBHOOK_SECRET", first.trim()),
    ])
    .await;
    assert_eq!(app.get("/").await.status(), 200);
}
