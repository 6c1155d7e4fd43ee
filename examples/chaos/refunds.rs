//! The chaos run's refunds: the merchant's `wxpay-checkout refund` against paid orders — in
//! full, in part, two at once for one order, some killed mid-call — and late payments made on
//! closed orders (the sandbox's `late_payment` fault) for the shop to refund by itself; then
//! the checks that refunds never exceed payments, on either side, and that every refund WeChat
//! made is the shop's, once, with the same amount and, once settled, the same state.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use sqlx::AnyPool;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// A refund command still running after this is killed: its call's answer is lost (the
/// sandbox's `timeout` fault holds it 30 s) or it is stuck; either way the shop's follower has
/// to finish what the command started.
const COMMAND_DEADLINE: Duration = Duration::from_secs(4);
/// Refund commands start within this many milliseconds of the storm: before the shop stops,
/// while it is down and as it restarts — not all at once, which would starve the storm of the
/// machine's cores before the stop.
const START_SPREAD_MS: u64 = 1500;
/// In the phase where WeChat's answers are lost: long enough for a command to record its
/// refund and send it, far shorter than the client's 10 s timeout.
const LOST_ANSWER_DEADLINE: Duration = Duration::from_millis(1500);

/// The merchant at the command line: `wxpay-checkout refund`, configured as the shop is.
#[derive(Clone)]
pub struct Merchant {
    pub binary: String,
    pub env: Vec<(&'static str, String)>,
}

/// What the merchant and the late payers did.
#[derive(Debug, Default)]
pub struct Tally {
    /// Refund commands run, by the amount asked for.
    pub full: usize,
    pub partial: usize,
    /// Orders refunded by two commands at once.
    pub concurrent: usize,
    /// Commands killed at a random moment.
    pub killed: usize,
    /// Commands run while WeChat lost most answers (killed at a deadline if theirs was).
    pub lost_answers: usize,
    /// How the commands ended: the state they printed, or why they refused, or killed.
    pub outcomes: BTreeMap<String, usize>,
    /// Payments made on closed orders.
    pub late_payments: usize,
}

/// The harness's side of refunds: who refunds, and what was done.
pub struct Refunds {
    pub merchant: Merchant,
    pub tally: Arc<Mutex<Tally>>,
}

impl Refunds {
    pub fn new(merchant: Merchant) -> Refunds {
        Refunds {
            merchant,
            tally: Arc::default(),
        }
    }

    /// Refunds up to `count` paid orders with something left to refund, one command each —
    /// all that is left or a part — or two at once, or one killed after a random moment; the
    /// commands run as tasks of `storm`.
    pub async fn start(
        &self,
        db: &AnyPool,
        storm: &mut JoinSet<()>,
        count: usize,
    ) -> anyhow::Result<()> {
        let candidates = refundable(db, count).await?;
        for (no, total_fee, refunded_fee) in candidates {
            let left = total_fee - refunded_fee;
            let part = || (left > 1).then(|| rand::rng().random_range(1..left));
            let roll: f64 = rand::rng().random();
            let on_time = Stop::Deadline(COMMAND_DEADLINE);
            let commands: Vec<(Option<i64>, Stop)> = if roll < 0.3 {
                vec![(None, on_time)]
            } else if roll < 0.6 {
                vec![(part(), on_time)]
            } else if roll < 0.8 {
                self.tally.lock().unwrap().concurrent += 1;
                vec![(None, on_time), (part(), on_time)]
            } else {
                self.tally.lock().unwrap().killed += 1;
                let amount = if rand::rng().random_bool(0.5) {
                    None
                } else {
                    part()
                };
                // A command takes some 50–150 ms: starting, recording, asking, applying.
                let moment = Duration::from_millis(rand::rng().random_range(10..150));
                vec![(amount, Stop::KillAt(moment))]
            };
            // Spread over the storm, the shop's stop and its restart (a pair starts together).
            let start_at = Duration::from_millis(rand::rng().random_range(0..START_SPREAD_MS));
            for (amount, stop) in commands {
                let command = self.command(no.clone(), amount, stop);
                storm.spawn(async move {
                    tokio::time::sleep(start_at).await;
                    command.await
                });
            }
        }
        Ok(())
    }

