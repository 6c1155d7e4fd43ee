//! Telling the merchant's other systems: the delivery of the outbox's events.
//!
//! Every change that matters outside (an order paid, money due back, a refund made, an order
//! closed, a bill discrepancy) writes an event in the transaction that makes it (the store does
//! that). This job, on every replica, then:
//!
//! 1. **fans events out**: gives each its id (`evt_…`, random, fixed from then on) and its
//!    data (read once, then fixed), and one delivery per configured target that takes its kind
//!    — all in one transaction, by a conditional update, so one replica does it;
//! 2. **delivers**: claims due deliveries under a lease (one replica sends each), for each
//!    target and order only the earliest not yet delivered — an order's events arrive in order
//!    — and POSTs them: webhooks signed per Standard Webhooks, robots a short markdown message.
//!    A 2xx answer (for a robot, `errcode` 0) delivers; anything else is retried on WeChat's
//!    own notify schedule (15 s, 15 s, 30 s, 3 min, … 6 h: 15 retries over about a day), then
//!    the delivery is marked failed and the console can send it again. When a target answers
//!    again after failures, its waiting deliveries are sent at once instead of at their next
//!    retry.
//!
//! At least once: a crash between a send and its record sends it again, with the same
//! `webhook-id`, which receivers deduplicate by. Events older than [`KEEP_DAYS`] whose
//! deliveries are over are pruned.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::{Checkout, CheckoutError};
use crate::domain::{Fen, OutTradeNo};
use crate::store::{Attempted, Delivery, DeliveryCounts, DeliveryState, FannedEvent, OutboxEvent};
use crate::webhooks::{self, robots, EventType, Secret, Target, TargetKind};

/// WeChat's notify retry schedule, which deliveries keep: the waits before each retry.
pub const RETRY_SCHEDULE_SECS: [u64; 15] = [
    15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
];
/// How often the job looks for events and due deliveries.
const TURN: Duration = Duration::from_millis(500);
/// Deliveries claimed at a time.
const BATCH: i64 = 32;
/// Events fanned out per transaction. Each fan-out commit waits for the disk (an event's id
/// must be durable before it is first sent), and on SQLite it holds the one writer meanwhile:
/// few large fan-outs (one a turn under load) cost the notify path next to nothing, many small
/// ones would cost it a flush each.
const FAN_OUT_BATCH: i64 = 2000;
/// How long a claimed delivery is held before another replica may take it up.
const LEASE_SECS: i64 = 60;
/// A receiver's answer time.
const SEND_TIMEOUT: Duration = Duration::from_secs(15);
/// How much of a receiver's answer is read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Days events are kept once every delivery of theirs is over.
pub const KEEP_DAYS: i64 = 30;

/// Where events go and how they are signed (`WEBHOOK_URLS`, `WEBHOOK_SECRET`,
/// `WECOM_ROBOT_URL`, `DINGTALK_ROBOT_URL`, `DINGTALK_ROBOT_SECRET`, `WEBHOOK_RETRY_SCALE`).
#[derive(Debug, Clone)]
pub struct OutboxTerms {
    pub targets: Vec<Target>,
    /// Signs webhook deliveries; set whenever a webhook URL is.
    pub secret: Option<Secret>,
    /// Multiplies the retry schedule (1: WeChat's; tests and demos shorten it).
    pub retry_scale: f64,
    /// The shop's public address, for the console links in robot messages.
    pub console_base: Option<url::Url>,
}

impl Default for OutboxTerms {
    fn default() -> Self {
        OutboxTerms {
            targets: Vec::new(),
            secret: None,
            retry_scale: 1.0,
            console_base: None,
        }
    }
}

impl OutboxTerms {
    fn target(&self, id: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.id() == id)
    }

    /// The wait before retry number `retry` (1-based), or `None` when the schedule has run out.
    fn retry_wait(&self, retry: usize) -> Option<Duration> {
        let secs = *RETRY_SCHEDULE_SECS.get(retry.checked_sub(1)?)?;
        Some(Duration::from_secs_f64(secs as f64 * self.retry_scale))
    }
}

