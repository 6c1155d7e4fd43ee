//! Paying on a phone: H5 (`MWEB`) in a phone browser outside WeChat, JSAPI inside WeChat's own
//! browser. Each is a **payment attempt**: its own WeChat order, numbered after the order
//! ([`PayWay::attempt_no`]), since WeChat refuses one `out_trade_no` for two trade types. Its
//! `time_start`/`time_expire` are the order's, so every attempt ends when the order does.
//!
//! The first attempt paid pays the order (the consumer's rule); the reconciliation job asks
//! about a pending order's attempts as about its QR code, closes them all at WeChat before the
//! order closes here, and closes the *spare* attempts of an order that is over
//! ([`Checkout::close_spare_attempts`]) — a payment found on the way is a late payment, due back.
//! `get_brand_wcpay_request:ok` and H5's return to the shop are only hints: the shop learns of
//! a payment by notify or query, as ever.

use chrono::{DateTime, Utc};
use url::Url;

use super::confirm::event_from_query;
use super::prepay::MIN_TIME_TO_PAY;
use super::reconcile::CLOSE_MARGIN;
use super::{Checkout, CheckoutError, Shopper, MIN_CLOSE_AGE};
use crate::domain::{OrderStatus, OutTradeNo, PayWay};
use crate::store::{Attempt, AttemptPrepay, Order, PaymentSource, StoreError};
use crate::wxpay::jsapi::BrandWcPayRequest;
use crate::wxpay::oauth::OAuth;
use crate::wxpay::time::format_beijing;
use crate::wxpay::types::{Trade, UnifiedOrderRequest};
use crate::wxpay::{ErrCode, TradeState};

/// Spare attempts closed per run.
const SPARE_BATCH: i64 = 200;
/// A stored JSAPI prepay is asked for again when it has less than this left.
const PREPAY_MARGIN: chrono::Duration = chrono::Duration::seconds(30);

/// Which phone payments the shop offers.
#[derive(Debug, Clone)]
pub struct PhoneTerms {
    /// `WEIXIN_H5`: the merchant has WeChat's H5 product.
    pub h5: bool,
    /// `WEIXIN_MP_APPSECRET` set: JSAPI, with the official account's OAuth for the openid.
    pub oauth: Option<OAuth>,
    /// `PUBLIC_BASE_URL`: H5's `wap_url`, where WeChat returns the shopper.
    pub public_base_url: Url,
}

/// Where a phone payment stands.
#[derive(Debug, Clone)]
pub enum PhoneStep<T> {
    /// Go ahead: the H5 page to open, or the JSAPI page's parameters.
    Ready(T),
    /// Nothing to pay: the order is paid or over.
    Finished(Box<Order>),
}

/// A flight's answer: the attempt's prepay, or the order as it turned out.
#[derive(Debug, Clone)]
pub enum AttemptPrepared {
    Prepay {
        prepay_id: String,
        mweb_url: Option<String>,
    },
    Finished(Box<Order>),
}

/// What closing one attempt at WeChat came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AttemptClose {
    /// WeChat can take no money for it.
    Closed,
    /// It was paid: the payment is recorded.
    Paid,
    /// Not yet (too young, or WeChat does not know it yet): ask again next run.
    Wait,
    /// WeChat could not be asked.
    Transient,
}

impl Checkout {
    /// Whether H5 payment is offered.
    pub fn h5_enabled(&self) -> bool {
        self.terms().phones.h5
    }

    /// Whether JSAPI payment (inside WeChat) is offered.
    pub fn jsapi_enabled(&self) -> bool {
        self.terms().phones.oauth.is_some()
    }

    /// Where to send a WeChat browser for the shopper's openid (`snsapi_base`).
    pub fn oauth_url(&self, redirect_uri: &str, state: &str) -> Option<String> {
        let oauth = self.terms().phones.oauth.as_ref()?;
        Some(oauth.authorize_url(redirect_uri, state))
    }

