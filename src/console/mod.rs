//! The merchant console's flows: signing in (argon2, sessions, the lock-out), the order list and
//! an order's whole story, shipping, products, the dashboard's figures, and the daily bill's
//! results (`bills.rs`), a buyer's export and deletion and the access log (`privacy.rs`). The web
//! console and
//! the command line both go through here; SQL is the store's.
//!
//! Passwords: `ADMIN_PASSWORD_HASH` (an argon2 PHC string) when set; otherwise a random password
//! is made on the first start, stored hashed, and printed once in the log. A session is a random
//! token in an `HttpOnly` cookie, stored only as its SHA-256; its forms carry a CSRF token of
//! their own. Five failed logins from one client in 15 minutes lock it out for 15 minutes.

mod bills;
pub mod privacy;

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use sha2::Digest;

use crate::catalogue::{parse_price, MAX_STOCK};
use crate::domain::{Fen, OutTradeNo};
use crate::store::{AdminSession, Contact, Order, OrderItem, Product, Store, StoreError};
pub use crate::store::{
    ContactKeyUse, DaySales, ListStatus, OrderEvent, OrderFilter, OrderSummary,
};
pub use bills::{
    bill_headline, charges, day_state, discrepancy_line, kind_label, BILL_DAYS_LISTED,
};

/// How long a session lasts.
pub const SESSION_HOURS: i64 = 12;
/// Failed logins one client may make in [`LOCKOUT_MINUTES`] before it is locked out.
pub const MAX_FAILURES: i64 = 5;
pub const LOCKOUT_MINUTES: i64 = 15;
/// Orders a list page shows.
pub const PAGE_SIZE: i64 = 50;
/// The dashboard's days, today included.
pub const DASHBOARD_DAYS: i64 = 14;

