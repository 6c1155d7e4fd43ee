//! wxpay-checkout: a self-hosted WeChat Pay "Native" (scan-to-pay) checkout in one binary.
//!
//! # Layout
//!
//! - [`config`]: settings from the environment (`shared/contract.md`); secrets wrapped.
//! - [`domain`]: money in fen, order numbers, order states and their transitions — no I/O.
//! - [`wxpay`]: the WeChat Pay v2 protocol — signing, the strict XML codec, typed messages,
//!   the client, the payment notify, Beijing time. Uses nothing else of this crate.
//! - [`sandbox`]: WeChat Pay's side of the same protocol, served over HTTP: the product's
//!   zero-configuration default and the backbone of the end-to-end tests. Uses `wxpay` (and
//!   `domain`'s money formatting) only.
//! - [`store`]: all SQL — pools, migrations (`migrations/`), typed queries, the order cache.
//! - [`payments`]: the order side of a payment — the durable inbox recorder, the channel and the
//!   consumer that applies payments to orders (the only place an order becomes paid), the order
//!   query throttle, and the reconciliation job.
//! - [`web`]: HTTP routes — shop, pay page, seed JSON API, notify, operations.
//! - [`startup`]: builds the application from settings, runs it, shuts it down in order.
//! - [`telemetry`]: tracing set-up.
//! - [`rt`]: keeps the store's and the WeChat client's sockets on the application runtime, out
//!   of the web workers' short-lived ones.
//!
//! Dependencies point one way: `web` uses `payments`, `store`, `wxpay` and `domain`; `payments`
//! uses `store`, `wxpay` and `domain`; `store` uses `domain` (and `wxpay`'s `SignType`);
//! `wxpay` and `domain` use nothing of ours but `rt`.

pub mod config;
pub mod domain;
pub mod payments;
pub mod rt;
pub mod sandbox;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod web;
pub mod wxpay;