    /// Refunds up to `count` paid orders (all that is left or a part) while the sandbox loses
    /// most answers (its `timeout` fault, set by the caller): each command is killed at a
    /// deadline if its answer does not come, leaving a refund WeChat made and the shop does
    /// not know the outcome of. Returns when all have ended.
    pub async fn lose_answers(&self, db: &AnyPool, count: usize) -> anyhow::Result<()> {
        let candidates = refundable(db, count).await?;
        let mut commands = JoinSet::new();
        for (no, total_fee, refunded_fee) in candidates {
            let left = total_fee - refunded_fee;
            let amount = (left > 1 && rand::rng().random_bool(0.5))
                .then(|| rand::rng().random_range(1..left));
            self.tally.lock().unwrap().lost_answers += 1;
            commands.spawn(self.command(no, amount, Stop::Deadline(LOST_ANSWER_DEADLINE)));
        }
        while commands.join_next().await.is_some() {}
        Ok(())
    }

    /// One refund command, its amount and outcome tallied.
    fn command(
        &self,
        no: String,
        amount: Option<i64>,
        stop: Stop,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (merchant, tally) = (self.merchant.clone(), self.tally.clone());
        async move {
            let outcome = refund_command(&merchant, &no, amount, stop).await;
            let mut tally = tally.lock().unwrap();
            match amount {
                None => tally.full += 1,
                Some(_) => tally.partial += 1,
            }
            *tally.outcomes.entry(outcome).or_default() += 1;
        }
    }

    /// Pays up to `count` closed orders that WeChat knows (they had a prepay) — WeChat takes
    /// the money under the `late_payment` fault — as tasks of `storm`. The shop must refund
    /// each payment by itself.
    pub async fn pay_late(
        &self,
        db: &AnyPool,
        http: &reqwest::Client,
        sandbox: &str,
        storm: &mut JoinSet<()>,
        count: usize,
    ) -> anyhow::Result<()> {
        let closed: Vec<String> = sqlx::query_scalar(
            "SELECT out_trade_no FROM orders
             WHERE status = 'closed' AND code_url IS NOT NULL AND refund_due = 0
               AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.out_trade_no = orders.out_trade_no)
             ORDER BY RANDOM() LIMIT $1",
        )
        .bind(count as i64)
        .fetch_all(db)
        .await?;
        for no in closed {
            let (http, sandbox, tally) = (http.clone(), sandbox.to_owned(), self.tally.clone());
            storm.spawn(async move {
                let Some(order) = sandbox_order(&http, &sandbox, &no).await else {
                    return;
                };
                let Some(code_url) = order["code_url"].as_str() else {
                    return;
                };
                let Ok(paid) = http
                    .post(format!("{sandbox}sandbox/pay"))
                    .json(&serde_json::json!({ "code_url": code_url }))
                    .send()
                    .await
                else {
                    return;
                };
                let paid: serde_json::Value = paid.json().await.unwrap_or_default();
                if paid["ok"] == true {
                    tally.lock().unwrap().late_payments += 1;
                }
            });
        }
        Ok(())
    }
}

/// When a refund command is killed (SIGKILL) if it is still running.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// At a random moment chosen beforehand.
    KillAt(Duration),
    /// When it overstays.
    Deadline(Duration),
}

/// Runs `wxpay-checkout refund NO [AMOUNT]` until it ends or `stop`. Returns how it ended: the
/// state it printed, why it refused, or that it was killed.
async fn refund_command(merchant: &Merchant, no: &str, fee: Option<i64>, stop: Stop) -> String {
    let mut command = Command::new(&merchant.binary);
    command.arg("refund").arg(no);
    if let Some(fee) = fee {
        command.arg(format!("{}.{:02}", fee / 100, fee % 100));
    }
    let spawned = command
        .envs(merchant.env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return format!("not started: {e}"),
    };
    let deadline = Instant::now()
        + match stop {
            Stop::KillAt(after) | Stop::Deadline(after) => after,
        };
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill(); // SIGKILL
                let _ = child.wait();
                return match stop {
                    Stop::KillAt(_) => "killed".into(),
                    Stop::Deadline(_) => "killed at the deadline".into(),
                };
            }
            Ok(None) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(e) => return format!("not awaited: {e}"),
        }
    }
    // A few lines each: they fit the pipes, so the command never waited on them.
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut err);
    }
    // `R… ¥1.00 processing: accepted by WeChat, on its way`
    if let Some(state) = out.split_whitespace().nth(2) {
        return state.trim_end_matches(':').to_owned();
    }
    // `NO: at most ¥1.00 is left to refund; nothing was refunded`
    let why = err.lines().next().unwrap_or("no output");
    let why = why.split_once(": ").map_or(why, |(_, why)| why);
    let why = why.split_once("; nothing").map_or(why, |(why, _)| why);
    if why.contains("left to refund") {
        "refused: no more left".into()
    } else {
        format!("refused: {why}")
    }
}

