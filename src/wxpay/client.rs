//! An async WeChat Pay v2 client for the Native flow.
//!
//! Every request is signed; every `return_code=SUCCESS` answer must carry a valid signature
//! (with the request's algorithm) and our own appid/mch_id, or it is refused. Errors say which
//! level failed: transport, HTTP, an invalid answer, `return_code`, or `result_code` + `err_code`.
//!
//! Retries: orderquery and closeorder are idempotent, so transport failures, HTTP 5xx and
//! `SYSTEMERROR` are retried a bounded number of times with exponential backoff and jitter.
//! unifiedorder is re-sent only when the connection could not even be opened, and then as the
//! identical signed body — never with changed parameters, which WeChat would refuse or treat as
//! a new order. After any other failure the caller must query the order.
//!
//! TLS is rustls with certificate verification always on.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::header::CONTENT_TYPE;
use url::Url;

use super::cert::ClientCert;
use super::refund::{RefundRequest, RefundResponse};
use super::sign::{self, SignType, VerifyError};
use super::types::{
    ErrCode, FieldError, OrderQueryResponse, UnifiedOrderRequest, UnifiedOrderResponse,
};
use super::xml::{self, XmlError};
use super::{nonce_str, Fields, Merchant};
use crate::rt::AppRuntime;

/// The WeChat Pay endpoints of the Native flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    UnifiedOrder,
    OrderQuery,
    CloseOrder,
    RefundQuery,
    /// `/secapi/pay/refund`, over TLS with the merchant's client certificate.
    Refund,
    /// The day's trade bill: a text table, not signed XML.
    DownloadBill,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::UnifiedOrder => "pay/unifiedorder",
            Endpoint::OrderQuery => "pay/orderquery",
            Endpoint::CloseOrder => "pay/closeorder",
            Endpoint::RefundQuery => "pay/refundquery",
            Endpoint::Refund => "secapi/pay/refund",
            Endpoint::DownloadBill => "pay/downloadbill",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Endpoint::UnifiedOrder => "unifiedorder",
            Endpoint::OrderQuery => "orderquery",
            Endpoint::CloseOrder => "closeorder",
            Endpoint::RefundQuery => "refundquery",
            Endpoint::Refund => "refund",
            Endpoint::DownloadBill => "downloadbill",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How often and how patiently idempotent calls are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each further one, plus up to 50% jitter.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    pub(crate) fn delay_before(&self, retry: u32) -> Duration {
        let doubled = self
            .base_delay
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        let delay = doubled.min(self.max_delay);
        let jitter_ms = rand::rng().random_range(0..=delay.as_millis() as u64 / 2);
        delay + Duration::from_millis(jitter_ms)
    }
}

/// Everything the client needs to know.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `https://api.mch.weixin.qq.com`, or a sandbox speaking the same paths.
    pub base_url: Url,
    pub merchant: Merchant,
    /// The algorithm requests are signed with (and answers verified with).
    pub sign_type: SignType,
    pub connect_timeout: Duration,
    /// The whole request, from connecting to the last byte of the answer.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// A CA trusted besides the public roots, PEM (`WEIXIN_CA_PEM`: a sandbox's own CA).
    pub extra_root_pem: Option<String>,
    /// Where and with which client certificate `/secapi/` calls (refunds) go; `None`: refunds
    /// are refused with [`WxError::NoCertificate`].
    pub secapi: Option<SecApi>,
}

/// The certificate-authenticated side of the API.
#[derive(Debug, Clone)]
pub struct SecApi {
    /// WeChat's base URL (the same as the others'; a sandbox may serve it on its TLS listener).
    pub base_url: Url,
    pub cert: ClientCert,
}

impl ClientConfig {
    /// WeChat's recommended timeouts (connect 5 s, whole request 10 s) and the default retries.
    pub fn new(base_url: Url, merchant: Merchant, sign_type: SignType) -> Self {
        ClientConfig {
            base_url,
            merchant,
            sign_type,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            extra_root_pem: None,
            secapi: None,
        }
    }
}

