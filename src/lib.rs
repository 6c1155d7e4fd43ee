//! wxpay-checkout: a self-hosted WeChat Pay "Native" (scan-to-pay) checkout in one binary.
//!
//! # Layout
//!
//! - [`config`]: settings from the environment (`shared/contract.md`); secrets wrapped.
//! - [`domain`]: money in fen, order numbers, order states and their transitions — no I/O.
//! - [`wxpay`]: the WeChat Pay v2 protocol — signing, the strict XML codec, typed messages,
//!   the client, the payment notify, Beijing time. Uses nothing else of this crate.
//! - [`store`]: all SQL — pools, migrations (`migrations/`), typed queries.
//! - [`web`]: HTTP routes.
//! - [`startup`]: builds the application from settings and runs it.
//! - [`telemetry`]: tracing set-up.
//!
//! Dependencies point one way: `web` uses `store`, `wxpay` and `domain`; `wxpay` and `domain`
//! use nothing of ours.

pub mod config;
pub mod domain;
pub mod payments;
pub mod sandbox;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod web;
pub mod wxpay;