/// A delivery as the console shows it.
#[derive(Debug, Clone)]
pub struct DeliveryView {
    pub delivery: Delivery,
    /// The target as configured now, without secrets; `None` when it is no longer configured.
    pub target_label: Option<String>,
}

impl Checkout {
    fn outbox(&self) -> &OutboxTerms {
        &self.inner.terms.outbox
    }

    /// Runs the delivery job until `shutdown`: fan out, deliver, now and then prune. The
    /// shop runs it (every replica); a one-shot command does not — what it changes, the
    /// running shop delivers.
    pub async fn run_outbox(self, shutdown: CancellationToken) {
        let client = match sender() {
            Ok(client) => client,
            Err(e) => {
                tracing::error!(error = %e, "webhook deliveries cannot start");
                return;
            }
        };
        // A target that failed before a restart is unknown here: its first success hurries
        // its waiting deliveries.
        let mut failing: HashSet<String> = self.outbox().targets.iter().map(Target::id).collect();
        let mut last_prune: Option<DateTime<Utc>> = None;
        loop {
            if let Err(e) = self.outbox_turn(&client, &mut failing).await {
                tracing::warn!(error = %e, "outbox turn failed; trying again");
            }
            let now = Utc::now();
            if last_prune.is_none_or(|at| now - at > chrono::Duration::hours(1)) {
                last_prune = Some(now);
                let before = now - chrono::Duration::days(KEEP_DAYS);
                if let Err(e) = self.store().prune_outbox(before.timestamp()).await {
                    tracing::warn!(error = %e, "outbox prune failed");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(TURN) => {}
            }
        }
    }

    /// One turn: fans out what is new, then sends what is due (in parallel; each target and
    /// order one at a time).
    async fn outbox_turn(
        &self,
        client: &reqwest::Client,
        failing: &mut HashSet<String>,
    ) -> Result<(), CheckoutError> {
        loop {
            let fanned = self.fan_out().await?;
            if fanned < FAN_OUT_BATCH as usize {
                break;
            }
        }
        loop {
            let now = Utc::now().timestamp();
            if !self.store().has_due_deliveries(now).await? {
                return Ok(());
            }
            let due = self
                .store()
                .claim_deliveries(now, now + LEASE_SECS, BATCH)
                .await?;
            if due.is_empty() {
                return Ok(());
            }
            let claimed = due.len();
            let mut sends = tokio::task::JoinSet::new();
            for delivery in due {
                let (this, client) = (self.clone(), client.clone());
                sends.spawn(async move {
                    let attempted = this.attempt(&client, &delivery).await;
                    (delivery, attempted)
                });
            }
            while let Some(sent) = sends.join_next().await {
                let (delivery, attempted) = match sent {
                    Ok(sent) => sent,
                    Err(e) => {
                        // Its lease runs out and it is sent again.
                        tracing::error!(error = %e, "a delivery attempt did not finish");
                        continue;
                    }
                };
                let now = Utc::now().timestamp();
                self.store()
                    .finish_delivery(delivery.seq, &delivery.target, &attempted, now)
                    .await?;
                let kind = self.outbox().target(&delivery.target).map(|t| t.kind());
                let (result, hurry) = match &attempted {
                    Attempted::Delivered { .. } => ("delivered", failing.remove(&delivery.target)),
                    Attempted::Refused { retry_at, .. } => {
                        failing.insert(delivery.target.clone());
                        (
                            if retry_at.is_some() {
                                "retry"
                            } else {
                                "failed"
                            },
                            false,
                        )
                    }
                };
                metrics::counter!("webhook_deliveries_total",
                    "target" => kind_label(kind), "result" => result)
                .increment(1);
                if hurry {
                    self.store().hurry_target(&delivery.target, now).await?;
                }
            }
            if (claimed as i64) < BATCH {
                return Ok(());
            }
        }
    }

    /// Fans out up to [`FAN_OUT_BATCH`] new events; how many there were.
    async fn fan_out(&self) -> Result<usize, CheckoutError> {
        let events = self.store().unfanned_events(FAN_OUT_BATCH).await?;
        if events.is_empty() {
            return Ok(0);
        }
        let mut fanned = Vec::with_capacity(events.len());
        for event in &events {
            let kind = EventType::parse(&event.kind).ok_or_else(|| {
                CheckoutError::from(crate::store::StoreError::Corrupt(
                    "outbox_events.kind".into(),
                ))
            })?;
            let targets: Vec<String> = self
                .outbox()
                .targets
                .iter()
                .filter(|t| t.takes(kind))
                .map(Target::id)
                .collect();
            // An event no target takes is never sent: its data is not read.
            let data = if targets.is_empty() {
                Value::Object(Default::default())
            } else {
                self.event_data(kind, event).await?
            };
            fanned.push(FannedEvent {
                seq: event.seq,
                event_id: new_event_id(),
                data: data.to_string(),
                out_trade_no: event.out_trade_no.clone(),
                targets,
            });
        }
        self.store()
            .fan_out(&fanned, Utc::now().timestamp())
            .await?;
        Ok(events.len())
    }

    /// The `data` of an event, read from what it is about.
    async fn event_data(
        &self,
        kind: EventType,
        event: &OutboxEvent,
    ) -> Result<Value, CheckoutError> {
        let store = self.store();
        let order = match event.out_trade_no.as_deref().map(OutTradeNo::parse) {
            Some(Ok(no)) => store.order_now(&no).await?.map(|order| (no, order)),
            _ => None,
        };
        let items = match &order {
            Some((no, _)) => store.order_items(no).await?,
            None => Default::default(),
        };
        let items: Vec<Value> = items
            .iter()
            .map(|i| {
                json!({ "product_id": i.product_id, "name": i.name,
                        "unit_price": i.unit_price.0, "num": i.num })
            })
            .collect();
        let at = |t: Option<DateTime<Utc>>| t.map(rfc3339);
        Ok(match kind {
            EventType::OrderPaid => {
                let Some((no, o)) = &order else {
                    return Ok(json!({ "out_trade_no": event.subject }));
                };
                json!({
                    "out_trade_no": no.as_str(), "transaction_id": o.transaction_id,
                    "total_fee": o.total_fee.0, "cash_fee": o.cash_fee.map(|f| f.0),
                    "fee_type": "CNY", "pay_time": at(o.pay_time), "body": o.body,
                    "items": items,
                })
            }
            EventType::OrderClosed => {
                let Some((no, o)) = &order else {
                    return Ok(json!({ "out_trade_no": event.subject }));
                };
                json!({
                    "out_trade_no": no.as_str(), "total_fee": o.total_fee.0,
                    "closed_at": at(o.closed_at), "body": o.body, "items": items,
                })
            }
            EventType::OrderRefundDue => {
                let Some((no, o)) = &order else {
                    return Ok(json!({ "out_trade_no": event.subject }));
                };
                json!({
                    "out_trade_no": no.as_str(), "reason": event.detail,
                    "transaction_id": store.late_payment(no).await?,
                    "total_fee": o.total_fee.0, "body": o.body, "items": items,
                })
            }
            EventType::RefundSucceeded => match store.refund(&event.subject).await? {
                Some(r) => json!({
                    "out_trade_no": r.out_trade_no.as_str(), "out_refund_no": r.out_refund_no,
                    "refund_id": r.refund_id, "refund_fee": r.refund_fee.0,
                    "total_fee": r.total_fee.0, "late_payment": r.late,
                    "succeeded_at": at(r.settled_at),
                }),
                None => json!({ "out_refund_no": event.subject }),
            },
            EventType::NotifyMissing | EventType::NotifyRestored => {
                // What was measured when the alarm changed, as the store kept it.
                let alarm = store.alarm(&event.subject).await?;
                let measured: Value = alarm
                    .as_ref()
                    .and_then(|a| serde_json::from_str(&a.detail).ok())
                    .unwrap_or_else(|| json!({}));
                json!({
                    "alarm": event.subject, "at": rfc3339(event.created_at),
                    "window_secs": measured["window_secs"],
                    "confirmed_by_asking": measured["confirmed_by_asking"],
                    "confirmed_by_notify": measured["confirmed_by_notify"],
                    "notifies": measured["notifies"], "refused": measured["refused"],
                })
            }
            EventType::BillDiscrepancy => {
                let found = match event.subject.parse::<i64>() {
                    Ok(id) => store.discrepancy(id).await?,
                    Err(_) => None,
                };
                match found {
                    Some((day, d)) => json!({
                        "bill_date": day.format("%Y-%m-%d").to_string(),
                        "kind": d.kind.as_str(), "reference": d.reference,
                        "out_trade_no": d.out_trade_no,
                        "wechat_fee": d.wechat_fee.map(|f| f.0),
                        "shop_fee": d.shop_fee.map(|f| f.0),
                        "detail": d.detail, "action": d.action,
                    }),
                    None => json!({ "discrepancy": event.subject }),
                }
            }
        })
    }

    /// Sends one delivery once.
    async fn attempt(&self, client: &reqwest::Client, delivery: &Delivery) -> Attempted {
        let terms = self.outbox();
        let retry = |result: String| {
            let wait = terms.retry_wait(delivery.attempts as usize + 1);
            Attempted::Refused {
                result,
                retry_at: wait.map(|w| Utc::now().timestamp() + w.as_secs().max(1) as i64),
            }
        };
        let Some(target) = terms.target(&delivery.target) else {
            return Attempted::Refused {
                result: "the target is no longer configured".to_owned(),
                retry_at: None,
            };
        };
        let (Some(kind), Ok(data)) = (
            EventType::parse(&delivery.kind),
            serde_json::from_str::<Value>(&delivery.data),
        ) else {
            return Attempted::Refused {
                result: "the stored event does not read".to_owned(),
                retry_at: None,
            };
        };
        let now = Utc::now();
        let request = match target.kind() {
            TargetKind::Webhook => {
                let Some(secret) = &terms.secret else {
                    return retry("no WEBHOOK_SECRET to sign with".to_owned());
                };
                let body = webhooks::body(&delivery.event_id, kind, delivery.created_at, &data);
                let mut request = client
                    .post(target.url().clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json");
                for (name, value) in
                    webhooks::headers(secret, &delivery.event_id, now.timestamp(), &body)
                {
                    request = request.header(name, value);
                }
                request.body(body)
            }
            TargetKind::WeCom | TargetKind::DingTalk => {
                let (title, text) = robot_message(kind, &data, terms.console_base.as_ref());
                let (url, body) = if target.kind() == TargetKind::WeCom {
                    (target.url().clone(), robots::wecom_body(&text))
                } else {
                    let url = match target.robot_secret() {
                        Some(secret) => robots::dingtalk_signed_url(
                            target.url(),
                            &robots::robot_secret_text(secret),
                            now.timestamp_millis(),
                        ),
                        None => target.url().clone(),
                    };
                    (url, robots::dingtalk_body(&title, &text))
                };
                client
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body)
            }
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return retry(send_error(&e)),
        };
        let status = response.status();
        let answer = read_bounded(response).await;
        if !status.is_success() {
            return retry(format!("HTTP {}", status.as_u16()));
        }
        match target.kind() {
            TargetKind::Webhook => Attempted::Delivered {
                result: format!("HTTP {}", status.as_u16()),
            },
            TargetKind::WeCom | TargetKind::DingTalk => match robots::robot_answer(&answer) {
                Ok(()) => Attempted::Delivered {
                    result: "errcode 0".to_owned(),
                },
                Err(said) => retry(said),
            },
        }
    }

    /// The latest deliveries for the console, newest first (before event `before` when given).
    pub async fn deliveries(
        &self,
        state: Option<DeliveryState>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DeliveryView>, CheckoutError> {
        let deliveries = self.store().deliveries(state, before, limit).await?;
        Ok(deliveries.into_iter().map(|d| self.view(d)).collect())
    }

    /// An order's deliveries, oldest first.
    pub async fn order_deliveries(
        &self,
        no: &OutTradeNo,
    ) -> Result<Vec<DeliveryView>, CheckoutError> {
        let deliveries = self.store().deliveries_of(no.as_str()).await?;
        Ok(deliveries.into_iter().map(|d| self.view(d)).collect())
    }

    fn view(&self, delivery: Delivery) -> DeliveryView {
        let target_label = self.outbox().target(&delivery.target).map(Target::label);
        DeliveryView {
            delivery,
            target_label,
        }
    }

    /// Sends a delivery again now (the merchant asked), whatever became of it.
    pub async fn resend_delivery(&self, seq: i64, target: &str) -> Result<(), CheckoutError> {
        if self.outbox().target(target).is_none()
            || !self
                .store()
                .resend_delivery(seq, target, Utc::now().timestamp())
                .await?
        {
            return Err(CheckoutError::NotFound(super::Missing::Delivery));
        }
        Ok(())
    }

    /// Deliveries waiting and given up, for the dashboard and `/metrics`.
    pub async fn delivery_counts(&self) -> Result<DeliveryCounts, CheckoutError> {
        Ok(self.store().delivery_counts().await?)
    }

    /// The configured targets, as the console shows them.
    pub fn outbox_targets(&self) -> Vec<(String, String)> {
        self.outbox()
            .targets
            .iter()
            .map(|t| (t.id(), t.label()))
            .collect()
    }
}

/// The metric label of a target's kind (a small fixed set).
fn kind_label(kind: Option<TargetKind>) -> &'static str {
    match kind {
        Some(TargetKind::Webhook) => "webhook",
        Some(TargetKind::WeCom) => "wecom",
        Some(TargetKind::DingTalk) => "dingtalk",
        None => "removed",
    }
}

/// The HTTP client deliveries use: no redirects followed (a receiver that moved says so by
/// failing), no cookies, its own timeout.
fn sender() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(SEND_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!(
            "wxpay-checkout/",
            env!("CARGO_PKG_VERSION"),
            " (webhooks)"
        ))
        .build()
}

