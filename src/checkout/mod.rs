//! The checkout service: every payment flow a front end needs, in one place. The shop's pages,
//! the seed front end's JSON routes and WeChat's notify route call it and translate its answer
//! into HTTP; the reconciliation job runs on it. Each flow returns a [`CheckoutError`] that says
//! what the caller should be told.
//!
//! Flows: the catalogue; pricing a cart ([`cart`]) and checking the buyer's contact
//! ([`contact`]); placing an order (stock reserved, group-committed); the receipt, behind its
//! token; the pay flow (the
//! order's prepay, made once — concurrent first visits share one unifiedorder — and reused
//! until the order's own expiry; a payment WeChat reports on the way is confirmed); the order's
//! payment status (the shop's own record first, WeChat asked at most once every
//! [`QUERY_EVERY`] per order); the payment notify ([`notify`]); and reconciliation
//! ([`reconcile`]).
//!
//! It owns the rules and none of the mechanics: SQL is the store's, wire types and signing the
//! protocol's, and marking an order paid the payments consumer's (every payment learned of goes
//! through [`Payments::confirm`]).

pub mod bills;
mod cancel;
pub mod cart;
mod confirm;
pub mod contact;
pub mod doctor;
mod error;
pub mod flight;
pub mod gateway;
pub mod health;
pub mod limits;
pub mod notify;
pub mod notify_v3;
pub mod outbox;
pub mod phones;
mod prepay;
pub mod privacy;
pub mod push;
pub mod reconcile;
pub mod refunds;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use url::Url;

pub use self::bills::BillProblem;
pub use self::cancel::Cancelled;
pub use self::cart::{Cart, CartError, PricedCart, PricedLine};
pub use self::contact::{ContactForm, Problem};
pub use self::error::{loggable, CheckoutError, Missing, NotifyRefusal, LOGGABLE_CHARS};
pub use self::flight::Flights;
pub use self::limits::{RateLimiter, Shopper};
pub use self::notify::NotifyReceipt;
pub use self::outbox::{DeliveryView, OutboxTerms};
pub use self::phones::{PhoneStep, PhoneTerms};
pub use self::prepay::{NativeCode, PayStep, Prepared};
pub use self::push::{Listener, OrderChange, PushTerms};
pub use self::refunds::{FollowReport, RefundProblem};
use crate::domain::ContactField;
use crate::domain::{OrderStatus, OutTradeNo};
use crate::payments::Payments;
use crate::rt::AppRuntime;
pub use crate::store::{
    BillDay, BillDayStatus, Contact, DayFigures, DeliveryState, Discrepancy, DiscrepancyKind,
    NewItem, Order, OrderItem, Product, Refund, RefundState, Shipment,
};
use crate::store::{ClientLimits, CreateOrderError, OrderDesk, OrderRequest, Store, StoreError};
use crate::wxpay::types::OrderQueryResponse;
use crate::wxpay::TradeState;
pub use gateway::Gateway;

/// Most units of one product in one order.
pub const MAX_NUM: i64 = 99;
/// Shortest time between two order queries for one order on the status path.
pub const QUERY_EVERY: Duration = Duration::from_secs(5);
/// WeChat refuses to close an order younger than this.
pub const MIN_CLOSE_AGE: chrono::Duration = chrono::Duration::minutes(5);
/// How long an order whose pay page is never opened holds its stock (with per-client limits
/// on): long enough for the redirect to the pay page, short enough that reserving without
/// paying hoards nothing. Its first prepay gives it the whole `ORDER_TTL_SECS`.
pub const UNPREPAID_HOLD: chrono::Duration = chrono::Duration::minutes(2);
/// `create/native` calls one client may make a minute (with per-client limits on).
pub const NATIVE_CALLS_PER_MINUTE: u32 = 60;

