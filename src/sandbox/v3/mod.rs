//! The sandbox speaking WeChat Pay API v3 — the server side of [`crate::wxpay::v3`] — for the
//! Native flow, refunds and the trade bill, on the plain listener (v3 needs no client
//! certificate). Every request's `Authorization` is verified with the merchant's public key
//! (its `mchid`, its certificate `serial_no`, the signature, a timestamp within 5 minutes of
//! the sandbox's clock), or refused `401 SIGN_ERROR`; every answer, refusals too, is signed with
//! WeChat Pay's key (`Wechatpay-Serial` = its `PUB_KEY_ID_…`), except the bill file, which
//! WeChat does not sign either.
//!
//! v3 orders live in the same book as v2's (a trade remembers its v3 request), so the scan
//! page, `/sandbox/pay`, the phone paths, faults, refund settlement and bills work for them; a
//! v3 trade's payment notify, and a v3 refund's notify, are v3's: `TRANSACTION.SUCCESS` /
//! `REFUND.*` envelopes sealed with the APIv3 key, on the same retry schedule.
//!
//! # Routes
//!
//! `POST /v3/pay/transactions/native`, `GET /v3/pay/transactions/out-trade-no/{no}?mchid=`,
//! `POST /v3/pay/transactions/out-trade-no/{no}/close`, `POST /v3/refund/domestic/refunds`,
//! `GET /v3/refund/domestic/refunds/{out_refund_no}`,
//! `GET /v3/bill/tradebill?bill_date=&bill_type=&tar_type=`, and the `download_url` it names,
//! `GET /v3/billdownload/file?token=`.
//!
//! # Layout
//!
//! `keys.rs` the keys (made once per process, or read back from the standalone sandbox's
//! directory); `http.rs` the routes, authentication and signed answers; `api.rs` the calls'
//! checks and business rules; `notify.rs` the messages of orders and refunds and the sealed
//! notifies.

mod api;
mod http;
pub mod keys;
mod notify;

pub use http::routes;
pub use keys::{V3Credentials, V3Keys};
pub(super) use notify::{payment_notify, refund_notify, send_notify, send_probe};

/// A trade bill made for `GET /v3/bill/tradebill`, waiting at its `download_url`.
#[derive(Debug, Clone)]
pub struct BillFile {
    pub bytes: std::sync::Arc<Vec<u8>>,
    pub gzip: bool,
}

/// Bills held for download at once (each a day's bill; the oldest are forgotten).
pub const MAX_BILL_FILES: usize = 16;

/// How long a bill's `download_url` works, as WeChat's (30 seconds), on the sandbox's clock.
pub const DOWNLOAD_URL_VALIDITY: chrono::Duration = chrono::Duration::seconds(30);