    /// Trades an OAuth code for the shopper's openid.
    pub async fn openid_for_code(&self, code: &str) -> Result<String, CheckoutError> {
        let oauth = self
            .terms()
            .phones
            .oauth
            .as_ref()
            .ok_or(CheckoutError::WayUnavailable(NO_JSAPI))?;
        oauth.openid(code).await.map_err(|e| {
            tracing::warn!(error = %e, "OAuth code refused");
            CheckoutError::WayUnavailable(
                "微信授权失败，请重试 WeChat did not confirm who you are; please try again.",
            )
        })
    }

    /// H5: the `mweb_url` to send the phone browser to (valid 5 minutes, so each tap asks
    /// WeChat again: a re-entry with the same parameters). `client_ip` is the shopper's, sent
    /// as `spbill_create_ip` (WeChat checks it against the browser that opens the page).
    pub async fn pay_h5(
        &self,
        no: &str,
        client_ip: std::net::IpAddr,
        shopper: &Shopper,
    ) -> Result<PhoneStep<String>, CheckoutError> {
        if !self.h5_enabled() {
            return Err(CheckoutError::WayUnavailable(NO_H5));
        }
        let ip = client_ip.to_string();
        match self
            .prepare_attempt(no, PayWay::H5, None, Some(&ip), shopper, true)
            .await?
        {
            AttemptPrepared::Prepay { mweb_url, .. } => {
                let url = mweb_url.ok_or(CheckoutError::NotSettled {
                    why: "no mweb_url",
                    retry: OutTradeNo::parse(no).map_err(|_| not_found())?,
                })?;
                Ok(PhoneStep::Ready(url))
            }
            AttemptPrepared::Finished(order) => Ok(PhoneStep::Finished(order)),
        }
    }

    /// JSAPI: the signed `getBrandWCPayRequest` parameters for the shopper `openid`.
    pub async fn pay_jsapi(
        &self,
        no: &str,
        openid: &str,
        shopper: &Shopper,
    ) -> Result<PhoneStep<BrandWcPayRequest>, CheckoutError> {
        if !self.jsapi_enabled() {
            return Err(CheckoutError::WayUnavailable(NO_JSAPI));
        }
        match self
            .prepare_attempt(no, PayWay::Jsapi, Some(openid), None, shopper, false)
            .await?
        {
            AttemptPrepared::Prepay { prepay_id, .. } => {
                let Some(v2) = self.wechat().v2() else {
                    return Err(CheckoutError::WayUnavailable(NO_JSAPI));
                };
                let merchant = &v2.config().merchant;
                Ok(PhoneStep::Ready(BrandWcPayRequest::new(
                    &merchant.appid,
                    &prepay_id,
                    &merchant.key,
                    self.wechat().sign_type(),
                    Utc::now().timestamp(),
                    &crate::wxpay::nonce_str(),
                )))
            }
            AttemptPrepared::Finished(order) => Ok(PhoneStep::Finished(order)),
        }
    }

