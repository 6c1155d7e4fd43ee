//! What one reconciliation run costs when the database is full of finished orders: 1,000,000
//! closed or paid orders and 100 pending ones with prepays at the built-in sandbox. The run
//! must touch only the pending ones (the partial index on pending orders).
//!
//! Usage: `cargo run --release --example reconcile_cost [FINISHED] [PENDING]`

use std::time::{Duration, Instant};

use wxpay_checkout::checkout::reconcile::Reconciler;
use wxpay_checkout::checkout::{Checkout, Terms};
use wxpay_checkout::config::{SANDBOX_APPID, SANDBOX_KEY, SANDBOX_MCH_ID};
use wxpay_checkout::rt::AppRuntime;
use wxpay_checkout::sandbox::{SandboxConfig, SandboxServer};
use wxpay_checkout::store::Store;
use wxpay_checkout::wxpay::types::{Trade, UnifiedOrderRequest};
use wxpay_checkout::wxpay::{Client, ClientConfig, Merchant, SignType};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let finished: usize = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let pending: usize = args.next().map_or(Ok(100), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}/cost.db", dir.path().display());
    let rt = AppRuntime::current();
    let store = Store::connect(&url, &rt).await?;
    let merchant = Merchant {
        appid: SANDBOX_APPID.into(),
        mch_id: SANDBOX_MCH_ID.into(),
        key: SANDBOX_KEY.to_string().into(),
    };
    let sandbox = SandboxServer::start(
        std::net::TcpListener::bind("127.0.0.1:0")?,
        SandboxConfig::new(merchant.clone()),
        &rt,
    )?;
    let wechat = Client::new(
        ClientConfig::new(sandbox.base_url(), merchant, SignType::Md5),
        &rt,
    )?;
    tokio::spawn(sandbox.run());

    let started = Instant::now();
    let pool = sqlx::SqlitePool::connect(&url).await?;
    let mut tx = pool.begin().await?;
    for i in 0..finished {
        let paid = i % 2 == 0;
        sqlx::query(
            "INSERT INTO orders (out_trade_no, total_fee, status, body, product_id, expires_at,
                                 created_at, updated_at, closed_at, transaction_id, pay_time)
             VALUES ($1, 100, $2, 'x', '1', 2000, 1000, 1000, $3, $4, $5)",
        )
        .bind(format!("F{i:012}"))
        .bind(if paid { "paid" } else { "closed" })
        .bind((!paid).then_some(1000))
        .bind(paid.then(|| format!("T{i:012}")))
        .bind(paid.then_some(1000))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    println!(
        "{finished} finished orders loaded in {:.1?}",
        started.elapsed()
    );

    let now = chrono::Utc::now();
    for i in 0..pending {
        let no = format!("P{}{i:06}", now.timestamp());
        sqlx::query(
            "INSERT INTO orders (out_trade_no, total_fee, status, body, product_id, expires_at,
                                 created_at, updated_at)
             VALUES ($1, 100, 'pending', 'x', '1', $2, $3, $3)",
        )
        .bind(&no)
        .bind(now.timestamp() + 600)
        .bind(now.timestamp())
        .execute(&pool)
        .await?;
        let prepay = wechat
            .unified_order(&UnifiedOrderRequest {
                body: "x".into(),
                out_trade_no: no.clone(),
                total_fee: 100,
                spbill_create_ip: "127.0.0.1".into(),
                notify_url: "http://127.0.0.1:9/n".into(),
                trade: Trade::Native {
                    product_id: "1".into(),
                },
                attach: None,
                time_start: None,
                time_expire: None,
            })
            .await?;
        sqlx::query(
            "UPDATE orders SET prepay_id = $1, code_url = $2, code_url_expires_at = $3,
                               sign_type = 'MD5' WHERE out_trade_no = $4",
        )
        .bind(&prepay.prepay_id)
        .bind(&prepay.code_url)
        .bind(now.timestamp() + 600)
        .bind(&no)
        .execute(&pool)
        .await?;
    }

    let interval = Duration::from_secs(30);
    let terms = Terms {
        shop_name: "茶舍 Tea House".into(),
        icp_beian: None,
        shop_contact: None,
        notify_alarm: Default::default(),
        refund_notify_url: "http://127.0.0.1:9/weixin/pay/refund/notify".parse()?,
        auto_refund_late_payments: false,
        notify_url: "http://127.0.0.1:9/weixin/pay/notify/url".parse()?,
        spbill_create_ip: "127.0.0.1".into(),
        order_ttl: Duration::from_secs(600),
        reconcile_interval: interval,
        bill_fetch_at: chrono::NaiveTime::from_hms_opt(10, 30, 0).unwrap(),
        reconcile_max_attempts: Some(10),
        pending_per_client: 0,
        order_rate_per_minute: 0,
        checkout_fields: Vec::new(),
        outbox: Default::default(),
        privacy: Default::default(),
        push: Default::default(),
        phones: wxpay_checkout::checkout::PhoneTerms {
            h5: false,
            oauth: None,
            public_base_url: "http://127.0.0.1:9/".parse().unwrap(),
        },
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (checkout, _background) = Checkout::start(store, wechat.into(), terms, &rt, &shutdown);
    let job = Reconciler::new(checkout);
    let start = chrono::Utc::now();
    // One interval apart, as the job runs: each run finds every pending order due again.
    for run in 1..=3 {
        let at = start + chrono::Duration::from_std(interval * (run - 1))?;
        let started = Instant::now();
        let report = job.run_once(at).await?;
        println!(
            "run {run}: {:.1?} — queried {}, still unpaid {}",
            started.elapsed(),
            report.queried,
            report.still_unpaid
        );
    }
    Ok(())
}
