//! An async WeChat Pay v3 client for the Native flow, refunds and the trade bill.
//!
//! Every request is signed with the merchant's API key; every 2xx answer must carry WeChat Pay's
//! signature by the configured public key, within 5 minutes of this clock, or it is refused
//! ([`Problem::Signature`]). A refusal (4xx/5xx) is read as WeChat's `{"code","message"}`.
//!
//! Retries follow the v2 client's rules: queries, closes, refund queries and the bill are
//! idempotent and retried on transport failures, 5xx, `SYSTEM_ERROR` and `FREQUENCY_LIMITED`;
//! a refund is retried with the same `out_refund_no` (the same refund at WeChat); a Native order
//! is re-sent only when no connection could be opened, as the identical signed body.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use url::Url;

use super::auth::{verify_answer, Authorization, Request, SignatureError, SignedHeaders};
use super::crypto::{ApiV3Key, MerchantKey, PayPublicKey};
use super::notify::random_text;
use super::types::{
    CloseRequest, ErrorAnswer, NativeAnswer, NativeRequest, Refund, RefundRequest, TradeBillAnswer,
    Transaction,
};
use crate::rt::AppRuntime;
use crate::wxpay::client::RetryPolicy;

/// The v3 endpoints the checkout uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Native,
    Query,
    Close,
    Refund,
    RefundQuery,
    TradeBill,
    BillDownload,
}

impl Endpoint {
    /// The metric label, as v2's: `api="v3_native"`…
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Native => "v3_native",
            Endpoint::Query => "v3_query",
            Endpoint::Close => "v3_close",
            Endpoint::Refund => "v3_refund",
            Endpoint::RefundQuery => "v3_refund_query",
            Endpoint::TradeBill => "v3_tradebill",
            Endpoint::BillDownload => "v3_billdownload",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A merchant's v3 credentials. `Debug` shows ids, never keys.
#[derive(Clone)]
pub struct Credentials {
    pub appid: String,
    pub mchid: String,
    /// The serial number of the merchant's API certificate (`WEIXIN_MCH_SERIAL`).
    pub serial_no: String,
    pub key: Arc<MerchantKey>,
    /// WeChat Pay's public key and its id (`WEIXIN_PAY_PUBLIC_KEY`, `WEIXIN_PAY_PUBLIC_KEY_ID`).
    pub pay_key: PayPublicKey,
    pub apiv3_key: ApiV3Key,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("appid", &self.appid)
            .field("mchid", &self.mchid)
            .field("serial_no", &self.serial_no)
            .field("pay_key", &self.pay_key)
            .finish_non_exhaustive()
    }
}

/// Everything the client needs to know.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `https://api.mch.weixin.qq.com`, or a sandbox speaking the same paths.
    pub base_url: Url,
    pub credentials: Credentials,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// A CA trusted besides the public roots, PEM (a sandbox's own).
    pub extra_root_pem: Option<String>,
}

impl ClientConfig {
    /// WeChat's recommended timeouts (connect 5 s, whole request 10 s) and the default retries.
    pub fn new(base_url: Url, credentials: Credentials) -> Self {
        Self {
            base_url,
            credentials,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            extra_root_pem: None,
        }
    }
}

