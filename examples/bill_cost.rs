//! What reconciling a day against WeChat's daily bill costs at 100,000 payments (SQLite): wall
//! time and peak memory of `Checkout::reconcile_bill_day` end to end (download GZIP, gunzip,
//! parse, compare, record), and of its parts alone — the reader on the plain bill, the download
//! (HTTP, gunzip, parse), the store's read of the day's payments.
//!
//! The database holds two Beijing days of paid orders with their payment events, PAYMENTS a
//! day. WeChat is a stand-in HTTP server answering only `POST /pay/downloadbill` with each
//! day's bill, written line for line in the format the sandbox writes (WeChat's `ALL` columns,
//! every value behind a backtick, amounts in yuan, the summary adding up the lines): the
//! sandbox keeps no bulk way to hold 100,000 paid trades. The first day's bill lists every
//! payment; the second's leaves FINDINGS payments out (shop-only) and writes FINDINGS others
//! 1.00 yuan higher (amount), so the cost of findings shows.
//!
//! Each measurement runs in a child process of its own (this program with `--step`), so that
//! its peak resident memory (`VmHWM`) is its own: the table gives the peak before the step
//! (the runtime, the database pool, the bill bytes the step starts from), the increase during
//! it, and the absolute peak.
//!
//! Usage: `cargo run --release --example bill_cost [PAYMENTS] [FINDINGS]`

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use chrono::NaiveDate;
use wxpay_checkout::checkout::{Checkout, Terms};
use wxpay_checkout::config::{SANDBOX_APPID, SANDBOX_KEY, SANDBOX_MCH_ID};
use wxpay_checkout::rt::AppRuntime;
use wxpay_checkout::store::Store;
use wxpay_checkout::wxpay::bill::{self, BillRequest, BillType};
use wxpay_checkout::wxpay::time::{beijing, beijing_date, beijing_midnight};
use wxpay_checkout::wxpay::{xml, Client, ClientConfig, Merchant, SignType};