    /// The order's attempt for `way` with a prepay: reused while it lasts (JSAPI), asked for
    /// otherwise (H5 always: its page lasts 5 minutes).
    async fn prepare_attempt(
        &self,
        no: &str,
        way: PayWay,
        openid: Option<&str>,
        client_ip: Option<&str>,
        shopper: &Shopper,
        always_ask: bool,
    ) -> Result<AttemptPrepared, CheckoutError> {
        if !self
            .inner
            .native_rate
            .allow(shopper, Utc::now().timestamp())
        {
            return Err(CheckoutError::TooMany);
        }
        let mut order = self.order(no).await?;
        let now = Utc::now();
        if order.status != OrderStatus::Pending
            || order.expires_at <= now
            || order.cancel_requested_at.is_some()
        {
            return Ok(AttemptPrepared::Finished(Box::new(order)));
        }
        let attempt_no =
            way.attempt_no(&order.out_trade_no)
                .ok_or(CheckoutError::WayUnavailable(
                    "这个订单只能扫码支付 This order can be paid by QR code only.",
                ))?;
        if order.prepay.is_none() && order.attempts == 0 && order.expires_at < now + MIN_TIME_TO_PAY
        {
            let until = super::prepay::whole_second(now + MIN_TIME_TO_PAY);
            self.store()
                .extend_expiry(&order.out_trade_no, until)
                .await?;
            order = self.load(&order.out_trade_no).await?;
        }
        let Some(attempt) = self
            .store()
            .open_attempt(&order.out_trade_no, way, &attempt_no, openid, client_ip)
            .await?
        else {
            return Ok(AttemptPrepared::Finished(Box::new(
                self.load(&order.out_trade_no).await?,
            )));
        };
        if way == PayWay::Jsapi && attempt.openid.as_deref() != openid {
            return Err(CheckoutError::WayUnavailable(
                "这个订单正由另一个微信账号支付 Another WeChat account is paying this order; \
                 scan its QR code instead.",
            ));
        }
        let reusable = attempt
            .prepay
            .as_ref()
            .filter(|p| !always_ask && p.expires_at > now + PREPAY_MARGIN);
        if let Some(prepay) = reusable {
            return Ok(AttemptPrepared::Prepay {
                prepay_id: prepay.prepay_id.clone(),
                mweb_url: None,
            });
        }
        let this = self.clone();
        self.inner
            .attempt_prepays
            .share(attempt_no.as_str(), || async move {
                this.fetch_attempt_prepay(order, attempt).await
            })
            .await
    }

    /// The one unifiedorder of an attempt's flight.
    async fn fetch_attempt_prepay(
        &self,
        order: Order,
        attempt: Attempt,
    ) -> Result<AttemptPrepared, CheckoutError> {
        let terms = self.terms();
        let trade = match attempt.way {
            PayWay::H5 => Trade::Mweb {
                wap_url: terms.phones.public_base_url.to_string(),
                wap_name: terms.shop_name.clone(),
            },
            PayWay::Jsapi => Trade::Jsapi {
                openid: attempt.openid.clone().unwrap_or_default(),
            },
            PayWay::Native => unreachable!("the QR code is the order's own prepay"),
        };
        let request = UnifiedOrderRequest {
            body: order.body.clone(),
            out_trade_no: attempt.attempt_no.to_string(),
            total_fee: order.total_fee.0,
            spbill_create_ip: attempt
                .client_ip
                .clone()
                .unwrap_or_else(|| terms.spbill_create_ip.clone()),
            notify_url: terms.notify_url.to_string(),
            trade,
            attach: None,
            time_start: Some(format_beijing(order.created_at)),
            time_expire: Some(format_beijing(order.expires_at)),
        };
        let no = attempt.attempt_no.clone();
        match self.wechat().unified_order(&request).await {
            Ok(answer) => {
                let prepay = AttemptPrepay {
                    prepay_id: answer.prepay_id.clone(),
                    expires_at: (Utc::now() + crate::wxpay::PREPAY_VALIDITY).min(order.expires_at),
                    sign_type: self.wechat().sign_type(),
                };
                self.store().record_attempt_prepay(&no, &prepay).await?;
                metrics::counter!("payment_attempts_total", "trade_type" => attempt.way.trade_type())
                    .increment(1);
                tracing::info!(out_trade_no = %order.out_trade_no, attempt = %no, trade_type = attempt.way.trade_type(), "payment attempt prepared");
                Ok(AttemptPrepared::Prepay {
                    prepay_id: answer.prepay_id,
                    mweb_url: answer.mweb_url,
                })
            }
            Err(e) if e.err_code() == Some(&ErrCode::OrderPaid) => {
                let order = self
                    .confirm_attempt_by_query(order, &no, PaymentSource::Query)
                    .await?;
                if order.status == OrderStatus::Pending {
                    return Err(CheckoutError::NotSettled {
                        why: "paid at WeChat, not confirmed here",
                        retry: order.out_trade_no,
                    });
                }
                Ok(AttemptPrepared::Finished(Box::new(order)))
            }
            Err(e) if e.err_code() == Some(&ErrCode::OrderClosed) => {
                self.store().close_attempt(&no, Utc::now()).await?;
                Err(CheckoutError::NotPayable(TradeState::Closed))
            }
            Err(e) => {
                tracing::warn!(out_trade_no = %order.out_trade_no, attempt = %no, error = %e, "unifiedorder for a payment attempt failed");
                Err(CheckoutError::wechat(e, &order.out_trade_no))
            }
        }
    }