/// A payment WeChat took, with the refunds it made of it.
struct WxPayment {
    out_trade_no: String,
    transaction_id: String,
    total_fee: i64,
    /// out_refund_no → (refund_fee, refund_status).
    refunds: BTreeMap<String, (i64, String)>,
}

/// Every payment the sandbox took, with its refunds if `with_refunds`.
async fn wechat_books(
    http: &reqwest::Client,
    sandbox: &str,
    with_refunds: bool,
) -> anyhow::Result<Vec<WxPayment>> {
    let taken: Vec<serde_json::Value> = http
        .get(format!("{sandbox}sandbox/payments"))
        .send()
        .await?
        .json()
        .await?;
    let mut books = Vec::with_capacity(taken.len());
    for payment in taken {
        let text = |name: &str| payment[name].as_str().unwrap_or_default().to_owned();
        let out_trade_no = text("out_trade_no");
        let mut refunds = BTreeMap::new();
        // Only a refunded order's trade_state is REFUND.
        if with_refunds && payment["trade_state"] == "REFUND" {
            let order: serde_json::Value = http
                .get(format!("{sandbox}sandbox/orders/{out_trade_no}"))
                .send()
                .await?
                .json()
                .await?;
            for refund in order["refunds"].as_array().into_iter().flatten() {
                refunds.insert(
                    refund["out_refund_no"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    (
                        refund["refund_fee"].as_i64().unwrap_or_default(),
                        refund["refund_status"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    ),
                );
            }
        }
        books.push(WxPayment {
            transaction_id: text("transaction_id"),
            total_fee: payment["total_fee"].as_i64().unwrap_or_default(),
            out_trade_no,
            refunds,
        });
    }
    Ok(books)
}

/// A refund as the shop has it.
#[derive(Debug, sqlx::FromRow)]
struct ShopRefund {
    out_refund_no: String,
    out_trade_no: String,
    refund_fee: i64,
    status: String,
    late: i64,
    requested_by: String,
    /// Times the shop's follower took it up.
    attempts: i64,
}

/// An order as the refund checks need it, with what its refunds add up to.
#[derive(Debug)]
struct ShopOrder {
    status: String,
    total_fee: i64,
    refunded_fee: i64,
    refund_due: i64,
    transaction_id: Option<String>,
    /// The refunds that did not close: all of them, and the merchant's (not late) ones.
    refunds_open: i64,
    merchant_refunds_open: i64,
}

/// The shop's refunds, then its orders with their refunds' sums — read in one statement, so
/// that an order and its refunds are seen at the same moment.
async fn shop_books(db: &AnyPool) -> anyhow::Result<(Vec<ShopRefund>, HashMap<String, ShopOrder>)> {
    let refunds: Vec<ShopRefund> = sqlx::query_as(
        "SELECT out_refund_no, out_trade_no, refund_fee, status, late, requested_by, attempts
         FROM refunds",
    )
    .fetch_all(db)
    .await?;
    type Row = (String, String, i64, i64, i64, Option<String>, i64, i64);
    let orders: Vec<Row> = sqlx::query_as(
        "SELECT o.out_trade_no, o.status, o.total_fee, o.refunded_fee, o.refund_due,
                o.transaction_id,
                CAST(COALESCE(SUM(CASE WHEN r.status <> 'closed' THEN r.refund_fee END), 0)
                     AS BIGINT),
                CAST(COALESCE(SUM(CASE WHEN r.status <> 'closed' AND r.late = 0
                                       THEN r.refund_fee END), 0) AS BIGINT)
         FROM orders o LEFT JOIN refunds r ON r.out_trade_no = o.out_trade_no
         GROUP BY o.out_trade_no, o.status, o.total_fee, o.refunded_fee, o.refund_due,
                  o.transaction_id",
    )
    .fetch_all(db)
    .await?;
    let orders = orders
        .into_iter()
        .map(
            |(no, status, total_fee, refunded_fee, refund_due, transaction_id, all, ours)| {
                let order = ShopOrder {
                    status,
                    total_fee,
                    refunded_fee,
                    refund_due,
                    transaction_id,
                    refunds_open: all,
                    merchant_refunds_open: ours,
                };
                (no, order)
            },
        )
        .collect();
    Ok((refunds, orders))
}

/// Counts as `closed 3, succeeded 9`.
/// Up to `count` paid orders with something left to refund, at random: (number, total, refunded).
async fn refundable(db: &AnyPool, count: usize) -> anyhow::Result<Vec<(String, i64, i64)>> {
    Ok(sqlx::query_as(
        "SELECT out_trade_no, total_fee, refunded_fee FROM orders
         WHERE status = 'paid' AND refunded_fee < total_fee ORDER BY RANDOM() LIMIT $1",
    )
    .bind(count as i64)
    .fetch_all(db)
    .await?)
}

/// What the sandbox holds about an order (`/sandbox/orders/{no}`); `None` when it cannot be read.
pub async fn sandbox_order(
    http: &reqwest::Client,
    sandbox: &str,
    no: &str,
) -> Option<serde_json::Value> {
    http.get(format!("{sandbox}sandbox/orders/{no}"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

pub fn listed(counts: &BTreeMap<String, usize>) -> String {
    let listed: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    if listed.is_empty() {
        "none".into()
    } else {
        listed.join(", ")
    }
}

/// The shop's name for WeChat's refund status.
fn shop_state(refund_status: &str) -> &str {
    match refund_status {
        "SUCCESS" => "succeeded",
        "REFUNDCLOSE" => "closed",
        "CHANGE" => "change",
        "PROCESSING" => "processing",
        other => other,
    }
}

/// What still has to settle: refunds unsettled at the shop or at WeChat, and late payments
/// the shop has not refunded (or marked due again) yet.
pub async fn unsettled(
    db: &AnyPool,
    http: &reqwest::Client,
    sandbox: &str,
) -> anyhow::Result<usize> {
    let wechat = wechat_books(http, sandbox, true).await?;
    let (refunds, orders) = shop_books(db).await?;
    let at_shop = refunds
        .iter()
        .filter(|r| matches!(r.status.as_str(), "requested" | "processing"))
        .count();
    let at_wechat = wechat
        .iter()
        .flat_map(|p| p.refunds.values())
        .filter(|(_, status)| status == "PROCESSING")
        .count();
    Ok(at_shop + at_wechat + late_unrefunded(&wechat, &refunds, &orders).len())
}

/// How many late payments the shop has not refunded yet (see [`late_unrefunded`]).
pub async fn late_unrefunded_count(
    db: &AnyPool,
    http: &reqwest::Client,
    sandbox: &str,
) -> anyhow::Result<usize> {
    let wechat = wechat_books(http, sandbox, false).await?;
    let (refunds, orders) = shop_books(db).await?;
    Ok(late_unrefunded(&wechat, &refunds, &orders).len())
}

/// Late payments (WeChat took them, the shop's order is not paid with them) without a late
/// refund at the shop yet.
fn late_unrefunded(
    wechat: &[WxPayment],
    refunds: &[ShopRefund],
    orders: &HashMap<String, ShopOrder>,
) -> Vec<String> {
    wechat
        .iter()
        .filter(|p| {
            let paid_with_it = orders.get(&p.out_trade_no).is_some_and(|o| {
                o.status == "paid" && o.transaction_id.as_deref() == Some(&p.transaction_id)
            });
            !paid_with_it
                && !refunds
                    .iter()
                    .any(|r| r.late == 1 && r.out_trade_no == p.out_trade_no)
        })
        .map(|p| p.out_trade_no.clone())
        .collect()
}

/// Refund figures for the summary.
#[derive(Debug, Default)]
pub struct Figures {
    /// The shop's refunds by state (late ones counted apart too).
    pub shop: BTreeMap<String, usize>,
    pub late_refunds: usize,
    /// Refunds the shop's follower took up (asked for again or queried).
    pub followed: usize,
    /// WeChat's refunds by refund_status.
    pub wechat: BTreeMap<String, usize>,
    /// Payments WeChat took for orders the shop does not have as paid with them.
    pub late_payments: usize,
}

/// The refund invariants. With `settled` (after the final wait, faults off) every refund must
/// have settled on both sides, in the same state, and every late payment have its refund
/// settled or be due again; before that, only what holds at every moment is checked.
pub async fn check(
    db: &AnyPool,
    http: &reqwest::Client,
    sandbox: &str,
    settled: bool,
) -> anyhow::Result<(Vec<String>, Figures)> {
    // WeChat first: the shop records a refund before it asks, so any refund WeChat holds is
    // already the shop's when the shop's books are read.
    let wechat = wechat_books(http, sandbox, true).await?;
    let (refunds, orders) = shop_books(db).await?;
    let mut violations = Vec::new();
    let mut figures = Figures::default();
    let ours: HashMap<&str, &ShopRefund> = refunds
        .iter()
        .map(|r| (r.out_refund_no.as_str(), r))
        .collect();
    let mut wechat_has: HashMap<&str, &str> = HashMap::new();

    for payment in &wechat {
        let no = &payment.out_trade_no;
        let refunded: i64 = payment
            .refunds
            .values()
            .filter(|(_, status)| status != "REFUNDCLOSE")
            .map(|(fee, _)| fee)
            .sum();
        if refunded > payment.total_fee {
            violations.push(format!(
                "WeChat refunded {refunded} of the {} paid for {no}",
                payment.total_fee
            ));
        }
        for (out_refund_no, (fee, status)) in &payment.refunds {
            *figures.wechat.entry(status.clone()).or_default() += 1;
            wechat_has.insert(out_refund_no, status);
            match ours.get(out_refund_no.as_str()) {
                None => violations.push(format!(
                    "WeChat refunded {fee} of {no} as {out_refund_no}, which the shop never \
                     recorded"
                )),
                Some(r) if r.out_trade_no != *no || r.refund_fee != *fee => {
                    violations.push(format!(
                        "WeChat has {out_refund_no} as {fee} of {no}, the shop as {} of {}",
                        r.refund_fee, r.out_trade_no
                    ))
                }
                Some(r) if settled && r.status != shop_state(status) => violations.push(format!(
                    "{out_refund_no} of {no} is {status} at WeChat but {} at the shop",
                    r.status
                )),
                Some(_) => {}
            }
        }
    }

    // Refunded ≤ paid at the shop, and the order's reserved amount is its refunds'.
    for r in &refunds {
        *figures.shop.entry(r.status.clone()).or_default() += 1;
        figures.late_refunds += usize::from(r.late == 1);
        figures.followed += usize::from(r.attempts > 0);
        if settled {
            match (r.status.as_str(), wechat_has.get(r.out_refund_no.as_str())) {
                ("requested" | "processing", _) => violations.push(format!(
                    "{} of {} is still {} after the final wait",
                    r.out_refund_no, r.out_trade_no, r.status
                )),
                ("succeeded" | "change", None) => violations.push(format!(
                    "{} of {} is {} at the shop, unknown to WeChat",
                    r.out_refund_no, r.out_trade_no, r.status
                )),
                _ => {}
            }
        }
    }
    for (no, order) in &orders {
        if order.refunds_open > order.total_fee {
            violations.push(format!(
                "the shop refunds {} of the {} paid for {no}",
                order.refunds_open, order.total_fee
            ));
        }
        if order.refunded_fee != order.merchant_refunds_open {
            violations.push(format!(
                "{no} holds {} for refunds, its refunds {}",
                order.refunded_fee, order.merchant_refunds_open
            ));
        }
    }

    // Every late payment has its late refund — at most one made by the shop by itself, for
    // the whole payment — and, settled, is refunded or due again.
    let late: Vec<&WxPayment> = wechat
        .iter()
        .filter(|p| {
            !orders.get(&p.out_trade_no).is_some_and(|o| {
                o.status == "paid" && o.transaction_id.as_deref() == Some(&p.transaction_id)
            })
        })
        .collect();
    figures.late_payments = late.len();
    let unrefunded = late_unrefunded(&wechat, &refunds, &orders);
    for no in &unrefunded {
        violations.push(format!("the late payment for {no} has no late refund"));
    }
    for payment in late {
        let no = &payment.out_trade_no;
        let theirs: Vec<&ShopRefund> = refunds
            .iter()
            .filter(|r| r.late == 1 && r.out_trade_no == *no)
            .collect();
        if theirs.iter().filter(|r| r.requested_by == "shop").count() > 1 {
            violations.push(format!(
                "{no}'s late payment was refunded automatically more than once"
            ));
        }
        for r in &theirs {
            if r.refund_fee != payment.total_fee {
                violations.push(format!(
                    "{no}'s late refund {} is {}, the payment {}",
                    r.out_refund_no, r.refund_fee, payment.total_fee
                ));
            }
        }
        let open = theirs.iter().any(|r| r.status != "closed");
        let due = orders.get(no).is_some_and(|o| o.refund_due == 1);
        if settled && !theirs.is_empty() && open == due {
            violations.push(format!(
                "{no}'s late payment: a refund {} but refund_due is {due}",
                if open { "stands" } else { "closed" }
            ));
        }
    }
    Ok((violations, figures))
}

/// Brings forward the next look at every unsettled refund: the final wait stands for the
/// hours a merchant would give the follower (its first look comes 30 s after a request, and
/// its waits double after each look).
pub async fn hurry_followers(db: &AnyPool) -> anyhow::Result<()> {
    let now = chrono::Utc::now().timestamp();
    sqlx::query(
        "UPDATE refunds SET follow_at = $1
         WHERE status IN ('requested', 'processing') AND follow_at > $1",
    )
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}