/// What was wrong with an answer that did arrive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseProblem {
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Xml(#[from] XmlError),
    #[error("signature: {0}")]
    Signature(#[from] VerifyError),
    #[error("{0}")]
    Fields(#[from] FieldError),
    #[error("answer is for another merchant or order ({0})")]
    Mismatch(&'static str),
    #[error("unexpected result_code")]
    BadResultCode,
    #[error("{0}")]
    Bill(#[from] super::bill::BillError),
    /// An API v3 answer's problem, as the v3 client named it (the checkout service reads both
    /// protocols' failures as this client's).
    #[error("{0}")]
    V3(String),
}

/// A failed call, by the level that failed.
#[derive(Debug, thiserror::Error)]
pub enum WxError {
    /// No answer: connection refused or reset, timeout, TLS failure.
    #[error("{endpoint}: transport error: {source}")]
    Transport {
        endpoint: Endpoint,
        #[source]
        source: reqwest::Error,
    },
    /// An answer that is not HTTP 200.
    #[error("{endpoint}: HTTP status {status}")]
    HttpStatus { endpoint: Endpoint, status: u16 },
    /// An HTTP 200 answer that cannot be trusted or read.
    #[error("{endpoint}: invalid answer: {problem}")]
    InvalidResponse {
        endpoint: Endpoint,
        problem: ResponseProblem,
    },
    /// `return_code=FAIL`: the call itself was refused (bad signature, bad XML, parameters).
    #[error("{endpoint}: return_code=FAIL: {return_msg}")]
    ReturnFail {
        endpoint: Endpoint,
        return_msg: String,
    },
    /// A `/secapi/` call without a configured client certificate: it was not sent.
    #[error("{endpoint}: no client certificate configured (WEIXIN_CERT_P12, or WEIXIN_CERT_PEM and WEIXIN_KEY_PEM)")]
    NoCertificate { endpoint: Endpoint },
    /// `result_code=FAIL`: the business operation failed with `err_code`.
    #[error("{endpoint}: result_code=FAIL: {err_code} ({err_code_des})")]
    Business {
        endpoint: Endpoint,
        err_code: ErrCode,
        err_code_des: String,
    },
}

impl WxError {
    pub fn endpoint(&self) -> Endpoint {
        match self {
            WxError::Transport { endpoint, .. }
            | WxError::HttpStatus { endpoint, .. }
            | WxError::InvalidResponse { endpoint, .. }
            | WxError::ReturnFail { endpoint, .. }
            | WxError::NoCertificate { endpoint }
            | WxError::Business { endpoint, .. } => *endpoint,
        }
    }

    /// The `err_code` of a business failure.
    pub fn err_code(&self) -> Option<&ErrCode> {
        match self {
            WxError::Business { err_code, .. } => Some(err_code),
            _ => None,
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, WxError::Transport { source, .. } if source.is_timeout())
    }

    /// The outcome is unknown or WeChat asked to try again: nothing can be concluded about the
    /// order, so query it later rather than acting on this answer.
    pub fn is_transient(&self) -> bool {
        match self {
            WxError::Transport { .. } => true,
            WxError::HttpStatus { status, .. } => *status >= 500,
            WxError::Business { err_code, .. } => {
                matches!(err_code, ErrCode::SystemError | ErrCode::FrequencyLimited)
            }
            WxError::InvalidResponse { .. }
            | WxError::ReturnFail { .. }
            | WxError::NoCertificate { .. } => false,
        }
    }

    /// The request never left: the connection could not be opened.
    fn not_sent(&self) -> bool {
        matches!(self, WxError::Transport { source, .. } if source.is_connect())
    }
}

/// What one probing question to WeChat brought back.
#[derive(Debug)]
pub struct Probe {
    /// The answer's HTTP `Date` header, as sent.
    pub date: Option<String>,
    /// The answer's fields, as sent (verified or not).
    pub raw: Option<Fields>,
    /// The answer judged as every call's is.
    pub result: Result<(), WxError>,
}

/// Largest answer read; WeChat's are well under 4 KiB.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// How long a bill download may take, from connecting to its last byte: a busy day's bill is
/// tens of megabytes.
const BILL_TIMEOUT: Duration = Duration::from_secs(120);

/// The WeChat Pay client. Cheap to clone; clones share one connection pool.
#[derive(Clone)]
pub struct Client {
    /// Presents the client certificate when one is configured: `/secapi/` calls need it, and
    /// a server that asks for it on every call (a sandbox's TLS listener) gets it there too.
    http: reqwest::Client,
    config: Arc<ClientConfig>,
    /// Where connections to WeChat are opened and driven: the application runtime, never a web
    /// worker's (see [`crate::rt`]).
    rt: AppRuntime,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .finish()
    }
}

impl Client {
    /// A client whose connections are opened and driven on `rt` (see [`crate::rt`]).
    pub fn new(config: ClientConfig, rt: &AppRuntime) -> Result<Self, reqwest::Error> {
        let mut builder = http_builder(
            config.connect_timeout,
            config.timeout,
            config.extra_root_pem.as_deref(),
        )?;
        if let Some(secapi) = &config.secapi {
            builder = builder.identity(secapi.cert.identity()?);
        }
        Ok(Client {
            http: builder.build()?,
            config: Arc::new(config),
            rt: rt.clone(),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The runtime its connections live on (see [`crate::rt`]).
    pub fn runtime(&self) -> &AppRuntime {
        &self.rt
    }

    pub fn sign_type(&self) -> SignType {
        self.config.sign_type
    }

    /// Places a Native unified order. Re-sent only if no connection could be made, as the same
    /// signed body; after any other error, query the order before trying again.
    pub async fn unified_order(
        &self,
        request: &UnifiedOrderRequest,
    ) -> Result<UnifiedOrderResponse, WxError> {
        let endpoint = Endpoint::UnifiedOrder;
        let body = self.signed_body(request.to_fields());
        let mut attempt = 1;
        let fields = loop {
            match self.send(endpoint, body.clone()).await {
                Err(e) if e.not_sent() && attempt < self.config.retry.max_attempts => {
                    tokio::time::sleep(self.config.retry.delay_before(attempt)).await;
                    attempt += 1;
                }
                other => break other?,
            }
        };
        UnifiedOrderResponse::from_fields(&fields).map_err(|e| invalid(endpoint, e.into()))
    }

    /// Queries an order by `out_trade_no`.
    pub async fn order_query(&self, out_trade_no: &str) -> Result<OrderQueryResponse, WxError> {
        let endpoint = Endpoint::OrderQuery;
        let fields = self.call_idempotent(endpoint, out_trade_no).await?;
        let response =
            OrderQueryResponse::from_fields(&fields).map_err(|e| invalid(endpoint, e.into()))?;
        if response.out_trade_no != out_trade_no {
            return Err(invalid(endpoint, ResponseProblem::Mismatch("out_trade_no")));
        }
        Ok(response)
    }

    /// One orderquery, never retried, with the answer's HTTP `Date` header (RFC 7231 text) and
    /// its raw fields when it had any: a harmless question whose answer says whether WeChat
    /// takes the credentials, and what time WeChat thinks it is.
    pub async fn probe_order_query(&self, out_trade_no: &str) -> Probe {
        let endpoint = Endpoint::OrderQuery;
        let mut fields = Fields::new();
        fields.insert("out_trade_no".into(), out_trade_no.into());
        let url = self.url(&self.config.base_url, endpoint);
        let started = Instant::now();
        let fetched = self
            .rt
            .run(Self::fetch_dated(
                &self.http,
                endpoint,
                url,
                self.signed_body(fields),
                MAX_ANSWER_BYTES,
                self.config.timeout,
            ))
            .await;
        let (date, raw, result) = match fetched {
            Ok((answer, date)) => (
                date,
                xml::decode(&answer).ok(),
                self.judge(endpoint, &answer),
            ),
            Err(e) => (None, None, Err(e)),
        };
        self.observe(endpoint, started, &result);
        Probe {
            date,
            raw,
            result: result.map(drop),
        }
    }

    /// The order's refunds (`/pay/refundquery`, no client certificate needed). An order without
    /// refunds comes back as [`WxError::Business`] with `REFUNDNOTEXIST`.
    pub async fn refund_query(
        &self,
        out_trade_no: &str,
    ) -> Result<super::refund::RefundQueryResponse, WxError> {
        let endpoint = Endpoint::RefundQuery;
        let fields = self.call_idempotent(endpoint, out_trade_no).await?;
        let response = super::refund::RefundQueryResponse::from_fields(&fields)
            .map_err(|e| invalid(endpoint, e.into()))?;
        if response.out_trade_no != out_trade_no {
            return Err(invalid(endpoint, ResponseProblem::Mismatch("out_trade_no")));
        }
        Ok(response)
    }

    /// Whether refunds can be asked for: a client certificate is configured.
    pub fn can_refund(&self) -> bool {
        self.config.secapi.is_some()
    }

    /// Asks WeChat to refund (`/secapi/pay/refund`, with the client certificate). `Ok` means
    /// *accepted*: the refund settles later (refund notify or query). The same `out_refund_no`
    /// is the same refund at WeChat, so an unknown outcome (no answer, 5xx, `SYSTEMERROR`,
    /// `FREQUENCY_LIMITED`) is retried here a bounded number of times with it, and the caller
    /// retries later with it again; nothing can refund twice.
    pub async fn refund(&self, request: &RefundRequest) -> Result<RefundResponse, WxError> {
        let endpoint = Endpoint::Refund;
        let Some(secapi) = &self.config.secapi else {
            return Err(WxError::NoCertificate { endpoint });
        };
        let mut attempt = 1;
        let fields = loop {
            let body = self.signed_body(request.to_fields());
            match self.send_to(&secapi.base_url, endpoint, body).await {
                Err(e) if e.is_transient() && attempt < self.config.retry.max_attempts => {
                    tracing::debug!(%endpoint, attempt, error = %e, "retrying");
                    tokio::time::sleep(self.config.retry.delay_before(attempt)).await;
                    attempt += 1;
                }
                other => break other?,
            }
        };
        let response =
            RefundResponse::from_fields(&fields).map_err(|e| invalid(endpoint, e.into()))?;
        if response.out_trade_no != request.out_trade_no {
            return Err(invalid(endpoint, ResponseProblem::Mismatch("out_trade_no")));
        }
        if response.out_refund_no != request.out_refund_no {
            return Err(invalid(
                endpoint,
                ResponseProblem::Mismatch("out_refund_no"),
            ));
        }
        Ok(response)
    }

    /// Downloads one Beijing day's trade bill and reads it ([`super::bill::parse`]): `Ok(None)`
    /// when WeChat has no bill for the day (`No Bill Exist`: no trades). A bill not made yet
    /// (`Bill Creating`) and any other refusal is [`WxError::ReturnFail`]; a bill that cannot
    /// be read or is not this merchant's is [`WxError::InvalidResponse`]. Transient failures
    /// are retried like a query's.
    pub async fn download_bill(
        &self,
        request: &super::bill::BillRequest,
    ) -> Result<Option<super::bill::Bill>, WxError> {
        use super::bill;
        let endpoint = Endpoint::DownloadBill;
        let url = self.url(&self.config.base_url, endpoint);
        let mut attempt = 1;
        let answer = loop {
            let body = self.signed_body(request.to_fields());
            let started = Instant::now();
            let fetch = Self::fetch(
                &self.http,
                endpoint,
                url.clone(),
                body,
                bill::MAX_BILL_BYTES,
                BILL_TIMEOUT,
            );
            let result = self.rt.run(fetch).await;
            self.observe(endpoint, started, &result);
            match result {
                Err(e) if e.is_transient() && attempt < self.config.retry.max_attempts => {
                    tracing::debug!(%endpoint, attempt, error = %e, "retrying");
                    tokio::time::sleep(self.config.retry.delay_before(attempt)).await;
                    attempt += 1;
                }
                other => break other?,
            }
        };
        let text = if answer.starts_with(&[0x1f, 0x8b]) {
            bill::gunzip(&answer).map_err(|e| invalid(endpoint, e.into()))?
        } else {
            answer
        };
        if text.trim_ascii_start().starts_with(b"<") {
            // Refusals are XML, unsigned.
            let fields = xml::decode(&text).map_err(|e| invalid(endpoint, e.into()))?;
            let return_msg = fields.get("return_msg").cloned().unwrap_or_default();
            return match fields.get("return_code").map(String::as_str) {
                Some("FAIL") if bill::is_no_bill(&return_msg) => Ok(None),
                Some("FAIL") => Err(WxError::ReturnFail {
                    endpoint,
                    return_msg,
                }),
                _ => Err(invalid(
                    endpoint,
                    FieldError::Malformed("return_code").into(),
                )),
            };
        }
        bill::parse(&text, &self.config.merchant.mch_id)
            .map(Some)
            .map_err(|e| invalid(endpoint, e.into()))
    }

    /// Closes an unpaid order. `ORDERPAID`, `ORDERCLOSED` and `ORDERNOTEXIST` come back as
    /// [`WxError::Business`] for the caller to act on.
    pub async fn close_order(&self, out_trade_no: &str) -> Result<(), WxError> {
        self.call_idempotent(Endpoint::CloseOrder, out_trade_no)
            .await
            .map(drop)
    }

    async fn call_idempotent(
        &self,
        endpoint: Endpoint,
        out_trade_no: &str,
    ) -> Result<Fields, WxError> {
        let mut attempt = 1;
        loop {
            let mut fields = Fields::new();
            fields.insert("out_trade_no".into(), out_trade_no.into());
            let result = self.send(endpoint, self.signed_body(fields)).await;
            match result {
                Err(e) if e.is_transient() && attempt < self.config.retry.max_attempts => {
                    tracing::debug!(%endpoint, attempt, error = %e, "retrying");
                    tokio::time::sleep(self.config.retry.delay_before(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Adds the merchant fields, a fresh nonce and the signature; encodes the XML body.
    fn signed_body(&self, mut fields: Fields) -> String {
        let merchant = &self.config.merchant;
        fields.insert("appid".into(), merchant.appid.clone());
        fields.insert("mch_id".into(), merchant.mch_id.clone());
        fields.insert("nonce_str".into(), nonce_str());
        fields.insert("sign_type".into(), self.config.sign_type.as_str().into());
        let signature = sign::sign(&fields, &merchant.key, self.config.sign_type);
        fields.insert("sign".into(), signature);
        xml::encode(&fields)
    }

    /// One HTTP exchange, judged down to `result_code`.
    async fn send(&self, endpoint: Endpoint, body: String) -> Result<Fields, WxError> {
        self.send_to(&self.config.base_url, endpoint, body).await
    }

    async fn send_to(
        &self,
        base_url: &Url,
        endpoint: Endpoint,
        body: String,
    ) -> Result<Fields, WxError> {
        let url = self.url(base_url, endpoint);
        let started = Instant::now();
        let result = self.exchange(endpoint, url, body).await;
        self.observe(endpoint, started, &result);
        result
    }

    fn url(&self, base_url: &Url, endpoint: Endpoint) -> Url {
        base_url
            .join(endpoint.path())
            .expect("a fixed relative path joins onto any base URL")
    }

    /// Records a call's duration and failure in the metrics and the debug log.
    fn observe<T>(&self, endpoint: Endpoint, started: Instant, result: &Result<T, WxError>) {
        let elapsed = started.elapsed();
        metrics::histogram!("wechat_api_duration_seconds", "api" => endpoint.name())
            .record(elapsed.as_secs_f64());
        if let Err(e) = result {
            let (level, err_code) = match e {
                WxError::Transport { .. } => ("transport", String::new()),
                WxError::HttpStatus { status, .. } => ("http", status.to_string()),
                WxError::InvalidResponse { .. } => ("invalid_response", String::new()),
                WxError::ReturnFail { .. } => ("return_code", String::new()),
                WxError::NoCertificate { .. } => ("certificate", String::new()),
                WxError::Business { err_code, .. } => ("result_code", err_code.to_string()),
            };
            metrics::counter!(
                "wechat_api_errors_total",
                "api" => endpoint.name(),
                "level" => level,
                "err_code" => err_code
            )
            .increment(1);
        }
        tracing::debug!(
            %endpoint,
            elapsed_ms = elapsed.as_millis() as u64,
            ok = result.is_ok(),
            "wechat pay call"
        );
    }

    async fn exchange(
        &self,
        endpoint: Endpoint,
        url: Url,
        body: String,
    ) -> Result<Fields, WxError> {
        let answer = self
            .rt
            .run(Self::fetch(
                &self.http,
                endpoint,
                url,
                body,
                MAX_ANSWER_BYTES,
                self.config.timeout,
            ))
            .await?;
        self.judge(endpoint, &answer)
    }

    /// POSTs `body` and reads the answer, bounded in size (`limit` bytes) and time.
    async fn fetch(
        http: &reqwest::Client,
        endpoint: Endpoint,
        url: Url,
        body: String,
        limit: usize,
        timeout: Duration,
    ) -> Result<Vec<u8>, WxError> {
        Self::fetch_dated(http, endpoint, url, body, limit, timeout)
            .await
            .map(|(answer, _)| answer)
    }

    /// [`Client::fetch`], also returning the answer's HTTP `Date` header.
    async fn fetch_dated(
        http: &reqwest::Client,
        endpoint: Endpoint,
        url: Url,
        body: String,
        limit: usize,
        timeout: Duration,
    ) -> Result<(Vec<u8>, Option<String>), WxError> {
        let transport = |source| WxError::Transport { endpoint, source };
        let mut response = http
            .post(url)
            .timeout(timeout)
            .header(CONTENT_TYPE, "text/xml; charset=utf-8")
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(WxError::HttpStatus {
                endpoint,
                status: response.status().as_u16(),
            });
        }
        let date = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|d| d.to_str().ok())
            .map(str::to_owned);
        let mut answer = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if answer.len() + chunk.len() > limit {
                return Err(invalid(endpoint, ResponseProblem::TooLarge(limit)));
            }
            answer.extend_from_slice(&chunk);
        }
        Ok((answer, date))
    }

    /// return_code → signature and merchant → result_code.
    fn judge(&self, endpoint: Endpoint, answer: &[u8]) -> Result<Fields, WxError> {
        let fields = xml::decode(answer).map_err(|e| invalid(endpoint, e.into()))?;
        match fields.get("return_code").map(String::as_str) {
            Some("SUCCESS") => {}
            Some("FAIL") => {
                return Err(WxError::ReturnFail {
                    endpoint,
                    return_msg: fields.get("return_msg").cloned().unwrap_or_default(),
                })
            }
            _ => {
                return Err(invalid(
                    endpoint,
                    FieldError::Malformed("return_code").into(),
                ))
            }
        }
        let merchant = &self.config.merchant;
        sign::verify(&fields, &merchant.key, self.config.sign_type)
            .map_err(|e| invalid(endpoint, e.into()))?;
        for (name, ours) in [("appid", &merchant.appid), ("mch_id", &merchant.mch_id)] {
            if fields.get(name).is_some_and(|theirs| theirs != ours) {
                return Err(invalid(endpoint, ResponseProblem::Mismatch(name)));
            }
        }
        match fields.get("result_code").map(String::as_str) {
            Some("SUCCESS") => Ok(fields),
            Some("FAIL") => Err(WxError::Business {
                endpoint,
                err_code: ErrCode::from(fields.get("err_code").map_or("", String::as_str)),
                err_code_des: fields.get("err_code_des").cloned().unwrap_or_default(),
            }),
            _ => Err(invalid(endpoint, ResponseProblem::BadResultCode)),
        }
    }
}

/// The HTTPS client both APIs call WeChat with: its timeouts, no redirects followed, the shop's
/// user agent (v3 refuses requests without one), and a CA trusted besides the public roots.
pub(crate) fn http_builder(
    connect_timeout: Duration,
    timeout: Duration,
    extra_root_pem: Option<&str>,
) -> Result<reqwest::ClientBuilder, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("wxpay-checkout/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = extra_root_pem {
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes())?);
    }
    Ok(builder)
}

fn invalid(endpoint: Endpoint, problem: ResponseProblem) -> WxError {
    WxError::InvalidResponse { endpoint, problem }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(300),
        };
        let first = policy.delay_before(1);
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(150));
        let second = policy.delay_before(2);
        assert!(second >= Duration::from_millis(200) && second <= Duration::from_millis(300));
        let late = policy.delay_before(40);
        assert!(late >= Duration::from_millis(300) && late <= Duration::from_millis(450));
    }
}