/// The order body on every line, as a shop of teas writes it.
const BODY: &str = "茶舍-西湖龙井茶 250g x1";
const OPENID: &str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o";
/// WeChat's `ALL` bill header (as `src/sandbox/bill.rs` writes it).
const ALL_HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";
const SUMMARY_HEADER: &str =
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额";
/// Timed runs of the reader alone; the best is reported.
const PARSE_RUNS: usize = 5;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--step") {
        return step(&args[1..]).await;
    }
    let payments: usize = args.first().map_or(Ok(100_000), |a| a.parse())?;
    let findings: usize = args.get(1).map_or(Ok(100), |a| a.parse())?;
    anyhow::ensure!(
        2 * findings <= payments,
        "FINDINGS must leave room: at most PAYMENTS / 2"
    );
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("bill.db");
    let url = format!("sqlite://{}", db.display());

    // Two past Beijing days (yesterday's bill may not be final yet: either way is measured
    // the same).
    let today = beijing_date(chrono::Utc::now());
    let clean_day = today - chrono::Duration::days(2);
    let findings_day = today - chrono::Duration::days(1);

    let started = Instant::now();
    let store = Store::connect(&url, &AppRuntime::current()).await?;
    store.close().await;
    let pool = sqlx::SqlitePool::connect(&url).await?;
    for day in [clean_day, findings_day] {
        fill_day(&pool, day, payments).await?;
    }
    pool.close().await;
    println!(
        "{} paid orders with their payment events loaded in {:.1?} ({} a day, {clean_day} and {findings_day})",
        2 * payments,
        started.elapsed(),
        payments
    );

    // The bills: every payment of the clean day; the other day less `findings` payments, spread
    // over the day (1,000 apart at 100,000 and 100), and `findings` others halfway between them
    // 1.00 yuan higher.
    let spacing = (payments / (2 * findings.max(1))).max(1) * 2;
    let omitted = |i: usize| findings > 0 && i.is_multiple_of(spacing) && i / spacing < findings;
    let altered = |i: usize| findings > 0 && i % spacing == spacing / 2 && i / spacing < findings;
    let clean = bill_text(clean_day, payments, |_| Some(0));
    let with_findings = bill_text(findings_day, payments, |i| {
        if omitted(i) {
            None
        } else if altered(i) {
            Some(100)
        } else {
            Some(0)
        }
    });
    for (day, text) in [(clean_day, &clean), (findings_day, &with_findings)] {
        let stem = bill::format_bill_date(day);
        std::fs::write(dir.path().join(format!("{stem}.txt")), text)?;
        std::fs::write(dir.path().join(format!("{stem}.gz")), gzip(text.as_bytes()))?;
    }
    let plain_size = clean.len();
    let gz_size = std::fs::metadata(
        dir.path()
            .join(format!("{}.gz", bill::format_bill_date(clean_day))),
    )?
    .len();
    drop((clean, with_findings));
    println!(
        "bill of {payments} lines: {plain_size} bytes plain ({:.0} bytes a line), {gz_size} bytes GZIP (MAX_BILL_BYTES {})",
        plain_size as f64 / payments as f64,
        bill::MAX_BILL_BYTES
    );

    let rows = [
        (
            "parse",
            clean_day,
            "wxpay::bill::parse, plain bill (best of 5)",
        ),
        (
            "download",
            clean_day,
            "download_bill: HTTP + gunzip + parse",
        ),
        (
            "payments",
            clean_day,
            "store: the day's payments (payments_between)",
        ),
        (
            "reconcile",
            clean_day,
            "reconcile_bill_day, all lines match",
        ),
        (
            "reconcile",
            findings_day,
            "reconcile_bill_day, with findings",
        ),
        ("reconcile", findings_day, "  the same day again (a re-run)"),
    ];
    println!();
    println!("| step | lines | matched | findings | wall | peak before | increase | peak |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, day, label) in rows {
        let output = Command::new(std::env::current_exe()?)
            .args(["--step", name, &dir.path().display().to_string()])
            .arg(bill::format_bill_date(day))
            .output()?;
        anyhow::ensure!(
            output.status.success(),
            "step {name} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let line = String::from_utf8(output.stdout)?;
        let f: Vec<&str> = line.trim().split('\t').collect();
        let [lines, matched, found, wall, before, after] = f[..] else {
            anyhow::bail!("step {name}: unexpected output {line:?}");
        };
        let (before, after): (u64, u64) = (before.parse()?, after.parse()?);
        println!(
            "| {label} | {lines} | {matched} | {found} | {wall} | {} | +{} | {} |",
            mib(before),
            mib(after.saturating_sub(before)),
            mib(after)
        );
    }
    println!();
    println!(
        "peaks are VmHWM of a fresh process per step: \"before\" is its peak when the step begins \
         (runtime, pool, the bill bytes it starts from), \"increase\" what the step added"
    );
    Ok(())
}

/// `payments` paid orders of `day` and their applied SUCCESS payment events, spread over the
/// day, in one transaction of multi-row inserts.
async fn fill_day(pool: &sqlx::SqlitePool, day: NaiveDate, payments: usize) -> anyhow::Result<()> {
    const CHUNK: usize = 500;
    let midnight = beijing_midnight(day).timestamp();
    let mut tx = pool.begin().await?;
    let mut orders = Vec::with_capacity(CHUNK);
    let mut events = Vec::with_capacity(CHUNK);
    for i in 0..payments {
        let (no, transaction_id) = (out_trade_no(day, i), transaction_id(day, i));
        let pay_time = pay_time(midnight, i, payments);
        let created = pay_time - 60;
        let fee = total_fee(i);
        orders.push(format!(
            "('{no}', {fee}, 'paid', '{BODY}', '1', {}, {created}, {pay_time}, '{transaction_id}', \
             {pay_time}, {fee}, 0)",
            created + 600
        ));
        events.push(format!(
            "('{no}', 'SUCCESS', '{transaction_id}', {fee}, {pay_time}, 'notify', {pay_time}, \
             {pay_time}, 'paid', 'CNY', {fee}, 0)"
        ));
        if orders.len() == CHUNK || i + 1 == payments {
            sqlx::query(&format!(
                "INSERT INTO orders (out_trade_no, total_fee, status, body, product_id, expires_at,
                                     created_at, updated_at, transaction_id, pay_time, cash_fee,
                                     coupon_fee) VALUES {}",
                orders.join(",")
            ))
            .execute(&mut *tx)
            .await?;
            sqlx::query(&format!(
                "INSERT INTO payment_events (out_trade_no, result, transaction_id, total_fee,
                                             pay_time, source, received_at, applied_at, outcome,
                                             fee_type, cash_fee, coupon_fee) VALUES {}",
                events.join(",")
            ))
            .execute(&mut *tx)
            .await?;
            orders.clear();
            events.clear();
        }
    }
    tx.commit().await?;
    Ok(())
}

