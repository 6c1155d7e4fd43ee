//! Notify health against the real sandbox: with notify delivery blocked, payments confirmed by
//! asking WeChat raise the missing-notify alarm (dashboard, `/metrics`, a `notify.missing`
//! event to the webhook), and once WeChat's retries get through it clears (`notify.restored`);
//! WeChat's mis-signed signature probes are refused and logged, and the log never holds a body.

use std::time::Duration;

use serde_json::json;

use crate::helpers::TestApp;
use crate::webhooks::Receiver;

/// Polls `condition` every 100 ms until it holds or `deadline` passes.
async fn eventually<F, Fut>(deadline: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn alarm_gauge(app: &TestApp) -> Option<String> {
    let metrics = app.ops_get("/metrics").await.text().await.unwrap();
    metrics
        .lines()
        .find(|l| l.starts_with("notify_missing_alarm "))
        .map(|l| l.trim_start_matches("notify_missing_alarm ").to_owned())
}

/// A console page, signed in.
async fn admin_page(app: &TestApp, path: &str) -> String {
    let (http, _) = crate::admin::sign_in(app).await;
    crate::admin::page(app, &http, path).await
}

fn event_types(receiver: &Receiver) -> Vec<String> {
    receiver
        .taken()
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn blocked_notifies_raise_the_alarm_and_it_clears_once_they_flow() {
    let receiver = Receiver::start().await;
    let hook = receiver.url("/hooks");
    let app = TestApp::spawn_with(&[
        ("NOTIFY_ALARM_WINDOW_SECS", "60"),
        ("NOTIFY_ALARM_MIN_PAYMENTS", "2"),
        ("WEBHOOK_URLS", &hook),
        ("WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("WEBHOOK_RETRY_SCALE", "0.01"),
    ])
    .await;
    // The notify URL is unreachable: every delivery is lost, WeChat keeps retrying.
    app.set_faults(json!({ "drop_notify": 1.0 })).await;
    for _ in 0..2 {
        let no = app.place_order(1, 1).await;
        let code_url = app.open_pay_page(&no).await;
        app.pay_in_sandbox(&code_url).await;
        // The pay page's status query finds the payment at WeChat.
        let found = eventually(Duration::from_secs(20), || async {
            let status = app
                .get(&format!("/weixin/pay/status/query?out_trade_no={no}"))
                .await
                .json::<serde_json::Value>()
                .await
                .unwrap();
            status["data"]["trade_state"] == "SUCCESS"
        })
        .await;
        assert!(found, "{no} confirmed by asking WeChat");
    }
    assert!(
        eventually(Duration::from_secs(20), || async {
            alarm_gauge(&app).await.as_deref() == Some("1")
        })
        .await,
        "the alarm is raised within the window"
    );
    let dashboard = admin_page(&app, "/admin").await;
    assert!(dashboard.contains("id=\"notify-alarm\""), "{dashboard}");
    assert!(
        dashboard.contains("2 payments confirmed by asking WeChat, 0 notifies"),
        "{dashboard}"
    );
    assert!(
        eventually(Duration::from_secs(20), || async {
            event_types(&receiver).contains(&"notify.missing".to_owned())
        })
        .await,
        "the webhook hears of it: {:?}",
        event_types(&receiver)
    );
    let missing = receiver
        .taken()
        .into_iter()
        .find(|e| e["type"] == "notify.missing")
        .unwrap();
    assert_eq!(missing["data"]["confirmed_by_asking"], 2, "{missing}");
    assert_eq!(missing["data"]["notifies"], 0, "{missing}");

    // The way is clear again: WeChat's next retries arrive (as duplicates) and it clears.
    app.set_faults(json!({})).await;
    assert!(
        eventually(Duration::from_secs(40), || async {
            alarm_gauge(&app).await.as_deref() == Some("0")
        })
        .await,
        "the alarm clears once notifies flow"
    );
    assert!(
        eventually(Duration::from_secs(20), || async {
            event_types(&receiver).contains(&"notify.restored".to_owned())
        })
        .await,
        "{:?}",
        event_types(&receiver)
    );
    let page = admin_page(&app, "/admin/notifies").await;
    assert!(page.contains("id=\"notify-ok\""), "{page}");
    assert!(
        page.contains("重复 duplicate"),
        "the retried notifies are logged: {page}"
    );
    assert_eq!(
        event_types(&receiver)
            .iter()
            .filter(|t| t.starts_with("notify."))
            .count(),
        2,
        "one event per change, not per check"
    );
}

#[tokio::test]
async fn signature_probes_are_refused_and_the_log_keeps_no_body() {
    let app = TestApp::spawn().await;
    app.set_faults(json!({ "probe_notify": 1.0 })).await;
    let no = app.place_order(1, 1).await;
    let code_url = app.open_pay_page(&no).await;
    app.pay_in_sandbox(&code_url).await;
    assert!(
        app.wait_for_status(&no, "paid", Duration::from_secs(10))
            .await
    );
    let stats: serde_json::Value = reqwest::get(app.sandbox.join("sandbox/stats").unwrap())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["probe_notifies_refused"], 1, "{stats}");
    assert_eq!(stats["probe_notifies_acknowledged"], 0, "{stats}");
    // Both are in the log once written (a second at most): the probe refused, the real one
    // accepted — outcomes only.
    let logged = eventually(Duration::from_secs(10), || async {
        let rows: Vec<(String, Option<String>, Option<String>)> =
            sqlx::query_as("SELECT outcome, reason, out_trade_no FROM notify_log ORDER BY id")
                .fetch_all(&app.db)
                .await
                .unwrap();
        rows.contains(&("refused".into(), Some("invalid signature".into()), None))
            && rows.contains(&("accepted".into(), None, Some(no.clone())))
    })
    .await;
    assert!(logged);
    let page = admin_page(&app, "/admin/notifies").await;
    assert!(
        page.contains("invalid signature") && page.contains(&no),
        "{page}"
    );
    assert!(
        !page.contains("<xml>") && !page.contains("transaction_id"),
        "{page}"
    );
}
