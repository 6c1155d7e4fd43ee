//! WeChat Pay as the checkout service sees it: one interface over API v2 and API v3
//! (`WEIXIN_API_VERSION`). The service speaks in the v2 client's vocabulary — its answers
//! ([`UnifiedOrderResponse`], [`OrderQueryResponse`], [`RefundResponse`],
//! [`RefundQueryResponse`], [`Bill`]) and its error levels ([`WxError`]) — and the v3 side
//! ([`v3`]) translates WeChat's JSON answers and error codes into them, so every flow (prepay,
//! status, reconciliation, refunds, the daily bill) is written once. The two protocols share
//! nothing below this line.
//!
//! What v3 here does not do: H5 and JSAPI payments (v3 has them under other endpoints and
//! another page signature); a v3 shop offers the QR code on every device.

pub mod v3;

use url::Url;

use crate::wxpay::bill::{Bill, BillRequest};
use crate::wxpay::refund::{RefundQueryResponse, RefundRequest, RefundResponse};
use crate::wxpay::types::{OrderQueryResponse, UnifiedOrderRequest, UnifiedOrderResponse};
use crate::wxpay::{Client, Merchant, SignType, WxError};

/// WeChat Pay, by the protocol the merchant's credentials are for. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Gateway {
    V2(Client),
    V3(v3::V3Gateway),
}

impl From<Client> for Gateway {
    fn from(client: Client) -> Self {
        Gateway::V2(client)
    }
}

impl Gateway {
    /// `"v2"` or `"v3"`.
    pub fn version(&self) -> &'static str {
        match self {
            Gateway::V2(_) => "v2",
            Gateway::V3(_) => "v3",
        }
    }

    /// The v2 client, for what only v2 has: its notifies' signatures, its encrypted refund
    /// notifies, H5 and JSAPI payments, the doctor's v2 probe.
    pub fn v2(&self) -> Option<&Client> {
        match self {
            Gateway::V2(client) => Some(client),
            Gateway::V3(_) => None,
        }
    }

    /// The v3 side, for its notifies.
    pub fn v3(&self) -> Option<&v3::V3Gateway> {
        match self {
            Gateway::V2(_) => None,
            Gateway::V3(gateway) => Some(gateway),
        }
    }

    /// The merchant's appid and mch_id (and, for v2, its API key).
    pub fn merchant(&self) -> &Merchant {
        match self {
            Gateway::V2(client) => &client.config().merchant,
            Gateway::V3(gateway) => gateway.merchant(),
        }
    }

    /// WeChat Pay's base URL (or a sandbox's).
    pub fn base_url(&self) -> &Url {
        match self {
            Gateway::V2(client) => &client.config().base_url,
            Gateway::V3(gateway) => &gateway.client().config().base_url,
        }
    }

    /// The v2 signature algorithm (`WEIXIN_SIGN_TYPE`), recorded with each prepay: a v2
    /// notify is verified with it. A v3 shop records the setting too; nothing reads it.
    pub fn sign_type(&self) -> SignType {
        match self {
            Gateway::V2(client) => client.sign_type(),
            Gateway::V3(gateway) => gateway.sign_type(),
        }
    }

    /// Whether refunds can be asked for: v2 needs the client certificate; v3 signs them as any
    /// other call.
    pub fn can_refund(&self) -> bool {
        match self {
            Gateway::V2(client) => client.can_refund(),
            Gateway::V3(_) => true,
        }
    }

    /// Places an order at WeChat (v2 unifiedorder; v3 a Native transaction).
    pub async fn unified_order(
        &self,
        request: &UnifiedOrderRequest,
    ) -> Result<UnifiedOrderResponse, WxError> {
        match self {
            Gateway::V2(client) => client.unified_order(request).await,
            Gateway::V3(gateway) => gateway.unified_order(request).await,
        }
    }

    /// What WeChat knows of the order numbered `out_trade_no`.
    pub async fn order_query(&self, out_trade_no: &str) -> Result<OrderQueryResponse, WxError> {
        match self {
            Gateway::V2(client) => client.order_query(out_trade_no).await,
            Gateway::V3(gateway) => gateway.order_query(out_trade_no).await,
        }
    }

    /// Closes an unpaid order at WeChat; `ORDERPAID`, `ORDERCLOSED` and `ORDERNOTEXIST` come
    /// back as [`WxError::Business`] in both protocols.
    pub async fn close_order(&self, out_trade_no: &str) -> Result<(), WxError> {
        match self {
            Gateway::V2(client) => client.close_order(out_trade_no).await,
            Gateway::V3(gateway) => gateway.close_order(out_trade_no).await,
        }
    }

    /// Asks for a refund; `Ok` is *accepted*.
    pub async fn refund(&self, request: &RefundRequest) -> Result<RefundResponse, WxError> {
        match self {
            Gateway::V2(client) => client.refund(request).await,
            Gateway::V3(gateway) => gateway.refund(request).await,
        }
    }

    /// The order's refunds as WeChat knows them. v2 asks by order; v3 asks by refund, so the
    /// caller names the refunds it has recorded (`out_refund_nos`; v2 needs none). None known:
    /// [`WxError::Business`] `REFUNDNOTEXIST` in both.
    pub async fn refund_query(
        &self,
        out_trade_no: &str,
        out_refund_nos: &[String],
    ) -> Result<RefundQueryResponse, WxError> {
        match self {
            Gateway::V2(client) => client.refund_query(out_trade_no).await,
            Gateway::V3(gateway) => gateway.refund_query(out_trade_no, out_refund_nos).await,
        }
    }

    /// One day's trade bill, read; `Ok(None)` for a day without trades.
    pub async fn download_bill(&self, request: &BillRequest) -> Result<Option<Bill>, WxError> {
        match self {
            Gateway::V2(client) => client.download_bill(request).await,
            Gateway::V3(gateway) => gateway.download_bill(request).await,
        }
    }
}