fn out_trade_no(day: NaiveDate, i: usize) -> String {
    format!("{}{i:08}", bill::format_bill_date(day))
}

/// 28 digits, as WeChat's are.
fn transaction_id(day: NaiveDate, i: usize) -> String {
    format!("4200{}{i:016}", bill::format_bill_date(day))
}

fn pay_time(midnight: i64, i: usize, payments: usize) -> i64 {
    midnight + (i as i64 * 86_400) / payments as i64
}

/// 1.00 to 99.99 yuan.
fn total_fee(i: usize) -> i64 {
    100 + (i as i64 * 7919) % 9_900
}

/// The day's `ALL` bill as the sandbox writes it: a line per payment `i` for which `raised`
/// says by how much the bill differs from the shop (`None`: left out), then the summary.
fn bill_text(day: NaiveDate, payments: usize, raised: impl Fn(usize) -> Option<i64>) -> String {
    let midnight = beijing_midnight(day).timestamp();
    let mut text = String::with_capacity(350 * (payments + 4));
    text.push_str(ALL_HEADER);
    text.push_str("\r\n");
    let (mut lines, mut settled, mut fees) = (0usize, 0i64, 0i64);
    for i in 0..payments {
        let Some(raise) = raised(i) else { continue };
        let fee = total_fee(i) + raise;
        let charge = (fee * 6 + 500) / 1000;
        let time = chrono::DateTime::from_timestamp(pay_time(midnight, i, payments), 0)
            .expect("a time of the day")
            .with_timezone(&beijing())
            .format("%Y-%m-%d %H:%M:%S");
        let _ = write!(
            text,
            "`{time},`{SANDBOX_APPID},`{SANDBOX_MCH_ID},`0,`,`{},`{},`{OPENID},`NATIVE,`SUCCESS,\
             `OTHERS,`CNY,`{},`0.00,`0,`0,`0.00,`0.00,`,`,`{BODY},`,`{},`0.60%,`{},`0.00,`\r\n",
            transaction_id(day, i),
            out_trade_no(day, i),
            yuan(fee),
            fee_yuan(charge),
            yuan(fee),
        );
        lines += 1;
        settled += fee;
        fees += charge;
    }
    text.push_str(SUMMARY_HEADER);
    text.push_str("\r\n");
    let _ = write!(
        text,
        "`{lines},`{},`0.00,`0.00,`{},`{},`0.00\r\n",
        yuan(settled),
        fee_yuan(fees),
        yuan(settled)
    );
    text
}

