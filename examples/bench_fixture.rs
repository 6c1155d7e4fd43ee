//! Fixtures for `scripts/bench`, written straight into the shop's SQLite file before the shop
//! starts: a product with ample stock and many pending orders, plus the files the load tool
//! replays — order numbers, and one signed payment notify per order.
//!
//! Usage: `bench_fixture DB_FILE OUT_DIR ORDERS`

use std::io::Write;

use secrecy::SecretString;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::ConnectOptions;
use wxpay_checkout::config::{SANDBOX_APPID, SANDBOX_KEY, SANDBOX_MCH_ID};
use wxpay_checkout::store::Store;
use wxpay_checkout::wxpay::{sign, xml, Fields, SignType};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, db, out, orders] = args.as_slice() else {
        anyhow::bail!("usage: bench_fixture DB_FILE OUT_DIR ORDERS");
    };
    let orders: usize = orders.parse()?;
    // Create the schema the shop's way, then bulk-load over a plain connection.
    let store = Store::connect(&format!("sqlite://{db}")).await?;
    store.close().await;
    let mut conn = SqliteConnectOptions::new()
        .filename(db)
        .journal_mode(SqliteJournalMode::Wal)
        .connect()
        .await?;
    let now = chrono::Utc::now().timestamp();
    let mut tx = sqlx::Connection::begin(&mut conn).await?;
    sqlx::query(
        "INSERT INTO products (id, name, price_fen, stock, created_at, updated_at)
         VALUES (1, '压测商品 Benchmark tea', 100, 1000000000, $1, $1)",
    )
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let key = SecretString::from(SANDBOX_KEY);
    let mut numbers = std::io::BufWriter::new(std::fs::File::create(format!("{out}/orders.txt"))?);
    let mut notifies =
        std::io::BufWriter::new(std::fs::File::create(format!("{out}/notifies.txt"))?);
    for i in 0..orders {
        let no = format!("B{now}{i:010}");
        sqlx::query(
            "INSERT INTO orders (out_trade_no, total_fee, status, body, product_id, expires_at,
                                 created_at, updated_at)
             VALUES ($1, 100, 'pending', '压测商品 x1', '1', $2, $3, $3)",
        )
        .bind(&no)
        .bind(now + 7200)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO order_items (out_trade_no, product_id, name, unit_price, num)
             VALUES ($1, 1, '压测商品', 100, 1)",
        )
        .bind(&no)
        .execute(&mut *tx)
        .await?;
        writeln!(numbers, "{no}")?;
        let mut notify: Fields = [
            ("appid", SANDBOX_APPID),
            ("mch_id", SANDBOX_MCH_ID),
            ("nonce_str", "5d2b6c2a8db53831f7eda20af46e531c"),
            ("return_code", "SUCCESS"),
            ("result_code", "SUCCESS"),
            ("openid", "oUpF8uMEb4qRXf22hE3X68TekukE"),
            ("is_subscribe", "N"),
            ("trade_type", "NATIVE"),
            ("bank_type", "CMC"),
            ("total_fee", "100"),
            ("cash_fee", "100"),
            ("fee_type", "CNY"),
            ("time_end", "20261128201513"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        notify.insert("out_trade_no".into(), no.clone());
        notify.insert("transaction_id".into(), format!("4200{now}{i:014}"));
        let signature = sign::sign(&notify, &key, SignType::Md5);
        notify.insert("sign".into(), signature);
        writeln!(notifies, "{}", xml::encode(&notify))?;
    }
    tx.commit().await?;
    numbers.flush()?;
    notifies.flush()?;
    Ok(())
}