/// What went wrong sending, in a few words (never the URL: it may hold a key).
fn send_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        "the request failed".to_owned()
    }
}

/// Up to [`MAX_ANSWER_BYTES`] of an answer.
async fn read_bounded(mut response: reqwest::Response) -> Vec<u8> {
    let mut answer = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_ANSWER_BYTES - answer.len();
        answer.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if answer.len() >= MAX_ANSWER_BYTES {
            break;
        }
    }
    answer
}

/// A new event id: `evt_` and 128 random bits in hex.
fn new_event_id() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("evt_{hex}")
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A robot's message for an event: its title and markdown, in Chinese with English beside it.
fn robot_message(kind: EventType, data: &Value, console: Option<&url::Url>) -> (String, String) {
    let no = data["out_trade_no"].as_str().unwrap_or("?");
    let fen = |key: &str| {
        data[key]
            .as_i64()
            .map(|f| Fen(f).to_string())
            .unwrap_or_default()
    };
    let items: Vec<String> = data["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| {
                    format!(
                        "{} ×{}",
                        i["name"].as_str().unwrap_or("?"),
                        i["num"].as_i64().unwrap_or(0)
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let count = |key: &str| data[key].as_i64().unwrap_or(0);
    let minutes = count("window_secs") / 60;
    let (title, mut lines) = match kind {
        EventType::NotifyMissing | EventType::NotifyRestored => {
            let title = if kind == EventType::NotifyMissing {
                "支付通知没有到达 / Payment notifies are not arriving"
            } else {
                "支付通知已恢复 / Payment notifies arrive again"
            };
            let mut lines = vec![format!(
                "> 最近 {minutes} 分钟 In the last {minutes} min: {} 笔靠主动查询确认 confirmed by \
                 asking WeChat, {} 条通知到达 notifies arrived",
                count("confirmed_by_asking"),
                count("notifies")
            )];
            if kind == EventType::NotifyMissing {
                lines.push(
                    "> 请检查通知地址 Check the notify URL: `wxpay-checkout doctor`".to_owned(),
                );
            }
            if let Some(link) = console.and_then(|base| base.join("admin/notifies").ok()) {
                lines.push(format!("[在控制台查看 / Open in the console]({link})"));
            }
            return (
                title.to_owned(),
                format!("**{title}**\n{}", lines.join("\n")),
            );
        }
        EventType::OrderPaid => (
            "新订单已支付 / New paid order",
            vec![
                format!("> 订单 Order: {no}"),
                format!("> 金额 Amount: **{}**", fen("total_fee")),
                format!("> 商品 Items: {}", items.join("，")),
            ],
        ),
        _ => (
            "待退款 / Refund due",
            vec![
                format!("> 订单 Order: {no}"),
                format!("> 原因 Reason: {}", refund_reason(data["reason"].as_str())),
                format!("> 订单金额 Order amount: {}", fen("total_fee")),
            ],
        ),
    };
    if let Some(base) = console {
        if let Ok(link) = base.join(&format!("admin/orders/{no}")) {
            lines.push(format!("[在控制台查看 / Open in the console]({link})"));
        }
    }
    (
        title.to_owned(),
        format!("**{title}**\n{}", lines.join("\n")),
    )
}

fn refund_reason(reason: Option<&str>) -> &'static str {
    match reason {
        Some("paid_after_close") => "订单关闭后收到付款 / paid after the order closed",
        Some("amount_mismatch") => "付款金额与订单不符 / paid another amount",
        Some("refund_closed") => "退款被关闭，需再次退款 / the refund was closed; refund again",
        _ => "款项需退回 / money to give back",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_follow_wechats_schedule_then_stop() {
        let terms = OutboxTerms::default();
        assert_eq!(terms.retry_wait(1), Some(Duration::from_secs(15)));
        assert_eq!(terms.retry_wait(15), Some(Duration::from_secs(21600)));
        assert_eq!(terms.retry_wait(16), None);
        assert_eq!(terms.retry_wait(0), None);
        let total: u64 = RETRY_SCHEDULE_SECS.iter().sum();
        assert!((86_000..=87_000).contains(&total), "about a day: {total}");
        let fast = OutboxTerms {
            retry_scale: 0.01,
            ..OutboxTerms::default()
        };
        assert_eq!(fast.retry_wait(1), Some(Duration::from_millis(150)));
    }

    #[test]
    fn robot_messages_name_the_order_amount_and_goods() {
        let data = json!({ "out_trade_no": "N1", "total_fee": 12800,
                           "items": [{ "name": "龙井", "num": 2 }] });
        let base = url::Url::parse("https://shop.example.com/").unwrap();
        let (title, text) = robot_message(EventType::OrderPaid, &data, Some(&base));
        assert_eq!(title, "新订单已支付 / New paid order");
        assert!(text.contains("N1") && text.contains("¥128.00") && text.contains("龙井 ×2"));
        assert!(text.contains("https://shop.example.com/admin/orders/N1"));
        let due = json!({ "out_trade_no": "N2", "reason": "paid_after_close", "total_fee": 1 });
        let (title, text) = robot_message(EventType::OrderRefundDue, &due, None);
        assert!(title.contains("Refund due") && text.contains("paid after the order closed"));
    }
}