fn yuan(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

fn fee_yuan(fen: i64) -> String {
    format!("{}.{:02}000", fen / 100, fen % 100)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("compressing into a Vec");
    encoder.finish().expect("compressing into a Vec")
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// `VmHWM` (peak resident memory) of this process, in KiB.
fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One measurement, in this fresh process: prints `lines matched findings wall before after`.
async fn step(args: &[String]) -> anyhow::Result<()> {
    let [name, dir, date] = args else {
        anyhow::bail!("usage: bill_cost --step NAME DIR YYYYMMDD");
    };
    let dir = Path::new(dir);
    let day = bill::parse_bill_date(date).ok_or_else(|| anyhow::anyhow!("bad date {date}"))?;
    let rt = AppRuntime::current();
    if name == "parse" {
        let text = std::fs::read(dir.join(format!("{date}.txt")))?;
        let before = peak_kib();
        let mut best = Duration::MAX;
        let mut lines = 0;
        for _ in 0..PARSE_RUNS {
            let started = Instant::now();
            let read = bill::parse(&text, SANDBOX_MCH_ID)?;
            best = best.min(started.elapsed());
            lines = read.lines.len();
        }
        let after = peak_kib();
        println!("{lines}\t–\t–\t{best:.1?}\t{before}\t{after}");
        return Ok(());
    }

    let url = format!("sqlite://{}", dir.join("bill.db").display());
    let store = Store::connect(&url, &rt).await?;
    if name == "payments" {
        let (from, to) = (
            beijing_midnight(day).timestamp(),
            beijing_midnight(day.succ_opt().expect("a day after")).timestamp(),
        );
        let before = peak_kib();
        let started = Instant::now();
        let payments = store.payments_between(from, to).await?;
        let wall = started.elapsed();
        let after = peak_kib();
        println!("{}\t–\t–\t{wall:.1?}\t{before}\t{after}", payments.len());
        return Ok(());
    }
    let wechat = stand_in(dir, &rt)?;
    if name == "download" {
        let before = peak_kib();
        let started = Instant::now();
        let read = wechat
            .download_bill(&BillRequest {
                bill_date: day,
                bill_type: BillType::All,
                gzip: true,
            })
            .await?
            .ok_or_else(|| anyhow::anyhow!("no bill"))?;
        let wall = started.elapsed();
        let after = peak_kib();
        println!("{}\t–\t–\t{wall:.1?}\t{before}\t{after}", read.lines.len());
        return Ok(());
    }
    anyhow::ensure!(name == "reconcile", "unknown step {name}");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (checkout, _background) = Checkout::start(store, wechat.into(), terms()?, &rt, &shutdown);
    let before = peak_kib();
    let started = Instant::now();
    let done = checkout.reconcile_bill_day(day).await?;
    let wall = started.elapsed();
    let after = peak_kib();
    anyhow::ensure!(done.last_error.is_none(), "{:?}", done.last_error);
    println!(
        "{}\t{}\t{}\t{wall:.1?}\t{before}\t{after}",
        done.figures.lines, done.figures.matched, done.open_discrepancies
    );
    shutdown.cancel();
    Ok(())
}

/// WeChat's stand-in: `POST /pay/downloadbill` answers the GZIP bill of the `bill_date` asked
/// for (read from `DIR/yyyyMMdd.gz`), or `No Bill Exist`; nothing else is served.
fn stand_in(dir: &Path, rt: &AppRuntime) -> anyhow::Result<Client> {
    let mut bills = HashMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path: PathBuf = entry?.path();
        if path.extension().is_some_and(|e| e == "gz") {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            bills.insert(stem.to_owned(), web::Bytes::from(std::fs::read(&path)?));
        }
    }
    let bills = Arc::new(bills);
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = HttpServer::new(move || {
        let bills = bills.clone();
        App::new().route(
            "/pay/downloadbill",
            web::post().to(move |body: web::Bytes| {
                let bills = bills.clone();
                async move {
                    let date = xml::decode(&body)
                        .ok()
                        .and_then(|f| f.get("bill_date").cloned())
                        .unwrap_or_default();
                    match bills.get(&date) {
                        Some(bytes) => HttpResponse::Ok()
                            .content_type("application/octet-stream")
                            .body(bytes.clone()),
                        None => HttpResponse::Ok().content_type("text/xml").body(
                            "<xml><return_code><![CDATA[FAIL]]></return_code>\
                             <return_msg><![CDATA[No Bill Exist]]></return_msg>\
                             <error_code><![CDATA[20002]]></error_code></xml>",
                        ),
                    }
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    tokio::spawn(server);
    let merchant = Merchant {
        appid: SANDBOX_APPID.into(),
        mch_id: SANDBOX_MCH_ID.into(),
        key: SANDBOX_KEY.to_string().into(),
    };
    Ok(Client::new(
        ClientConfig::new(
            url::Url::parse(&format!("http://{addr}/"))?,
            merchant,
            SignType::Md5,
        ),
        rt,
    )?)
}

fn terms() -> anyhow::Result<Terms> {
    Ok(Terms {
        shop_name: "茶舍 Tea House".into(),
        icp_beian: None,
        shop_contact: None,
        notify_alarm: Default::default(),
        refund_notify_url: "http://127.0.0.1:9/weixin/pay/refund/notify".parse()?,
        auto_refund_late_payments: false,
        notify_url: "http://127.0.0.1:9/weixin/pay/notify/url".parse()?,
        spbill_create_ip: "127.0.0.1".into(),
        order_ttl: Duration::from_secs(600),
        reconcile_interval: Duration::from_secs(30),
        bill_fetch_at: chrono::NaiveTime::from_hms_opt(10, 30, 0).expect("a time"),
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
    })
}
