//! Fixtures for `scripts/bench`, written straight into the shop's database before the shop
//! starts: a product with ample stock and many pending orders, plus the files the load tool
//! replays — order numbers, and one signed payment notify per order. Also counts payment events
//! for the notify figure.
//!
//! Usage: `bench_fixture load DATABASE_URL OUT_DIR ORDERS`
//!        `bench_fixture events DATABASE_URL`   (prints: recorded unapplied)

use std::io::Write;

use sqlx::Connection;
use wxpay_checkout::store::Store;

#[path = "support/notify.rs"]
mod notify;
use notify::signed_notify_at;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let args: Vec<String> = std::env::args().collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [_, "load", url, out, orders] => load(url, out, orders.parse()?).await,
        [_, "events", url] => {
            let mut conn = sqlx::AnyConnection::connect(url).await?;
            let (recorded, unapplied): (i64, i64) =
                sqlx::query_as("SELECT COUNT(*), COUNT(*) - COUNT(applied_at) FROM payment_events")
                    .fetch_one(&mut conn)
                    .await?;
            println!("{recorded} {unapplied}");
            Ok(())
        }
        _ => anyhow::bail!(
            "usage: bench_fixture load DATABASE_URL OUT_DIR ORDERS | events DATABASE_URL"
        ),
    }
}

async fn load(url: &str, out: &str, orders: usize) -> anyhow::Result<()> {
    // Create the schema the shop's way, then bulk-load over a plain connection.
    let store = Store::connect(url, &wxpay_checkout::rt::AppRuntime::current()).await?;
    store.close().await;
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    let now = chrono::Utc::now().timestamp();
    let mut tx = conn.begin().await?;
    sqlx::query(
        "INSERT INTO products (id, sku, name, price_fen, stock, created_at, updated_at)
         VALUES (1, 'BENCH-1', '压测商品 Benchmark tea', 100, 1000000000, $1, $1),
                (2, 'BENCH-2', '压测茶杯 Benchmark cup', 250, 1000000000, $1, $1),
                (3, 'BENCH-3', '压测茶盘 Benchmark tray', 990, 1000000000, $1, $1)",
    )
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let mut numbers = std::io::BufWriter::new(std::fs::File::create(format!("{out}/orders.txt"))?);
    let mut notifies =
        std::io::BufWriter::new(std::fs::File::create(format!("{out}/notifies.txt"))?);
    // Multi-row inserts of generated values (digits only), a chunk at a time.
    const CHUNK: usize = 500;
    let mut order_rows = Vec::with_capacity(CHUNK);
    let mut item_rows = Vec::with_capacity(CHUNK);
    for i in 0..orders {
        let no = format!("B{now}{i:010}");
        order_rows.push(format!(
            "('{no}', 100, 'pending', '压测商品 x1', '1', {}, {now}, {now})",
            now + 7200
        ));
        item_rows.push(format!("('{no}', 1, '压测商品', 100, 1)"));
        if order_rows.len() == CHUNK || i + 1 == orders {
            sqlx::query(&format!(
                "INSERT INTO orders (out_trade_no, total_fee, status, body, product_id, expires_at,
                                     created_at, updated_at) VALUES {}",
                order_rows.join(",")
            ))
            .execute(&mut *tx)
            .await?;
            sqlx::query(&format!(
                "INSERT INTO order_items (out_trade_no, product_id, name, unit_price, num) VALUES {}",
                item_rows.join(",")
            ))
            .execute(&mut *tx)
            .await?;
            order_rows.clear();
            item_rows.clear();
        }
        writeln!(numbers, "{no}")?;
        let transaction_id = format!("4200{now}{i:014}");
        writeln!(
            notifies,
            "{}",
            signed_notify_at(&no, 100, &transaction_id, "20261128201513")
        )?;
    }
    tx.commit().await?;
    numbers.flush()?;
    notifies.flush()?;
    Ok(())
}
