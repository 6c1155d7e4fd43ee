//! WeChat Pay API v3 (JSON over HTTPS, RSA signatures, sealed notifies) for the same flows as
//! v2: Native orders, query and close, refunds and refund notifies, the trade bill. A second
//! protocol beside [`crate::wxpay`]'s v2, sharing nothing with it but the client's retry policy
//! and metric names; like v2 it has no web-framework or database types, and the built-in sandbox
//! is its server side.
//!
//! - [`crypto`]: the three keys (merchant's API key, WeChat Pay's public key, the APIv3 key);
//! - [`auth`]: the `Authorization` header and the answers' signature headers;
//! - [`types`]: the JSON messages;
//! - [`notify`]: opening (and, for the sandbox, sealing) a notify;
//! - [`client`]: the calls.
//!
//! Public-key mode only: since late 2024 WeChat gives new merchants a *WeChat Pay public key*
//! (`PUB_KEY_ID_…`) instead of platform certificates; a merchant still on platform certificates
//! can switch in the merchant platform. The `/v3/certificates` download is not used.

pub mod auth;
pub mod client;
pub mod crypto;
pub mod notify;
pub mod types;

pub use auth::{SignatureError, SignedHeaders};
pub use client::{Client, ClientConfig, Credentials, V3Error};
pub use crypto::{ApiV3Key, KeyError, MerchantKey, PayPublicKey};