/// What was wrong with an answer that did arrive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
    #[error("signature: {0}")]
    Signature(#[from] SignatureError),
    #[error("not the JSON expected: {0}")]
    Json(String),
    #[error("answer is for another merchant or order ({0})")]
    Mismatch(&'static str),
    #[error("the bill's SHA1 is not the one announced")]
    Hash,
    #[error("the bill is to be fetched from {0}, not WeChat Pay's own host")]
    ForeignDownload(String),
    #[error("HTTP status {0} where WeChat answers {1}")]
    UnexpectedStatus(u16, u16),
}

/// A failed call, by the level that failed.
#[derive(Debug, thiserror::Error)]
pub enum V3Error {
    /// No answer: connection refused or reset, timeout, TLS failure.
    #[error("{endpoint}: transport error: {source}")]
    Transport {
        endpoint: Endpoint,
        #[source]
        source: reqwest::Error,
    },
    /// WeChat refused (4xx/5xx) with its `code` and `message`.
    #[error("{endpoint}: HTTP {status} {code}: {message}")]
    Refused {
        endpoint: Endpoint,
        status: u16,
        code: String,
        message: String,
    },
    /// A 4xx/5xx that is not WeChat's JSON (a proxy's page).
    #[error("{endpoint}: HTTP status {status}")]
    HttpStatus { endpoint: Endpoint, status: u16 },
    /// An answer that cannot be trusted or read.
    #[error("{endpoint}: invalid answer: {problem}")]
    InvalidResponse {
        endpoint: Endpoint,
        problem: Problem,
    },
}

impl V3Error {
    pub fn endpoint(&self) -> Endpoint {
        match self {
            V3Error::Transport { endpoint, .. }
            | V3Error::Refused { endpoint, .. }
            | V3Error::HttpStatus { endpoint, .. }
            | V3Error::InvalidResponse { endpoint, .. } => *endpoint,
        }
    }

    /// WeChat's `code` of a refusal (`ORDER_NOT_EXIST`, `ORDER_CLOSED`, `NOT_ENOUGH`…).
    pub fn code(&self) -> Option<&str> {
        match self {
            V3Error::Refused { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The outcome is unknown or WeChat asked to try again.
    pub fn is_transient(&self) -> bool {
        match self {
            V3Error::Transport { .. } => true,
            V3Error::HttpStatus { status, .. } => *status >= 500 || *status == 429,
            V3Error::Refused { status, code, .. } => {
                *status >= 500
                    || *status == 429
                    || matches!(code.as_str(), "SYSTEM_ERROR" | "FREQUENCY_LIMITED")
            }
            V3Error::InvalidResponse { .. } => false,
        }
    }

    fn not_sent(&self) -> bool {
        matches!(self, V3Error::Transport { source, .. } if source.is_connect())
    }
}

/// Largest JSON answer read; WeChat's are a few KiB.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// How long a bill download may take.
const BILL_TIMEOUT: Duration = Duration::from_secs(120);

/// The v3 client. Cheap to clone; clones share one connection pool.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    config: Arc<ClientConfig>,
    rt: AppRuntime,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("v3::Client")
            .field("config", &self.config)
            .finish()
    }
}

/// One exchange's answer, verified.
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
}

/// An answer as it came.
struct Raw {
    status: StatusCode,
    headers: SignedHeaders,
    date: Option<String>,
    body: Vec<u8>,
}

/// What one probing query brought back (see [`Client::probe_query`]).
#[derive(Debug)]
pub struct Probe {
    /// The answer's HTTP `Date` header, as sent.
    pub date: Option<String>,
    /// The answer's signature checked, when it carried one.
    pub signature: Option<Result<(), SignatureError>>,
    /// The answer judged as a query's is (without the signature check).
    pub result: Result<(), V3Error>,
}

impl Client {
    /// A client whose connections are opened and driven on `rt` (see [`crate::rt`]).
    pub fn new(config: ClientConfig, rt: &AppRuntime) -> Result<Self, reqwest::Error> {
        let builder = crate::wxpay::client::http_builder(
            config.connect_timeout,
            config.timeout,
            config.extra_root_pem.as_deref(),
        )?;
        Ok(Self {
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

    /// Places a Native order. Re-sent only when no connection could be opened; after any other
    /// error, query the order before trying again.
    pub async fn native(&self, request: &NativeRequest) -> Result<NativeAnswer, V3Error> {
        let endpoint = Endpoint::Native;
        let body = to_json(request);
        let mut attempt = 1;
        let answer = loop {
            match self
                .call(endpoint, Method::POST, "/v3/pay/transactions/native", &body)
                .await
            {
                Err(e) if e.not_sent() && attempt < self.config.retry.max_attempts => {
                    tokio::time::sleep(self.config.retry.delay_before(attempt)).await;
                    attempt += 1;
                }
                other => break other?,
            }
        };
        expect_status(endpoint, &answer, StatusCode::OK)?;
        read(endpoint, &answer.body)
    }

    /// Queries a transaction by `out_trade_no`. Never placed: [`V3Error::Refused`] with
    /// `ORDER_NOT_EXIST` (HTTP 404).
    pub async fn query(&self, out_trade_no: &str) -> Result<Transaction, V3Error> {
        let endpoint = Endpoint::Query;
        let path = self.query_path(out_trade_no);
        let answer = self.idempotent(endpoint, Method::GET, &path, "").await?;
        expect_status(endpoint, &answer, StatusCode::OK)?;
        let transaction: Transaction = read(endpoint, &answer.body)?;
        if transaction.out_trade_no != out_trade_no {
            return Err(invalid(endpoint, Problem::Mismatch("out_trade_no")));
        }
        self.check_merchant(endpoint, &transaction.mchid, Some(&transaction.appid))?;
        Ok(transaction)
    }

    /// Closes an unpaid transaction (`204`). A paid one is refused with `ORDER_PAID`… as
    /// [`V3Error::Refused`], for the caller to act on.
    pub async fn close(&self, out_trade_no: &str) -> Result<(), V3Error> {
        let endpoint = Endpoint::Close;
        let path = format!(
            "/v3/pay/transactions/out-trade-no/{}/close",
            path_segment(out_trade_no)
        );
        let body = to_json(&CloseRequest {
            mchid: self.config.credentials.mchid.clone(),
        });
        let answer = self
            .idempotent(endpoint, Method::POST, &path, &body)
            .await?;
        expect_status(endpoint, &answer, StatusCode::NO_CONTENT)
    }

    /// Asks for a refund (no client certificate in v3). `Ok` is *accepted* (`PROCESSING`) or
    /// already settled; the same `out_refund_no` is the same refund at WeChat, so unknown
    /// outcomes are retried with it.
    pub async fn refund(&self, request: &RefundRequest) -> Result<Refund, V3Error> {
        let endpoint = Endpoint::Refund;
        let body = to_json(request);
        let answer = self
            .idempotent(endpoint, Method::POST, "/v3/refund/domestic/refunds", &body)
            .await?;
        expect_status(endpoint, &answer, StatusCode::OK)?;
        let refund: Refund = read(endpoint, &answer.body)?;
        if refund.out_refund_no != request.out_refund_no {
            return Err(invalid(endpoint, Problem::Mismatch("out_refund_no")));
        }
        if let Some(no) = &request.out_trade_no {
            if &refund.out_trade_no != no {
                return Err(invalid(endpoint, Problem::Mismatch("out_trade_no")));
            }
        }
        Ok(refund)
    }

    /// One refund by `out_refund_no`. Unknown: `RESOURCE_NOT_EXISTS` (HTTP 404).
    pub async fn refund_query(&self, out_refund_no: &str) -> Result<Refund, V3Error> {
        let endpoint = Endpoint::RefundQuery;
        let path = format!(
            "/v3/refund/domestic/refunds/{}",
            path_segment(out_refund_no)
        );
        let answer = self.idempotent(endpoint, Method::GET, &path, "").await?;
        expect_status(endpoint, &answer, StatusCode::OK)?;
        let refund: Refund = read(endpoint, &answer.body)?;
        if refund.out_refund_no != out_refund_no {
            return Err(invalid(endpoint, Problem::Mismatch("out_refund_no")));
        }
        Ok(refund)
    }

    /// One Beijing day's trade bill (`yyyy-MM-dd`), every trade (`bill_type=ALL`), as the text
    /// WeChat keeps it: `Ok(None)` when there is none (`NO_STATEMENT_EXIST`: no trades that
    /// day). See [`Client::trade_bill_with`].
    pub async fn trade_bill(&self, bill_date: &str) -> Result<Option<Vec<u8>>, V3Error> {
        self.trade_bill_with(bill_date, "ALL", false).await
    }

    /// One day's trade bill of `bill_type` (`ALL`, `SUCCESS`, `REFUND`), sent GZIP-compressed
    /// when `gzip` (`tar_type=GZIP`) and returned decompressed. Two calls, as WeChat has it: the
    /// bill's address and SHA1 (of the original, uncompressed bill), then a signed GET of the
    /// file, whose hash must match. Not made yet: [`V3Error::Refused`] `STATEMENT_CREATING`.
    pub async fn trade_bill_with(
        &self,
        bill_date: &str,
        bill_type: &str,
        gzip: bool,
    ) -> Result<Option<Vec<u8>>, V3Error> {
        let endpoint = Endpoint::TradeBill;
        let mut path = format!(
            "/v3/bill/tradebill?bill_date={}&bill_type={}",
            path_segment(bill_date),
            path_segment(bill_type)
        );
        if gzip {
            path.push_str("&tar_type=GZIP");
        }
        let answer = match self.idempotent(endpoint, Method::GET, &path, "").await {
            Err(e) if e.code() == Some("NO_STATEMENT_EXIST") => return Ok(None),
            other => other?,
        };
        expect_status(endpoint, &answer, StatusCode::OK)?;
        let bill: TradeBillAnswer = read(endpoint, &answer.body)?;
        self.download(&bill).await.map(Some)
    }

    async fn download(&self, bill: &TradeBillAnswer) -> Result<Vec<u8>, V3Error> {
        let endpoint = Endpoint::BillDownload;
        let url = Url::parse(&bill.download_url).map_err(|_| {
            invalid(
                endpoint,
                Problem::ForeignDownload(bill.download_url.clone()),
            )
        })?;
        if url.origin() != self.config.base_url.origin() {
            return Err(invalid(
                endpoint,
                Problem::ForeignDownload(url.host_str().unwrap_or_default().to_owned()),
            ));
        }
        let path = match url.query() {
            Some(q) => format!("{}?{}", url.path(), q),
            None => url.path().to_owned(),
        };
        let mut attempt = 1;
        let file = loop {
            let started = Instant::now();
            let result = self
                .rt
                .run(self.exchange(
                    endpoint,
                    Method::GET,
                    &path,
                    "",
                    crate::wxpay::bill::MAX_BILL_BYTES,
                    BILL_TIMEOUT,
                    false,
                ))
                .await;
            observe(endpoint, started, &result);
            match result {
                Err(e) if e.is_transient() && attempt < self.config.retry.max_attempts => {
                    tokio::time::sleep(self.config.retry.delay_before(attempt)).await;
                    attempt += 1;
                }
                other => break other?,
            }
        };
        expect_status(endpoint, &file, StatusCode::OK)?;
        if !bill.hash_type.eq_ignore_ascii_case("SHA1") {
            return Err(invalid(endpoint, Problem::Hash));
        }
        // The hash is the original bill's: a GZIP file is hashed once decompressed.
        let text = if file.body.starts_with(&[0x1f, 0x8b]) {
            crate::wxpay::bill::gunzip(&file.body)
                .map_err(|e| invalid(endpoint, Problem::Json(format!("the bill: {e}"))))?
        } else {
            file.body
        };
        let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &text);
        if !hex::encode(digest.as_ref()).eq_ignore_ascii_case(bill.hash_value.trim()) {
            return Err(invalid(endpoint, Problem::Hash));
        }
        Ok(text)
    }

    async fn idempotent(
        &self,
        endpoint: Endpoint,
        method: Method,
        path: &str,
        body: &str,
    ) -> Result<Answer, V3Error> {
        let mut attempt = 1;
        loop {
            match self.call(endpoint, method.clone(), path, body).await {
                Err(e) if e.is_transient() && attempt < self.config.retry.max_attempts => {
                    tracing::debug!(%endpoint, attempt, error = %e, "retrying");
                    tokio::time::sleep(self.config.retry.delay_before(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn call(
        &self,
        endpoint: Endpoint,
        method: Method,
        path: &str,
        body: &str,
    ) -> Result<Answer, V3Error> {
        let started = Instant::now();
        let result = self
            .rt
            .run(self.exchange(
                endpoint,
                method,
                path,
                body,
                MAX_ANSWER_BYTES,
                self.config.timeout,
                true,
            ))
            .await;
        observe(endpoint, started, &result);
        result
    }

    /// One signed request; the answer read within `limit` bytes, a 2xx verified when `signed`
    /// (the bill file is the one answer WeChat does not sign), a refusal read as WeChat's JSON.
    #[expect(
        clippy::too_many_arguments,
        reason = "one private exchange; its callers name every argument"
    )]
    async fn exchange(
        &self,
        endpoint: Endpoint,
        method: Method,
        path: &str,
        body: &str,
        limit: usize,
        timeout: Duration,
        signed: bool,
    ) -> Result<Answer, V3Error> {
        let raw = self
            .fetch(endpoint, method, path, body, limit, timeout)
            .await?;
        if !raw.status.is_success() {
            return Err(refusal(endpoint, raw.status, &raw.body));
        }
        if signed {
            verify_answer(
                &self.config.credentials.pay_key,
                &raw.headers,
                &raw.body,
                chrono::Utc::now().timestamp(),
            )
            .map_err(|e| invalid(endpoint, e.into()))?;
        }
        Ok(Answer {
            status: raw.status,
            body: raw.body,
        })
    }

    /// One signed request and its answer as it came, unjudged.
    async fn fetch(
        &self,
        endpoint: Endpoint,
        method: Method,
        path: &str,
        body: &str,
        limit: usize,
        timeout: Duration,
    ) -> Result<Raw, V3Error> {
        let credentials = &self.config.credentials;
        let authorization = Authorization::sign(
            &credentials.key,
            &credentials.mchid,
            &credentials.serial_no,
            Request {
                method: method.as_str(),
                path_and_query: path,
                body,
            },
            chrono::Utc::now().timestamp(),
            &random_text(32),
        );
        let url = self
            .config
            .base_url
            .join(path)
            .expect("an absolute path joins onto any base URL");
        let transport = |source| V3Error::Transport { endpoint, source };
        let mut request = self
            .http
            .request(method, url)
            .timeout(timeout)
            .header(ACCEPT, "application/json")
            .header(reqwest::header::AUTHORIZATION, authorization.to_string())
            .header(SignedHeaders::SERIAL, credentials.pay_key.id());
        if !body.is_empty() {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_owned());
        }
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status();
        let headers =
            SignedHeaders::read(|name| response.headers().get(name).and_then(|v| v.to_str().ok()));
        let date = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|d| d.to_str().ok())
            .map(str::to_owned);
        let mut answer = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if answer.len() + chunk.len() > limit {
                return Err(invalid(endpoint, Problem::TooLarge(limit)));
            }
            answer.extend_from_slice(&chunk);
        }
        Ok(Raw {
            status,
            headers,
            date,
            body: answer,
        })
    }

    /// One query of a made-up number, never retried, for the doctor: what WeChat said (its
    /// `code`, its HTTP `Date`) and whether the answer — a refusal too — carries WeChat Pay's
    /// signature by the configured key.
    pub async fn probe_query(&self, out_trade_no: &str) -> Probe {
        let endpoint = Endpoint::Query;
        let path = self.query_path(out_trade_no);
        let started = Instant::now();
        let fetched = self
            .rt
            .run(self.fetch(
                endpoint,
                Method::GET,
                &path,
                "",
                MAX_ANSWER_BYTES,
                self.config.timeout,
            ))
            .await;
        let probe = match fetched {
            Err(e) => Probe {
                date: None,
                signature: None,
                result: Err(e),
            },
            Ok(raw) => {
                let signature = raw.headers.signature.is_some().then(|| {
                    verify_answer(
                        &self.config.credentials.pay_key,
                        &raw.headers,
                        &raw.body,
                        chrono::Utc::now().timestamp(),
                    )
                });
                let result = if raw.status.is_success() {
                    Ok(())
                } else {
                    Err(refusal(endpoint, raw.status, &raw.body))
                };
                Probe {
                    date: raw.date,
                    signature,
                    result,
                }
            }
        };
        observe(endpoint, started, &probe.result);
        probe
    }

    /// `GET /v3/pay/transactions/out-trade-no/{no}?mchid=`'s path.
    fn query_path(&self, out_trade_no: &str) -> String {
        format!(
            "/v3/pay/transactions/out-trade-no/{}?mchid={}",
            path_segment(out_trade_no),
            path_segment(&self.config.credentials.mchid)
        )
    }

    fn check_merchant(
        &self,
        endpoint: Endpoint,
        mchid: &str,
        appid: Option<&str>,
    ) -> Result<(), V3Error> {
        let credentials = &self.config.credentials;
        if mchid != credentials.mchid {
            return Err(invalid(endpoint, Problem::Mismatch("mchid")));
        }
        if appid.is_some_and(|a| a != credentials.appid) {
            return Err(invalid(endpoint, Problem::Mismatch("appid")));
        }
        Ok(())
    }
}

/// Records a call's duration and failure in the metrics (the v2 client's metric names, with
/// `v3_…` endpoint labels).
fn observe<T>(endpoint: Endpoint, started: Instant, result: &Result<T, V3Error>) {
    let elapsed = started.elapsed();
    metrics::histogram!("wechat_api_duration_seconds", "api" => endpoint.name())
        .record(elapsed.as_secs_f64());
    if let Err(e) = result {
        let (level, code) = match e {
            V3Error::Transport { .. } => ("transport", String::new()),
            V3Error::HttpStatus { status, .. } => ("http", status.to_string()),
            V3Error::InvalidResponse { .. } => ("invalid_response", String::new()),
            // WeChat's codes are a fixed, documented set; anything else is counted as one.
            V3Error::Refused { code, .. } if is_known_code(code) => ("refused", code.clone()),
            V3Error::Refused { .. } => ("refused", "OTHER".to_owned()),
        };
        metrics::counter!(
            "wechat_api_errors_total",
            "api" => endpoint.name(),
            "level" => level,
            "err_code" => code
        )
        .increment(1);
    }
    tracing::debug!(
        %endpoint,
        elapsed_ms = elapsed.as_millis() as u64,
        ok = result.is_ok(),
        "wechat pay v3 call"
    );
}

/// The v3 error codes of the calls above (WeChat's reference pages): a metric label stays one of
/// these whatever an answer says.
fn is_known_code(code: &str) -> bool {
    matches!(
        code,
        "PARAM_ERROR"
            | "INVALID_REQUEST"
            | "SIGN_ERROR"
            | "SYSTEM_ERROR"
            | "FREQUENCY_LIMITED"
            | "ORDER_NOT_EXIST"
            | "ORDER_CLOSED"
            | "ORDERPAID"
            | "ORDER_PAID"
            | "OUT_TRADE_NO_USED"
            | "NOAUTH"
            | "NOT_ENOUGH"
            | "USER_ACCOUNT_ABNORMAL"
            | "RESOURCE_NOT_EXISTS"
            | "MCH_NOT_EXISTS"
            | "APPID_MCHID_NOT_MATCH"
            | "NO_STATEMENT_EXIST"
            | "STATEMENT_CREATING"
            | "RULE_LIMIT"
    )
}

/// A 4xx/5xx answer as WeChat's `{"code","message"}`, or its bare status.
fn refusal(endpoint: Endpoint, status: StatusCode, body: &[u8]) -> V3Error {
    match serde_json::from_slice::<ErrorAnswer>(body) {
        Ok(e) => V3Error::Refused {
            endpoint,
            status: status.as_u16(),
            code: e.code,
            message: e.message,
        },
        Err(_) => V3Error::HttpStatus {
            endpoint,
            status: status.as_u16(),
        },
    }
}

fn expect_status(endpoint: Endpoint, answer: &Answer, want: StatusCode) -> Result<(), V3Error> {
    if answer.status == want {
        Ok(())
    } else {
        Err(invalid(
            endpoint,
            Problem::UnexpectedStatus(answer.status.as_u16(), want.as_u16()),
        ))
    }
}

fn read<T: serde::de::DeserializeOwned>(endpoint: Endpoint, body: &[u8]) -> Result<T, V3Error> {
    serde_json::from_slice(body).map_err(|e| invalid(endpoint, Problem::Json(e.to_string())))
}

fn to_json<T: serde::Serialize>(message: &T) -> String {
    serde_json::to_string(message).expect("a typed message serialises")
}

/// A value placed in a URL's path or query: WeChat's numbers are `[A-Za-z0-9_|*-]` and dates, so
/// escaping only matters for a value that is not one (it then cannot reach another path).
fn path_segment(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn invalid(endpoint: Endpoint, problem: Problem) -> V3Error {
    V3Error::InvalidResponse { endpoint, problem }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_cannot_escape_their_path_segment() {
        assert_eq!(path_segment("20261201000000001"), "20261201000000001");
        assert_eq!(path_segment("a/../b?x=1"), "a%2F..%2Fb%3Fx%3D1");
        assert_eq!(path_segment("2026-12-01"), "2026-12-01");
    }

    #[test]
    fn transient_failures_are_told_apart() {
        let refused = |status, code: &str| V3Error::Refused {
            endpoint: Endpoint::Query,
            status,
            code: code.into(),
            message: String::new(),
        };
        assert!(refused(500, "SYSTEM_ERROR").is_transient());
        assert!(refused(429, "FREQUENCY_LIMITED").is_transient());
        assert!(!refused(404, "ORDER_NOT_EXIST").is_transient());
        assert!(!refused(400, "PARAM_ERROR").is_transient());
        assert_eq!(
            refused(404, "ORDER_NOT_EXIST").code(),
            Some("ORDER_NOT_EXIST")
        );
    }
}