/// The merchant's terms of sale: fixed facts of this shop's checkout.
#[derive(Debug, Clone)]
pub struct Terms {
    /// The shop's name (`SHOP_NAME`): on every page, and first in WeChat's `body`.
    pub shop_name: String,
    /// The site's ICP filing number (`ICP_BEIAN`), in every page's footer.
    pub icp_beian: Option<String>,
    /// How shoppers reach customer service (`SHOP_CONTACT`), in every page's footer.
    pub shop_contact: Option<String>,
    pub notify_url: Url,
    /// Where WeChat sends refund notifies (`WEIXIN_REFUND_NOTIFYURL`).
    pub refund_notify_url: Url,
    /// Whether money WeChat took for an order that could not take it is refunded in full
    /// automatically (`AUTO_REFUND_LATE_PAYMENTS`).
    pub auto_refund_late_payments: bool,
    /// `spbill_create_ip`: for Native payments, the IP of the machine calling WeChat Pay. It is
    /// part of a unifiedorder's parameters, so it must not change between re-entries.
    pub spbill_create_ip: String,
    /// Time a shopper has to pay (`ORDER_TTL_SECS`).
    pub order_ttl: Duration,
    /// How often the reconciliation job runs (`RECONCILE_INTERVAL_SECS`).
    pub reconcile_interval: Duration,
    /// When (Beijing time) yesterday's trade bill is fetched and reconciled (`BILL_FETCH_AT`).
    pub bill_fetch_at: chrono::NaiveTime,
    /// Unpaid queries after which it closes an order (`RECONCILE_MAX_ATTEMPTS`); `None`: only
    /// once its time is up.
    pub reconcile_max_attempts: Option<u32>,
    /// Unpaid orders one client may hold (`PENDING_ORDERS_PER_CLIENT`); 0: no per-client
    /// limits at all (no cap, no short hold, no same-cart reuse, no create/native limit).
    pub pending_per_client: u32,
    /// Orders one client may place a minute (`ORDER_RATE_PER_MINUTE`); 0: no limit.
    pub order_rate_per_minute: u32,
    /// The contact the checkout asks for (`CHECKOUT_FIELDS`), in form order.
    pub checkout_fields: Vec<ContactField>,
    /// Where events go (webhooks, chat robots) and how they are signed.
    pub outbox: OutboxTerms,
    /// The privacy notice and how long contact details are kept.
    pub privacy: privacy::PrivacyTerms,
    /// When the missing-notify alarm is raised.
    pub notify_alarm: health::NotifyAlarmTerms,
    /// Paying on a phone: H5, JSAPI.
    pub phones: PhoneTerms,
    /// Limits on the pay pages' event streams.
    pub push: PushTerms,
}

impl Terms {
    /// Whether per-client limits apply.
    pub fn limits_clients(&self) -> bool {
        self.pending_per_client > 0
    }
}

impl Terms {
    /// About when the reconciliation job closes an unpaid order with a prepay when
    /// `RECONCILE_MAX_ATTEMPTS` is set (that many unpaid queries, `RECONCILE_INTERVAL_SECS`
    /// apart, never within [`MIN_CLOSE_AGE`]), if that comes before its expiry: the pay page
    /// counts down to the earlier of the two. `None`: at its expiry.
    pub fn unpaid_close_after(&self) -> Option<Duration> {
        let attempts = self.reconcile_max_attempts?;
        Some(
            (self.reconcile_interval * attempts)
                .max(MIN_CLOSE_AGE.to_std().expect("a positive duration")),
        )
    }
}

/// The checkout service. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Checkout {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    desk: OrderDesk,
    wechat: Gateway,
    payments: Payments,
    terms: Terms,
    /// unifiedorder calls in flight, one per order.
    prepays: Flights<Result<Prepared, CheckoutError>>,
    /// The pay pages listening for their orders' changes.
    push: Arc<push::Hub>,
    /// unifiedorder calls for payment attempts (H5, JSAPI) in flight, one per attempt.
    attempt_prepays: Flights<Result<phones::AttemptPrepared, CheckoutError>>,
    /// The status path's order queries: one per order every [`QUERY_EVERY`], shared by the
    /// polls that ask together. `None` when WeChat could not be asked.
    queries: Flights<Option<OrderQueryResponse>>,
    /// Notifies noted for the notify log, until the next flush.
    notify_log: health::NotifyLog,
    /// Orders placed per client a minute.
    order_rate: RateLimiter,
    /// `create/native` calls per client a minute.
    native_rate: RateLimiter,
}

/// The checkout's background tasks: the order desk and the payments consumer.
pub struct Background {
    desk: JoinHandle<()>,
    consumer: JoinHandle<()>,
}