/// Why the console refused.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("wrong password")]
    WrongPassword,
    #[error("too many failed logins; locked until {0}")]
    LockedOut(DateTime<Utc>),
    #[error("no such order")]
    NoSuchOrder,
    #[error("no such product")]
    NoSuchProduct,
    /// A form value that does not pass, said to the merchant.
    #[error("{0}")]
    Invalid(String),
    /// Not possible in the order's state (shipping an unpaid or shipped order).
    #[error("{0}")]
    Conflict(&'static str),
    #[error("ADMIN_PASSWORD_HASH is not an argon2 PHC string")]
    BadConfiguredHash,
    #[error("password hashing: {0}")]
    Hashing(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new session: the cookie's token (never stored) and the forms' CSRF token.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token: String,
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

/// An amount the merchant typed, in yuan (at most two decimals), as fen.
pub fn parse_amount(text: &str) -> Result<Fen, ConsoleError> {
    crate::catalogue::parse_price(text).map_err(|_| {
        ConsoleError::Invalid(format!(
            "amount {:?}: yuan with at most two decimals, e.g. 12.50",
            text.chars().take(20).collect::<String>()
        ))
    })
}

/// An order with everything the merchant may need about it.
#[derive(Debug, Clone)]
pub struct OrderDetail {
    pub order: Order,
    pub items: Arc<Vec<OrderItem>>,
    pub contact: Contact,
    /// Every event in time order.
    pub timeline: Vec<OrderEvent>,
    /// Its refunds, oldest first.
    pub refunds: Vec<crate::store::Refund>,
}

/// The dashboard: the last [`DASHBOARD_DAYS`] Beijing days, oldest first, and what needs
/// attention now.
#[derive(Debug, Clone)]
pub struct Dashboard {
    pub days: Vec<DaySales>,
    pub pending: i64,
    pub refund_due: i64,
    /// Refunds asked for and not settled yet.
    pub refunds_in_progress: i64,
    /// The daily bill's discrepancies no later run resolved.
    pub bill_discrepancies: i64,
    /// When the last good backup was taken (SQLite), if ever.
    pub last_backup: Option<DateTime<Utc>>,
    /// Whether the shop backs its database up itself (SQLite; PostgreSQL has pg_dump).
    pub backs_up_itself: bool,
    /// Outgoing event deliveries waiting, and given up.
    pub deliveries_waiting: i64,
    pub deliveries_failed: i64,
}

/// The console service. Cheap to clone.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// The password's PHC string.
    password: String,
    /// Password checks at once: argon2 takes tens of milliseconds and 19 MiB each.
    checks: tokio::sync::Semaphore,
}

impl Console {
    /// The console over `store`, with `configured` (`ADMIN_PASSWORD_HASH`) or the stored
    /// password — made, stored and logged once when there is none.
    pub async fn start(store: Store, configured: Option<&str>) -> Result<Console, ConsoleError> {
        let password = match configured {
            Some(phc) => {
                PasswordHash::new(phc).map_err(|_| ConsoleError::BadConfiguredHash)?;
                phc.to_owned()
            }
            None => match store.admin_password().await? {
                Some(phc) => phc,
                None => {
                    let password = generate_password();
                    let phc = hash_password(&password)?;
                    if store.set_admin_password(&phc).await? {
                        // The one time it is shown: the contract's "printed once in the log".
                        tracing::warn!(
                            password = %password,
                            "merchant console password generated (shown this once): sign in at \
                             /admin, or set ADMIN_PASSWORD_HASH (wxpay-checkout admin \
                             hash-password) to choose your own"
                        );
                        phc
                    } else {
                        // Another replica stored its own first.
                        store
                            .admin_password()
                            .await?
                            .ok_or(ConsoleError::BadConfiguredHash)?
                    }
                }
            },
        };
        Ok(Console {
            inner: Arc::new(Inner {
                store,
                password,
                checks: tokio::sync::Semaphore::new(2),
            }),
        })
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Signs in with `password` from `client`: a new session, or why not. A locked-out client
    /// is refused without its password being checked.
    pub async fn login(&self, password: &str, client: &str) -> Result<NewSession, ConsoleError> {
        let now = Utc::now();
        let window = now - Duration::minutes(LOCKOUT_MINUTES);
        if self.store().login_failures(client, window).await? >= MAX_FAILURES {
            return Err(ConsoleError::LockedOut(
                now + Duration::minutes(LOCKOUT_MINUTES),
            ));
        }
        let right = {
            let _permit = self.inner.checks.acquire().await.expect("never closed");
            let phc = self.inner.password.clone();
            let password = password.to_owned();
            tokio::task::spawn_blocking(move || verify_password(&password, &phc))
                .await
                .map_err(|e| ConsoleError::Hashing(e.to_string()))?
        };
        if !right {
            self.store().record_login_failure(client, window).await?;
            tracing::warn!(client, "merchant console: wrong password");
            return Err(ConsoleError::WrongPassword);
        }
        self.store().clear_login_failures(client).await?;
        let token = hex::encode(rand::rng().random::<[u8; 32]>());
        let csrf = hex::encode(rand::rng().random::<[u8; 16]>());
        let expires_at = now + Duration::hours(SESSION_HOURS);
        self.store()
            .create_admin_session(&token_hash(&token), &csrf, expires_at)
            .await?;
        tracing::info!(client, "merchant console: signed in");
        Ok(NewSession {
            token,
            csrf,
            expires_at,
        })
    }

    /// The live session a cookie's token names.
    pub async fn session(&self, token: &str) -> Result<Option<AdminSession>, ConsoleError> {
        if token.len() != 64 {
            return Ok(None);
        }
        Ok(self.store().admin_session(&token_hash(token)).await?)
    }

    /// Ends the session a token names.
    pub async fn logout(&self, token: &str) -> Result<(), ConsoleError> {
        Ok(self
            .store()
            .delete_admin_session(&token_hash(token))
            .await?)
    }

    /// A page of orders matching `filter`, newest first.
    pub async fn orders(&self, filter: &OrderFilter) -> Result<Vec<OrderSummary>, ConsoleError> {
        Ok(self.store().list_orders(filter, PAGE_SIZE).await?)
    }

    /// Every order matching `filter` (for exports), newest first.
    pub async fn all_orders(
        &self,
        filter: &OrderFilter,
    ) -> Result<Vec<OrderSummary>, ConsoleError> {
        all_orders(self.store(), filter).await
    }

    /// An order, its items, its buyer and its whole timeline.
    pub async fn order(&self, no: &str) -> Result<OrderDetail, ConsoleError> {
        let no = OutTradeNo::parse(no).map_err(|_| ConsoleError::NoSuchOrder)?;
        let order = self
            .store()
            .order_now(&no)
            .await?
            .ok_or(ConsoleError::NoSuchOrder)?;
        let items = self.store().order_items(&no).await?;
        let contact = self.store().order_contact(&no).await?.unwrap_or_default();
        let mut timeline = vec![OrderEvent {
            at: order.created_at,
            kind: "created".into(),
            actor: "shopper".into(),
            detail: format!("{} — {}", order.total_fee, order.body),
        }];
        timeline.extend(self.store().order_events(&no).await?);
        timeline.extend(self.store().payment_timeline(&no).await?);
        if let (Some(at), Some(tid)) = (order.pay_time, &order.transaction_id) {
            timeline.push(OrderEvent {
                at,
                kind: "paid".into(),
                actor: "wechat".into(),
                detail: tid.clone(),
            });
        }
        if let Some(at) = order.closed_at {
            timeline.push(OrderEvent {
                at,
                kind: "closed".into(),
                actor: "shop".into(),
                detail: order.wechat_state.clone().unwrap_or_default(),
            });
        }
        timeline.sort_by_key(|e| e.at);
        let refunds = self.store().refunds_of(&no).await?;
        Ok(OrderDetail {
            order,
            items,
            contact,
            timeline,
            refunds,
        })
    }

    /// Marks a paid order shipped; `actor` says who, for its timeline.
    pub async fn ship(
        &self,
        no: &str,
        carrier: &str,
        tracking_no: &str,
        actor: &str,
    ) -> Result<(), ConsoleError> {
        let carrier = one_line("carrier", carrier, 50)?;
        let tracking_no = one_line("tracking number", tracking_no, 50)?;
        let detail = self.order(no).await?;
        if detail.order.shipment.is_some() {
            return Err(ConsoleError::Conflict(
                "this order has been shipped already",
            ));
        }
        if detail.order.status != crate::domain::OrderStatus::Paid || detail.order.refund_due {
            return Err(ConsoleError::Conflict("only a paid order can be shipped"));
        }
        if !self
            .store()
            .ship_order(&detail.order.out_trade_no, &carrier, &tracking_no, actor)
            .await?
        {
            return Err(ConsoleError::Conflict(
                "this order has been shipped already",
            ));
        }
        tracing::info!(out_trade_no = %detail.order.out_trade_no, actor, "order shipped");
        Ok(())
    }

    /// Every product, on sale or not.
    pub async fn products(&self) -> Result<Vec<Product>, ConsoleError> {
        Ok(self.store().all_products().await?)
    }

    /// Sets a product's price (yuan as typed), stock and whether it is on sale, checked as an
    /// import checks them.
    pub async fn update_product(
        &self,
        sku: &str,
        price: &str,
        stock: &str,
        active: bool,
    ) -> Result<(), ConsoleError> {
        let price = parse_price(price).map_err(ConsoleError::Invalid)?;
        let stock = match stock.trim().parse::<i64>() {
            Ok(n) if (0..=MAX_STOCK).contains(&n) => n,
            _ => {
                return Err(ConsoleError::Invalid(format!(
                    "stock {stock:?}: a whole number from 0 to {MAX_STOCK}"
                )))
            }
        };
        if !self
            .store()
            .update_product(sku, price, stock, active)
            .await?
        {
            return Err(ConsoleError::NoSuchProduct);
        }
        tracing::info!(
            sku,
            price = price.0,
            stock,
            active,
            "product changed in the console"
        );
        Ok(())
    }

    /// The dashboard as of `now`.
    pub async fn dashboard(&self, now: DateTime<Utc>) -> Result<Dashboard, ConsoleError> {
        let today = beijing_day(now);
        let first = today - (DASHBOARD_DAYS - 1);
        let sold = self.store().daily_sales(first, today).await?;
        let days = (first..=today)
            .map(|day| {
                sold.iter()
                    .find(|d| d.day == day)
                    .copied()
                    .unwrap_or(DaySales {
                        day,
                        paid_orders: 0,
                        revenue: Fen(0),
                        refunded: Fen(0),
                    })
            })
            .collect();
        let (pending, refund_due) = self.store().attention_counts().await?;
        let refunds_in_progress = self.store().refunds_in_progress().await?;
        let bill_discrepancies = self.store().open_discrepancies().await?;
        let last_backup = self.store().last_backup().await?.map(|(at, _)| at);
        let deliveries = self.store().delivery_counts().await?;
        Ok(Dashboard {
            deliveries_waiting: deliveries.pending,
            deliveries_failed: deliveries.failed,
            days,
            pending,
            refund_due,
            refunds_in_progress,
            bill_discrepancies,
            last_backup,
            backs_up_itself: self.store().backs_up_itself(),
        })
    }
}

/// Every order in `store` matching `filter`, newest first, read a keyset page at a time (the
/// command line's `orders` and the console's CSV export).
pub async fn all_orders(
    store: &Store,
    filter: &OrderFilter,
) -> Result<Vec<OrderSummary>, ConsoleError> {
    const BATCH: i64 = 1000;
    let mut all = Vec::new();
    let mut filter = filter.clone();
    loop {
        let page = store.list_orders(&filter, BATCH).await?;
        let done = (page.len() as i64) < BATCH;
        if let Some(last) = page.last() {
            filter.after = Some((last.created_at, last.out_trade_no.clone()));
        }
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}

/// How long ago `then` was, roughly: `5 min`, `3 h`, `2 d`.
pub fn age(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - then).num_seconds().max(0);
    match secs {
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

/// A time as the merchant reads it: Beijing time, to the second.
pub fn beijing_display(t: DateTime<Utc>) -> String {
    let beijing = chrono::FixedOffset::east_opt(8 * 3600).expect("a valid offset");
    t.with_timezone(&beijing)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// The columns of an order export.
pub const EXPORT_COLUMNS: [&str; 9] = [
    "out_trade_no",
    "placed_at",
    "status",
    "amount_yuan",
    "transaction_id",
    "paid_at",
    "name",
    "phone",
    "goods",
];

/// An order's values in [`EXPORT_COLUMNS`]: times in Beijing time, the amount in yuan.
pub fn export_row(o: &OrderSummary) -> [String; 9] {
    [
        o.out_trade_no.to_string(),
        beijing_display(o.created_at),
        o.status.as_str().to_owned(),
        o.total_fee.yuan(),
        o.transaction_id.clone().unwrap_or_default(),
        o.pay_time.map(beijing_display).unwrap_or_default(),
        o.name.clone().unwrap_or_default(),
        o.phone.clone().unwrap_or_default(),
        o.body.clone(),
    ]
}

/// Orders as CSV: a header, a row each; with `bom`, a UTF-8 byte-order mark first (Excel reads
/// Chinese right only with one).
pub fn orders_csv(orders: &[OrderSummary], bom: bool) -> Result<Vec<u8>, csv::Error> {
    let start = if bom {
        "\u{feff}".as_bytes().to_vec()
    } else {
        Vec::new()
    };
    let mut writer = csv::Writer::from_writer(start);
    writer.write_record(EXPORT_COLUMNS)?;
    for o in orders {
        writer.write_record(export_row(o))?;
    }
    writer
        .into_inner()
        .map_err(|e| csv::Error::from(std::io::Error::other(e.to_string())))
}

/// Days since 1970-01-01 in Beijing time.
pub fn beijing_day(t: DateTime<Utc>) -> i64 {
    (t.timestamp() + 8 * 3600).div_euclid(86_400)
}

/// A form value on one line, 1 to `max` characters.
fn one_line(what: &str, text: &str, max: usize) -> Result<String, ConsoleError> {
    let text = text.trim();
    let chars = text.chars().count();
    if chars == 0 || chars > max || text.chars().any(char::is_control) {
        return Err(ConsoleError::Invalid(format!(
            "{what}: 1 to {max} characters on one line"
        )));
    }
    Ok(text.to_owned())
}

/// The SHA-256 of a session token, as stored.
fn token_hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// A new random password: 20 characters without look-alikes (no 0/O, 1/l/I).
fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A password's argon2id PHC string (the crate's recommended parameters, a random salt).
pub fn hash_password(password: &str) -> Result<String, ConsoleError> {
    let salt = SaltString::encode_b64(&rand::rng().random::<[u8; 16]>())
        .map_err(|e| ConsoleError::Hashing(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| ConsoleError::Hashing(e.to_string()))
}

/// Whether `password` is the one `phc` was made from.
fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("correct horsf", &phc));
        assert!(!verify_password("correct horse", "not a phc"));
        let generated = generate_password();
        assert_eq!(generated.len(), 20);
        assert_ne!(generated, generate_password());
    }

    #[test]
    fn beijing_days_turn_at_midnight_in_beijing() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(
            beijing_day(at("2026-11-30T15:59:59Z")) + 1,
            beijing_day(at("2026-11-30T16:00:00Z"))
        );
    }
}
