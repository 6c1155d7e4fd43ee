//! The pay pages' event streams under load, for `scripts/bench`: `STREAMS` shoppers connected
//! to their orders' `/pay/{no}/events`, payments made through the sandbox at a steady `RATE`,
//! and the time from each payment to the `paid` event reaching its shopper; then the shop's
//! resident memory with that many streams open and with `TOTAL` open.
//!
//! Shoppers come from many loopback addresses (127.0.x.y), 16 to an address, as the shop allows
//! one client 16 streams.
//!
//! Usage: `streams SHOP_URL SANDBOX_URL ORDERS_FILE STREAMS RATE PAYMENTS TOTAL SHOP_PID`
//! Prints: `paid p50_ms p99_ms missing rss_at_streams_kb rss_at_total_kb`

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

const PER_ADDRESS: usize = 16;

fn source(i: usize) -> IpAddr {
    let n = i / PER_ADDRESS;
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        1 + (n / 250) as u8,
        1 + (n % 250) as u8,
    ))
}

fn rss_kb(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Opens a stream for `no` from `client`; returns once its first event arrived, with the
/// rest of the stream to watch.
async fn open(client: &reqwest::Client, shop: &str, no: &str) -> anyhow::Result<reqwest::Response> {
    let mut response = client
        .get(format!("{shop}/pay/{no}/events"))
        .send()
        .await?
        .error_for_status()?;
    let first = response.chunk().await?;
    anyhow::ensure!(first.is_some(), "the stream ended at once");
    Ok(response)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, shop, sandbox, orders, streams, rate, payments, total, pid] = args.as_slice() else {
        anyhow::bail!(
            "usage: streams SHOP_URL SANDBOX_URL ORDERS_FILE STREAMS RATE PAYMENTS TOTAL SHOP_PID"
        );
    };
    let (streams, rate, payments, total): (usize, f64, usize, usize) = (
        streams.parse()?,
        rate.parse()?,
        payments.parse()?,
        total.parse()?,
    );
    let orders: Vec<String> = std::fs::read_to_string(orders)?
        .lines()
        .take(streams)
        .map(str::to_owned)
        .collect();
    anyhow::ensure!(orders.len() == streams, "fewer orders than streams");
    let clients: Vec<reqwest::Client> = (0..total.div_ceil(PER_ADDRESS))
        .map(|n| {
            reqwest::Client::builder()
                .local_address(source(n * PER_ADDRESS))
                .pool_max_idle_per_host(PER_ADDRESS)
                .build()
        })
        .collect::<Result<_, _>>()?;
    let http = reqwest::Client::new();

    // The code each shopper would scan.
    let mut code_urls = Vec::with_capacity(payments);
    for no in orders.iter().take(payments) {
        let order: serde_json::Value = http
            .get(format!("{sandbox}/sandbox/orders/{no}"))
            .send()
            .await?
            .json()
            .await?;
        code_urls.push(order["code_url"].as_str().unwrap_or_default().to_owned());
    }

    // Every shopper on their pay page, listening.
    let received: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; streams]));
    let mut held = Vec::new();
    for (i, no) in orders.iter().enumerate() {
        let response = open(&clients[i / PER_ADDRESS], shop, no).await?;
        let received = received.clone();
        held.push(tokio::spawn(async move {
            let mut response = response;
            let mut seen = String::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                seen.push_str(&String::from_utf8_lossy(&chunk));
                if seen.contains("data: paid") {
                    received.lock().await[i] = Some(Instant::now());
                    seen.clear();
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_at_streams = rss_kb(pid);

    // Payments at a steady pace, each timed from the moment it is made.
    let mut sent = vec![None; payments];
    let started = Instant::now();
    let mut calls = Vec::new();
    for (i, code_url) in code_urls.iter().enumerate() {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        sent[i] = Some(Instant::now());
        let (http, url, code_url) = (
            http.clone(),
            format!("{sandbox}/sandbox/pay"),
            code_url.clone(),
        );
        calls.push(tokio::spawn(async move {
            http.post(url)
                .json(&serde_json::json!({ "code_url": code_url, "outcome": "success" }))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false)
        }));
    }
    for call in calls {
        call.await?;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let done = received
            .lock()
            .await
            .iter()
            .take(payments)
            .all(Option::is_some);
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let received = received.lock().await.clone();
    let mut latencies: Vec<Duration> = sent
        .iter()
        .zip(&received)
        .filter_map(|(sent, got)| Some(got.as_ref()?.duration_since(*sent.as_ref()?)))
        .collect();
    latencies.sort();
    let missing = payments - latencies.len();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };

    // More pages open on the same orders, up to `total`.
    for i in streams..total {
        let response = open(&clients[i / PER_ADDRESS], shop, &orders[i % streams]).await?;
        held.push(tokio::spawn(async move {
            let mut response = response;
            while let Ok(Some(_)) = response.chunk().await {}
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_at_total = rss_kb(pid);
    println!(
        "{} {:.1} {:.1} {missing} {rss_at_streams} {rss_at_total}",
        latencies.len(),
        at(0.5),
        at(0.99)
    );
    for task in held {
        task.abort();
    }
    Ok(())
}