impl Background {
    /// Waits for both to finish once their shutdown token is cancelled: the desk writes the
    /// orders queued, the consumer the payments queued.
    pub async fn stopped(self) -> Result<(), tokio::task::JoinError> {
        self.desk.await?;
        self.consumer.await
    }
}

impl Checkout {
    /// The service over `store` and `wechat`, with its background tasks started on `rt` until
    /// `shutdown` is cancelled.
    pub fn start(
        store: Store,
        wechat: Gateway,
        terms: Terms,
        rt: &AppRuntime,
        shutdown: &CancellationToken,
    ) -> (Checkout, Background) {
        let (payments, consumer) = crate::payments::channel(store.clone());
        let (desk, desk_task) = OrderDesk::start(store.clone(), rt, shutdown.child_token());
        let consumer = rt.spawn(consumer.run(shutdown.child_token()));
        let checkout = Checkout::new(store, desk, wechat, payments, terms);
        if checkout.terms().auto_refund_late_payments && checkout.wechat().can_refund() {
            rt.spawn(
                checkout
                    .clone()
                    .refund_late_payments(shutdown.child_token()),
            );
        }
        (
            checkout,
            Background {
                desk: desk_task,
                consumer,
            },
        )
    }

    pub fn new(
        store: Store,
        desk: OrderDesk,
        wechat: Gateway,
        payments: Payments,
        terms: Terms,
    ) -> Checkout {
        Checkout {
            inner: Arc::new(Inner {
                store,
                desk,
                wechat,
                payments,
                prepays: Flights::new(Duration::ZERO),
                attempt_prepays: Flights::new(Duration::ZERO),
                push: Default::default(),
                queries: Flights::new(QUERY_EVERY),
                notify_log: Default::default(),
                order_rate: RateLimiter::new(terms.order_rate_per_minute),
                native_rate: RateLimiter::new(if terms.limits_clients() {
                    NATIVE_CALLS_PER_MINUTE
                } else {
                    0
                }),
                terms,
            }),
        }
    }

