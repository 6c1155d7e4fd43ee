//! Two shop processes on one PostgreSQL database, beside one WeChat Pay sandbox: notifies reach
//! either replica, both run the reconciliation job, and still no order changes state twice and
//! no stock is restored twice.

use std::time::Duration;

use tempfile::TempDir;

use crate::crash::{free_port, start_shop_with};
use crate::helpers::{
    database_url, no_redirects, on_postgres, pay_at_sandbox, place_order_at, raw_pool,
    wait_for_zero,
};
use crate::notify::{notify_fields, signed};

#[tokio::test]
async fn two_replicas_never_apply_a_transition_twice() {
    if !on_postgres() {
        eprintln!("SKIPPED: replicas share PostgreSQL; run with TEST_DATABASE=postgres");
        return;
    }
    let dir = TempDir::new().unwrap();
    let database_url = database_url(&dir).await;
    let (_sandbox, sandbox) = crate::crash::start_sandbox().await;
    let env = [
        ("WEIXIN_API_BASE", sandbox.as_str()),
        ("RECONCILE_INTERVAL_SECS", "1"),
        ("RECONCILE_MAX_ATTEMPTS", "2"),
    ];
    // Both start at once: migrations and the demo catalogue happen once.
    let (port_a, port_b) = (free_port(), free_port());
    let (_a, _b) = tokio::join!(
        start_shop_with(&database_url, port_a, &env),
        start_shop_with(&database_url, port_b, &env)
    );
    let db = raw_pool(&database_url).await;
    let products: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM products")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(products, 6, "the demo catalogue was seeded once");
    let stock_before: i64 = sqlx::query_scalar("SELECT CAST(SUM(stock) AS BIGINT) FROM products")
        .fetch_one(&db)
        .await
        .unwrap();

    let http = no_redirects();
    let shops = [
        format!("http://127.0.0.1:{port_a}"),
        format!("http://127.0.0.1:{port_b}"),
    ];
    let mut orders = Vec::new();
    for i in 0..16 {
        let shop = &shops[i % 2];
        let location = place_order_at(&http, shop, &(i % 3 + 1).to_string()).await;
        // The pay page is opened on the other replica.
        let page = http
            .get(format!("{}{location}", shops[(i + 1) % 2]))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        orders.push(location.trim_start_matches("/pay/").to_owned());
    }
    let (to_pay, to_abandon) = orders.split_at(8);

    // Half are paid: the sandbox notifies the replica that placed the prepay, and the same
    // payment is also notified to the other one.
    for (i, no) in to_pay.iter().enumerate() {
        let paid = pay_at_sandbox(&http, &sandbox, no).await;
        let tid = paid["transaction_id"].as_str().unwrap();
        let total = paid["total_fee"].as_i64().unwrap();
        let body = signed(&notify_fields(no, total, tid), false);
        for shop in &shops {
            let answer = http
                .post(format!("{shop}/weixin/pay/notify/url"))
                .body(body.clone())
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(answer.contains("SUCCESS"), "{i}: {answer}");
        }
    }
    // The other half were abandoned an hour ago: both replicas' jobs close them.
    for no in to_abandon {
        sqlx::query(
            "UPDATE orders SET created_at = created_at - 3600, expires_at = expires_at - 3600
             WHERE out_trade_no = $1",
        )
        .bind(no)
        .execute(&db)
        .await
        .unwrap();
    }
    wait_for_zero(
        &db,
        "SELECT COUNT(*) FROM orders WHERE status = 'pending'",
        Duration::from_secs(30),
    )
    .await;
    for no in to_pay {
        let status: String =
            sqlx::query_scalar("SELECT status FROM orders WHERE out_trade_no = $1")
                .bind(no)
                .fetch_one(&db)
                .await
                .unwrap();
        assert_eq!(status, "paid", "{no}");
    }
    for no in to_abandon {
        let status: String =
            sqlx::query_scalar("SELECT status FROM orders WHERE out_trade_no = $1")
                .bind(no)
                .fetch_one(&db)
                .await
                .unwrap();
        assert_eq!(status, "closed", "{no}");
    }
    // Stock: the eight paid units stay sold; the eight closed ones came back exactly once.
    let stock_after: i64 = sqlx::query_scalar("SELECT CAST(SUM(stock) AS BIGINT) FROM products")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(stock_after, stock_before - 8);
    // One event per payment, applied once, as "paid".
    let events: Vec<(String, i64, Option<String>)> = sqlx::query_as(
        "SELECT out_trade_no, COUNT(*), MIN(outcome) FROM payment_events GROUP BY out_trade_no",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(events.len(), 8);
    for (no, count, outcome) in events {
        assert_eq!((count, outcome.as_deref()), (1, Some("paid")), "{no}");
    }
}
