//! Shoppers polling the status endpoint at their own pace — the pay page's every-3-seconds
//! script, simulated — for `scripts/bench`'s fixed-rate measurement: open loop, each shopper on
//! its own schedule, latency from schedule time so a slow server cannot hide its queueing.
//!
//! Usage: `poller BASE_URL ORDERS_FILE SHOPPERS SECONDS [INTERVAL_MS]`
//! Prints: `requests rate_per_s p50_ms p99_ms errors`

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, base, orders, shoppers, seconds, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: poller BASE_URL ORDERS_FILE SHOPPERS SECONDS [INTERVAL_MS]");
    };
    let interval = Duration::from_millis(rest.first().map_or(Ok(3000), |s| s.parse())?);
    let shoppers: usize = shoppers.parse()?;
    let run_for = Duration::from_secs(seconds.parse()?);
    let orders: Vec<String> = std::fs::read_to_string(orders)?
        .lines()
        .map(str::to_owned)
        .collect();
    anyhow::ensure!(!orders.is_empty(), "no orders to poll");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(shoppers)
        .timeout(Duration::from_secs(10))
        .build()?;
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(0usize));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..shoppers {
        let url = format!(
            "{base}/weixin/pay/status/query?out_trade_no={}",
            orders[i % orders.len()]
        );
        let (http, latencies, errors) = (http.clone(), latencies.clone(), errors.clone());
        // Spread the shoppers over one interval, as real page loads would be.
        let offset = interval.mul_f64(i as f64 / shoppers as f64);
        tasks.push(tokio::spawn(async move {
            let mut due = started + offset;
            while due.duration_since(started) < run_for {
                tokio::time::sleep_until(due.into()).await;
                let ok = match http.get(&url).send().await {
                    Ok(response) => {
                        response.status().is_success() && response.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                if ok {
                    latencies.lock().unwrap().push(due.elapsed());
                } else {
                    *errors.lock().unwrap() += 1;
                }
                due += interval;
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut all = latencies.lock().unwrap().clone();
    all.sort();
    let pick = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{} {:.0} {:.2} {:.2} {}",
        all.len(),
        all.len() as f64 / elapsed,
        pick(0.50),
        pick(0.99),
        errors.lock().unwrap()
    );
    Ok(())
}