    pub fn terms(&self) -> &Terms {
        &self.inner.terms
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    fn wechat(&self) -> &Gateway {
        &self.inner.wechat
    }

    /// The products on sale, in id order.
    pub async fn catalogue(&self) -> Result<Vec<Product>, CheckoutError> {
        Ok(self.store().products().await?)
    }

    /// A product on sale.
    pub async fn product(&self, id: i64) -> Result<Product, CheckoutError> {
        match self.store().product(id).await? {
            Some(product) if product.active => Ok(product),
            _ => Err(CheckoutError::NotFound(Missing::Product)),
        }
    }

    /// A cart priced from the catalogue; lines whose product is no longer sold are dropped.
    pub async fn price_cart(&self, cart: &Cart) -> Result<PricedCart, CheckoutError> {
        let ids: Vec<i64> = cart.lines().iter().map(|l| l.product_id).collect();
        let products = self.store().products_by_id(&ids).await?;
        Ok(cart::price(cart, &products))
    }

    /// Checks a filled-in contact form against `CHECKOUT_FIELDS`: the contact to order with,
    /// or every field's problem.
    pub fn check_contact(&self, form: &ContactForm) -> Result<Contact, Vec<Problem>> {
        contact::check(&self.inner.terms.checkout_fields, form)
    }

    /// Places an order for `items` and reserves their stock; nothing is reserved on error. The
    /// amount comes from the catalogue, never from the caller. Under per-client limits a
    /// client may place `ORDER_RATE_PER_MINUTE` orders a minute and hold
    /// `PENDING_ORDERS_PER_CLIENT` unpaid ones; the same cart bought again while its order is
    /// still payable gives that order back instead of reserving twice.
    pub async fn place_order(
        &self,
        items: Vec<NewItem>,
        contact: Contact,
        shopper: &Shopper,
    ) -> Result<Order, CheckoutError> {
        if items.iter().any(|i| !(1..=MAX_NUM).contains(&i.num)) {
            return Err(CheckoutError::BadQuantity);
        }
        let terms = &self.inner.terms;
        if !self.inner.order_rate.allow(shopper, Utc::now().timestamp()) {
            return Err(CheckoutError::TooMany);
        }
        let request = OrderRequest {
            items,
            shop_name: terms.shop_name.clone(),
            ttl: terms.order_ttl,
            client: terms.limits_clients().then(|| ClientLimits {
                key: shopper.key().to_owned(),
                max_pending: i64::from(terms.pending_per_client),
                unprepaid_hold: UNPREPAID_HOLD.to_std().expect("a positive duration"),
            }),
            contact,
        };
        let order = match self.inner.desk.create(request).await {
            Ok(order) => order,
            Err(CreateOrderError::AlreadyPending(no)) => return self.load(&no).await,
            Err(e) => {
                return Err(match e {
                    CreateOrderError::UnknownProduct(_) => {
                        CheckoutError::NotFound(Missing::Product)
                    }
                    CreateOrderError::NotEnoughStock { .. } => CheckoutError::OutOfStock,
                    CreateOrderError::Empty | CreateOrderError::TooLarge => {
                        CheckoutError::Unplaceable
                    }
                    CreateOrderError::TooManyPending => CheckoutError::TooMany,
                    CreateOrderError::AlreadyPending(_) => unreachable!("handled above"),
                    CreateOrderError::Store(e) => e.into(),
                })
            }
        };
        tracing::info!(out_trade_no = %order.out_trade_no, total_fee = order.total_fee.0, "order placed");
        Ok(order)
    }

    /// An order by the number a caller gave; anything that is not an order number is simply
    /// not found.
    pub async fn order(&self, no: &str) -> Result<Order, CheckoutError> {
        let no = OutTradeNo::parse(no).map_err(|_| CheckoutError::NotFound(Missing::Order))?;
        self.load(&no).await
    }

    async fn load(&self, no: &OutTradeNo) -> Result<Order, CheckoutError> {
        self.store()
            .order(no)
            .await?
            .ok_or(CheckoutError::NotFound(Missing::Order))
    }

    /// The shopper's receipt of an order: found only with the order's own token (anything
    /// else is simply not found, as a missing order is).
    pub async fn receipt(&self, no: &str, token: &str) -> Result<Receipt, CheckoutError> {
        // Read past the cache: a receipt is rare, and its shipment may have been recorded by
        // another replica.
        let no = OutTradeNo::parse(no).map_err(|_| CheckoutError::NotFound(Missing::Order))?;
        let order = self
            .store()
            .order_now(&no)
            .await?
            .ok_or(CheckoutError::NotFound(Missing::Order))?;
        if !receipt_token_matches(&order, token) {
            return Err(CheckoutError::NotFound(Missing::Order));
        }
        let items = self.items(&order).await?;
        let contact = self
            .store()
            .order_contact(&order.out_trade_no)
            .await?
            .unwrap_or_default();
        let refunds = self.refunds(&order).await?;
        let refund_of = self
            .late_payment(&order)
            .await?
            .map(|late| late.transaction_id);
        Ok(Receipt {
            order,
            items,
            contact,
            refund_of,
            refunds,
        })
    }

    /// Money WeChat took for an order that could not take it: its transaction, and whether it
    /// went back already — what the shopper is told.
    pub async fn late_payment(&self, order: &Order) -> Result<Option<LatePayment>, CheckoutError> {
        if order.status != OrderStatus::Closed && !order.refund_due {
            return Ok(None);
        }
        let Some(transaction_id) = self.store().late_payment(&order.out_trade_no).await? else {
            return Ok(None);
        };
        let refunded = !order.refund_due
            && self
                .refunds(order)
                .await?
                .iter()
                .any(|r| r.late && r.state == crate::store::RefundState::Succeeded);
        Ok(Some(LatePayment {
            transaction_id,
            refunded,
        }))
    }

    /// An order's lines, as sold.
    pub async fn items(&self, order: &Order) -> Result<Arc<Vec<OrderItem>>, CheckoutError> {
        Ok(self.store().order_items(&order.out_trade_no).await?)
    }

    /// The order's payment status: the shop's own record. While it is unpaid and has a
    /// prepay, WeChat is asked — at most once every [`QUERY_EVERY`] per order, one query shared
    /// by concurrent polls — and a payment it reports is confirmed through the payments channel.
    pub async fn status(&self, no: &str) -> Result<Order, CheckoutError> {
        let order = self.order(no).await?;
        if order.status != OrderStatus::Pending {
            return Ok(order);
        }
        // Paying on a phone: its attempts are asked about too.
        let order = self.ask_about_attempts(order).await?;
        if order.status != OrderStatus::Pending || order.prepay.is_none() {
            return Ok(order);
        }
        let wechat = self.wechat().clone();
        let key = order.out_trade_no.to_string();
        let no = key.clone();
        let answer = self
            .inner
            .queries
            .throttle(&key, || async move {
                match wechat.order_query(&no).await {
                    Ok(answer) => Some(answer),
                    Err(e) => {
                        tracing::warn!(out_trade_no = %no, error = %e, "order query failed");
                        None
                    }
                }
            })
            .await
            .flatten();
        match answer {
            Some(answer) => {
                let no = order.out_trade_no.clone();
                self.apply_query(order, &no, &answer, crate::store::PaymentSource::Query)
                    .await
            }
            None => Ok(order),
        }
    }

    /// When the pay page stops offering the QR code: the order's expiry, or the reconciliation
    /// job's close if that comes first.
    pub fn pay_deadline(&self, order: &Order) -> DateTime<Utc> {
        match self.inner.terms.unpaid_close_after() {
            Some(after) => {
                let close_by = order.created_at
                    + chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
                order.expires_at.min(close_by)
            }
            None => order.expires_at,
        }
    }

    /// Refunds each late payment the moment the consumer applies it (the follower's sweep
    /// catches any missed here: a lagging listener, a crash), until `shutdown`.
    async fn refund_late_payments(self, shutdown: CancellationToken) {
        use crate::store::Outcome;
        let mut applied = self.inner.payments.subscribe();
        loop {
            let notice = tokio::select! {
                _ = shutdown.cancelled() => return,
                notice = applied.recv() => notice,
            };
            match notice {
                Ok(notice)
                    if matches!(
                        notice.outcome,
                        Outcome::PaidAfterClose | Outcome::AmountMismatch
                    ) =>
                {
                    if let Err(e) = self.auto_refund_late(&notice.out_trade_no).await {
                        tracing::warn!(
                            out_trade_no = %notice.out_trade_no,
                            error = %e,
                            "late payment's refund not made now; the follower retries"
                        );
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Whether refunds can be made: the merchant's client certificate is configured.
    pub fn can_refund(&self) -> bool {
        self.wechat().can_refund()
    }

    /// An order's refunds, oldest first.
    pub async fn refunds(&self, order: &Order) -> Result<Vec<crate::store::Refund>, CheckoutError> {
        Ok(self.store().refunds_of(&order.out_trade_no).await?)
    }

    /// Answers when the database does.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.store().ping().await
    }

    /// Payment events waiting for the consumer.
    pub fn payments_waiting(&self) -> usize {
        self.inner.payments.depth()
    }
}

/// Money taken for an order that could not take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatePayment {
    pub transaction_id: String,
    /// Its refund succeeded.
    pub refunded: bool,
}

/// An order as its buyer sees it on the receipt.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub order: Order,
    pub items: Arc<Vec<OrderItem>>,
    pub contact: Contact,
    /// The late payment's transaction, when money arrived for a closed order.
    pub refund_of: Option<String>,
    /// The order's refunds, oldest first.
    pub refunds: Vec<crate::store::Refund>,
}

/// Whether `token` is the order's receipt token (compared in constant time: a guesser learns
/// nothing from how long a refusal takes).
pub fn receipt_token_matches(order: &Order, token: &str) -> bool {
    use subtle::ConstantTimeEq;
    order
        .receipt_token
        .as_deref()
        .is_some_and(|own| bool::from(own.as_bytes().ct_eq(token.as_bytes())))
}

/// The order's state in WeChat's words: an open order whose last attempt failed is
/// `PAYERROR` (the shopper may scan again).
pub fn trade_state(order: &Order) -> TradeState {
    match order.status {
        OrderStatus::Pending if order.wechat_state.as_deref() == Some("PAYERROR") => {
            TradeState::PayError
        }
        OrderStatus::Pending => TradeState::NotPay,
        OrderStatus::Paid => TradeState::Success,
        OrderStatus::Closed => TradeState::Closed,
    }
}
