//! What the merchant console's order list costs at 1,000,000 orders (SQLite): each kind of page —
//! the newest, a page deep in the list, a status, a day, a search by phone — read many times
//! through the store's own query, with p50/p99 per page, and the query plans.
//!
//! Usage: `cargo run --release --example orders_list_cost [ORDERS] [REPEATS]`

use std::time::{Duration, Instant};

use wxpay_checkout::console::{ListStatus, OrderFilter, PAGE_SIZE};
use wxpay_checkout::domain::OutTradeNo;
use wxpay_checkout::rt::AppRuntime;
use wxpay_checkout::store::Store;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let orders: i64 = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let repeats: usize = args.next().map_or(Ok(200), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}/list.db", dir.path().display());
    let store = Store::connect(&url, &AppRuntime::current()).await?;

    // A year of a busy shop: one order every 30 s; a third paid (half of those shipped), a third
    // closed, a few pending and a few owing refunds; a contact for each.
    let started = Instant::now();
    let pool = sqlx::SqlitePool::connect(&url).await?;
    let mut tx = pool.begin().await?;
    let first = 1_700_000_000i64;
    for i in 0..orders {
        let created = first + i * 30;
        let status = match i % 100 {
            0 => "pending",
            n if n % 2 == 0 => "paid",
            _ => "closed",
        };
        let paid = status == "paid";
        sqlx::query(
            "INSERT INTO orders (out_trade_no, total_fee, status, body, product_id, expires_at,
                                 created_at, updated_at, closed_at, transaction_id, pay_time,
                                 shipped_at, carrier, tracking_no, refund_due)
             VALUES ($1, $2, $3, '茶舍-西湖龙井茶 250g x1', '1', $4 + 600, $4, $4, $5, $6, $7,
                     $8, $9, $10, $11)",
        )
        .bind(format!("{created}{i:010}"))
        .bind(100 + i % 10_000)
        .bind(status)
        .bind(created)
        .bind((status == "closed").then_some(created + 600))
        .bind(paid.then(|| format!("4200{i:024}")))
        .bind(paid.then_some(created + 60))
        .bind((paid && i % 4 == 0).then_some(created + 86_400))
        .bind((paid && i % 4 == 0).then_some("顺丰速运"))
        .bind((paid && i % 4 == 0).then(|| format!("SF{i:010}")))
        .bind(i64::from(status == "closed" && i % 1000 == 1))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO order_contacts (out_trade_no, name, phone, address)
             VALUES ($1, $2, $3, '浙江省杭州市西湖区龙井路 1 号')",
        )
        .bind(format!("{created}{i:010}"))
        .bind(format!("买家{}", i % 50_000))
        .bind(format!("139{:08}", i % 200_000))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    println!(
        "loaded {orders} orders in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Written in plain, as before contacts were sealed: sealed now, as the first start does
    // (which is also what that start costs).
    store.use_contact_keys(&[]).await?;
    let started = Instant::now();
    let sealed = store.reseal_all_contacts(&Default::default()).await?;
    println!(
        "sealed {sealed} contacts in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    sqlx::query("ANALYZE").execute(&pool).await?;

    let at = |secs| chrono::DateTime::from_timestamp(secs, 0).expect("a valid time");
    let middle = first + orders / 2 * 30;
    let deep = Some((
        at(middle),
        OutTradeNo::parse(&format!("{middle}{:010}", orders / 2))?,
    ));
    let cases = [
        ("newest page", OrderFilter::default()),
        (
            "a page halfway down (keyset)",
            OrderFilter {
                after: deep.clone(),
                ..Default::default()
            },
        ),
        (
            "shipped, halfway down",
            OrderFilter {
                status: Some(ListStatus::Shipped),
                after: deep,
                ..Default::default()
            },
        ),
        (
            "refunds due",
            OrderFilter {
                status: Some(ListStatus::RefundDue),
                ..Default::default()
            },
        ),
        (
            "one day",
            OrderFilter {
                from: Some(at(middle)),
                to: Some(at(middle + 86_400)),
                ..Default::default()
            },
        ),
        (
            "search by phone",
            OrderFilter {
                search: Some("13900012345".into()),
                ..Default::default()
            },
        ),
    ];
    println!("\n| page | rows | p50 | p99 |\n|---|---|---|---|");
    for (what, filter) in &cases {
        let mut times: Vec<Duration> = Vec::with_capacity(repeats);
        let mut rows = 0;
        for _ in 0..repeats {
            let t = Instant::now();
            rows = store.list_orders(filter, PAGE_SIZE).await?.len();
            times.push(t.elapsed());
        }
        times.sort();
        let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
        println!(
            "| {what} | {rows} | {:.2} ms | {:.2} ms |",
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3
        );
    }
    println!();
    for (what, filter) in &cases {
        println!(
            "{what}: {}",
            store
                .explain_list_orders(filter, PAGE_SIZE)
                .await?
                .join("; ")
        );
    }
    Ok(())
}