    /// The WeChat button's parameters for a pending order whose JSAPI attempt has a prepay
    /// (made on the way back from OAuth); `None` before that, or once the prepay has run out
    /// (the page then goes through OAuth again, which asks WeChat again).
    pub async fn jsapi_button(
        &self,
        order: &Order,
    ) -> Result<Option<BrandWcPayRequest>, CheckoutError> {
        if !self.jsapi_enabled() || order.attempts == 0 {
            return Ok(None);
        }
        let Some(no) = PayWay::Jsapi.attempt_no(&order.out_trade_no) else {
            return Ok(None);
        };
        let Some(attempt) = self.store().attempt(&no).await? else {
            return Ok(None);
        };
        let prepay = attempt
            .prepay
            .filter(|p| attempt.closed_at.is_none() && p.expires_at > Utc::now() + PREPAY_MARGIN);
        let Some(prepay) = prepay else {
            return Ok(None);
        };
        let Some(v2) = self.wechat().v2() else {
            return Ok(None);
        };
        let merchant = &v2.config().merchant;
        Ok(Some(BrandWcPayRequest::new(
            &merchant.appid,
            &prepay.prepay_id,
            &merchant.key,
            prepay.sign_type,
            Utc::now().timestamp(),
            &crate::wxpay::nonce_str(),
        )))
    }

    /// The order's payment attempts, for the console (none for an order paid by QR code
    /// alone).
    pub async fn attempts(&self, order: &Order) -> Result<Vec<Attempt>, CheckoutError> {
        if order.attempts == 0 {
            return Ok(Vec::new());
        }
        Ok(self.store().attempts_of(&order.out_trade_no).await?)
    }

    /// The order a number WeChat reports belongs to: an order's own, or a payment attempt's.
    pub(super) async fn order_no_for(
        &self,
        wechat_no: &OutTradeNo,
    ) -> Result<Option<OutTradeNo>, StoreError> {
        if self.store().order_now(wechat_no).await?.is_some() {
            return Ok(Some(wechat_no.clone()));
        }
        Ok(self.store().attempt(wechat_no).await?.map(|a| a.order_no))
    }

    /// The order's attempts WeChat may still take money for, other than its QR code (asked
    /// about under the order's own number).
    pub(super) async fn open_phone_attempts(
        &self,
        order: &Order,
    ) -> Result<Vec<Attempt>, StoreError> {
        if order.attempts == 0 {
            return Ok(Vec::new());
        }
        Ok(self
            .store()
            .attempts_of(&order.out_trade_no)
            .await?
            .into_iter()
            .filter(|a| a.way != PayWay::Native && a.closed_at.is_none() && a.prepay.is_some())
            .collect())
    }

    /// The status path for a pending order's phone attempts: each asked about (throttled like
    /// the order's own query); a payment found is confirmed. The order as it then stands.
    pub(super) async fn ask_about_attempts(&self, order: Order) -> Result<Order, CheckoutError> {
        let mut order = order;
        for attempt in self.open_phone_attempts(&order).await? {
            let wechat = self.wechat().clone();
            let no = attempt.attempt_no.to_string();
            let answer = self
                .inner
                .queries
                .throttle(attempt.attempt_no.as_str(), || async move {
                    wechat.order_query(&no).await.ok()
                })
                .await
                .flatten();
            if let Some(answer) = answer {
                order = self
                    .apply_query(order, &attempt.attempt_no, &answer, PaymentSource::Query)
                    .await?;
                if order.status != OrderStatus::Pending {
                    break;
                }
            }
        }
        Ok(order)
    }

