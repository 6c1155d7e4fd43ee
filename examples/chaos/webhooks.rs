//! The merchant's webhook receiver in the chaos run: a real HTTP server that checks every
//! event's Standard Webhooks signature with its own HMAC, answers 503 to one delivery in five
//! (so retries happen across the shop's restarts), and keeps the ids of the `order.paid` events
//! it took. The invariant: every paid order has exactly one `order.paid` event id delivered,
//! and no other order has one.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;

/// The secret the shop signs with.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Default)]
struct Seen {
    /// out_trade_no → the ids of the `order.paid` events taken for it.
    paid: Mutex<HashMap<String, HashSet<String>>>,
    taken: AtomicUsize,
    refused: AtomicUsize,
    bad_signatures: AtomicUsize,
}

pub struct Hooks {
    pub url: String,
    seen: Arc<Seen>,
}

fn verifies(request: &HttpRequest, body: &[u8]) -> bool {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let key = BASE64
        .decode(SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", header("webhook-id"), header("webhook-timestamp")).as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()));
    header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}

async fn receive(request: HttpRequest, body: web::Bytes, seen: web::Data<Seen>) -> HttpResponse {
    if !verifies(&request, &body) {
        seen.bad_signatures.fetch_add(1, Ordering::Relaxed);
        return HttpResponse::BadRequest().finish();
    }
    if rand::rng().random_bool(0.2) {
        seen.refused.fetch_add(1, Ordering::Relaxed);
        return HttpResponse::ServiceUnavailable().finish();
    }
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return HttpResponse::BadRequest().finish();
    };
    seen.taken.fetch_add(1, Ordering::Relaxed);
    if event["type"] == "order.paid" {
        if let (Some(no), Some(id)) = (event["data"]["out_trade_no"].as_str(), event["id"].as_str())
        {
            seen.paid
                .lock()
                .unwrap()
                .entry(no.to_owned())
                .or_default()
                .insert(id.to_owned());
        }
    }
    HttpResponse::NoContent().finish()
}

impl Hooks {
    pub fn start() -> anyhow::Result<Hooks> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}/hooks", listener.local_addr()?);
        let seen = web::Data::new(Seen::default());
        let data = seen.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::post().to(receive))
        })
        .workers(1)
        .listen(listener)?
        .run();
        tokio::spawn(server);
        Ok(Hooks {
            url,
            seen: seen.into_inner(),
        })
    }

    /// Waits (up to a minute) for the shop to deliver everything, then checks the invariant.
    /// Returns the violations and a line of figures.
    pub async fn check(&self, db: &sqlx::AnyPool) -> anyhow::Result<(Vec<String>, String)> {
        let until = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut waiting: i64;
        loop {
            waiting = sqlx::query_scalar(
                "SELECT (SELECT COUNT(*) FROM outbox_deliveries WHERE state <> 'delivered')
                      + (SELECT COUNT(*) FROM outbox_events WHERE fanned_at IS NULL)",
            )
            .fetch_one(db)
            .await?;
            if waiting == 0 || tokio::time::Instant::now() >= until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let mut violations = Vec::new();
        if waiting > 0 {
            violations.push(format!("{waiting} events not delivered after 60 s"));
        }
        let paid: Vec<(String,)> =
            sqlx::query_as("SELECT out_trade_no FROM orders WHERE status = 'paid'")
                .fetch_all(db)
                .await?;
        let paid: HashSet<String> = paid.into_iter().map(|(no,)| no).collect();
        let seen = self.seen.paid.lock().unwrap().clone();
        for no in &paid {
            match seen.get(no).map(HashSet::len) {
                Some(1) => {}
                None => violations.push(format!("paid order {no}: no order.paid delivered")),
                Some(n) => violations.push(format!("paid order {no}: {n} order.paid ids")),
            }
        }
        for no in seen.keys().filter(|no| !paid.contains(*no)) {
            violations.push(format!(
                "order {no} is not paid but had an order.paid event"
            ));
        }
        let bad = self.seen.bad_signatures.load(Ordering::Relaxed);
        if bad > 0 {
            violations.push(format!("{bad} deliveries with a bad signature"));
        }
        let figures = format!(
            "webhooks: {} taken, {} refused (503) and retried, order.paid for {} of {} paid orders",
            self.seen.taken.load(Ordering::Relaxed),
            self.seen.refused.load(Ordering::Relaxed),
            seen.len(),
            paid.len()
        );
        Ok((violations, figures))
    }
}