    /// Asks WeChat about one attempt of a pending order: a payment is confirmed (`Paid`), a
    /// close noted (`Closed`); otherwise `Wait`.
    pub(super) async fn query_attempt(
        &self,
        order: &Order,
        attempt: &Attempt,
    ) -> Result<AttemptClose, StoreError> {
        let query = match self.wechat().order_query(attempt.attempt_no.as_str()).await {
            Ok(query) => query,
            Err(e) if e.is_transient() => return Ok(AttemptClose::Transient),
            Err(_) => return Ok(AttemptClose::Wait),
        };
        if attempt.wechat_state.as_deref() != Some(query.trade_state.as_str()) {
            self.store()
                .note_attempt_state(&attempt.attempt_no, query.trade_state.as_str())
                .await?;
        }
        match query.trade_state {
            TradeState::Success | TradeState::Refund => {
                if let Some(event) =
                    event_from_query(order, &attempt.attempt_no, &query, PaymentSource::Reconcile)
                {
                    let recorded = self.inner.payments.confirm(&event).await?;
                    if recorded.new && order.status != OrderStatus::Pending {
                        tracing::warn!(out_trade_no = %order.out_trade_no, attempt = %attempt.attempt_no, "money found for a spare payment attempt: refund due");
                    }
                }
                Ok(AttemptClose::Paid)
            }
            TradeState::Closed | TradeState::Revoked => {
                self.store()
                    .close_attempt(&attempt.attempt_no, Utc::now())
                    .await?;
                Ok(AttemptClose::Closed)
            }
            _ => Ok(AttemptClose::Wait),
        }
    }

    /// Closes one attempt at WeChat; only once WeChat can take no money for it is it closed
    /// here. A payment found on the way is recorded.
    pub(super) async fn close_attempt_at_wechat(
        &self,
        order: &Order,
        attempt: &Attempt,
        now: DateTime<Utc>,
    ) -> Result<AttemptClose, StoreError> {
        let no = &attempt.attempt_no;
        let past_time = now >= order.expires_at + CLOSE_MARGIN;
        match self.wechat().close_order(no.as_str()).await {
            Ok(_) => {}
            Err(e) => match e.err_code() {
                Some(ErrCode::OrderClosed) => {}
                Some(ErrCode::OrderPaid) => return self.query_attempt(order, attempt).await,
                _ if e.is_transient() => return Ok(AttemptClose::Transient),
                // Never made at WeChat, or refused to close: past its time WeChat takes no
                // money for it — unless a query says it already did.
                _ if past_time => {
                    let asked = self.query_attempt(order, attempt).await?;
                    if asked != AttemptClose::Wait {
                        return Ok(asked);
                    }
                }
                _ => {
                    tracing::warn!(out_trade_no = %order.out_trade_no, attempt = %no, error = %e, "closeorder for a payment attempt refused; asked again later");
                    return Ok(AttemptClose::Wait);
                }
            },
        }
        self.store().close_attempt(no, now).await?;
        tracing::info!(out_trade_no = %order.out_trade_no, attempt = %no, "payment attempt closed at WeChat");
        Ok(AttemptClose::Closed)
    }

    /// Closes at WeChat the attempts of orders that are over another way (paid by another
    /// attempt, or closed) — once they are [`MIN_CLOSE_AGE`] old, as WeChat requires. Returns
    /// how many were closed or found paid.
    pub async fn close_spare_attempts(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let spare = self
            .store()
            .spare_attempts(now - MIN_CLOSE_AGE, SPARE_BATCH)
            .await?;
        let mut done = 0;
        for attempt in spare {
            let Some(order) = self.store().order_now(&attempt.order_no).await? else {
                continue;
            };
            match self.close_attempt_at_wechat(&order, &attempt, now).await? {
                AttemptClose::Closed | AttemptClose::Paid => done += 1,
                AttemptClose::Wait => {}
                AttemptClose::Transient => break,
            }
        }
        Ok(done)
    }
}

fn not_found() -> CheckoutError {
    CheckoutError::NotFound(super::Missing::Order)
}

const NO_H5: &str = "这家店未开通 H5 支付 This shop does not take H5 payments; scan the QR code \
                     from another phone or open this page on a computer.";
const NO_JSAPI: &str = "这家店未开通微信内支付 This shop does not take payments inside WeChat; \
                        scan the QR code from another phone.";
