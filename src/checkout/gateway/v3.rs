//! API v3 behind the checkout's interface: requests made from the v2-shaped ones, WeChat's JSON
//! answers read into the v2-shaped answers, and v3's error codes into v2's levels and
//! `err_code`s (`ORDER_NOT_EXIST` → `ORDERNOTEXIST`, …), so a flow's decisions need no second
//! reading. Times: v3's RFC 3339 ↔ v2's Beijing `yyyyMMddHHmmss`.

use chrono::{DateTime, SecondsFormat};

use crate::wxpay::bill::{self, Bill, BillRequest};
use crate::wxpay::client::{Endpoint, ResponseProblem};
use crate::wxpay::refund::{RefundEntry, RefundQueryResponse, RefundRequest, RefundResponse};
use crate::wxpay::time::{beijing, format_beijing, parse_beijing};
use crate::wxpay::types::{
    ErrCode, OrderQueryResponse, Trade, TradeState, UnifiedOrderRequest, UnifiedOrderResponse,
};
use crate::wxpay::v3::client::{Endpoint as V3Endpoint, V3Error};
use crate::wxpay::v3::types as wire;
use crate::wxpay::v3::{ApiV3Key, Client, PayPublicKey};
use crate::wxpay::{Merchant, RefundStatus, SignType, WxError};

/// The v3 client with what the service asks of it.
#[derive(Debug, Clone)]
pub struct V3Gateway {
    client: Client,
    /// appid and mch_id (the v2 key, unused, may be empty).
    merchant: Merchant,
    sign_type: SignType,
}

impl V3Gateway {
    pub fn new(client: Client, merchant: Merchant, sign_type: SignType) -> Self {
        Self {
            client,
            merchant,
            sign_type,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn merchant(&self) -> &Merchant {
        &self.merchant
    }

    pub fn sign_type(&self) -> SignType {
        self.sign_type
    }

    /// WeChat Pay's public key (notifies are verified with it) and the APIv3 key (they are
    /// opened with it).
    pub fn notify_keys(&self) -> (&PayPublicKey, &ApiV3Key) {
        let credentials = &self.client.config().credentials;
        (&credentials.pay_key, &credentials.apiv3_key)
    }

    pub(super) async fn unified_order(
        &self,
        request: &UnifiedOrderRequest,
    ) -> Result<UnifiedOrderResponse, WxError> {
        let native = native_request(request, &self.merchant)?;
        let answer = self.client.native(&native).await.map_err(wx_error)?;
        Ok(UnifiedOrderResponse {
            trade_type: "NATIVE".into(),
            // v3's Native answer has no prepay_id; nothing reads one for a QR code.
            prepay_id: String::new(),
            code_url: Some(answer.code_url),
            mweb_url: None,
        })
    }

    pub(super) async fn order_query(
        &self,
        out_trade_no: &str,
    ) -> Result<OrderQueryResponse, WxError> {
        let transaction = self.client.query(out_trade_no).await.map_err(wx_error)?;
        query_answer(transaction)
    }

    pub(super) async fn close_order(&self, out_trade_no: &str) -> Result<(), WxError> {
        self.client.close(out_trade_no).await.map_err(wx_error)
    }

    pub(super) async fn refund(&self, request: &RefundRequest) -> Result<RefundResponse, WxError> {
        let refund = self
            .client
            .refund(&refund_request(request))
            .await
            .map_err(wx_error)?;
        Ok(RefundResponse {
            out_trade_no: refund.out_trade_no,
            out_refund_no: refund.out_refund_no,
            transaction_id: Some(refund.transaction_id),
            refund_id: refund.refund_id,
            refund_fee: refund.amount.refund,
            total_fee: refund.amount.total,
        })
    }

    pub(super) async fn refund_query(
        &self,
        out_trade_no: &str,
        out_refund_nos: &[String],
    ) -> Result<RefundQueryResponse, WxError> {
        let mut answer = RefundQueryResponse {
            out_trade_no: out_trade_no.to_owned(),
            transaction_id: None,
            total_fee: 0,
            refunds: Vec::new(),
        };
        for no in out_refund_nos {
            match self.client.refund_query(no).await {
                Ok(refund) if refund.out_trade_no == out_trade_no => {
                    answer.transaction_id = Some(refund.transaction_id.clone());
                    answer.total_fee = refund.amount.total;
                    answer.refunds.push(refund_entry(&refund)?);
                }
                // Another order's refund under this number: not this order's.
                Ok(_) => {}
                Err(e) if e.code() == Some("RESOURCE_NOT_EXISTS") => {}
                Err(e) => return Err(wx_error(e)),
            }
        }
        if answer.refunds.is_empty() {
            return Err(WxError::Business {
                endpoint: Endpoint::RefundQuery,
                err_code: ErrCode::RefundNotExist,
                err_code_des: "no refund of this order is known to WeChat Pay".into(),
            });
        }
        Ok(answer)
    }

    pub(super) async fn download_bill(
        &self,
        request: &BillRequest,
    ) -> Result<Option<Bill>, WxError> {
        let date = request.bill_date.format("%Y-%m-%d").to_string();
        let file = self
            .client
            .trade_bill_with(&date, request.bill_type.as_str(), request.gzip)
            .await
            .map_err(wx_error)?;
        let Some(file) = file else {
            return Ok(None);
        };
        let invalid = |e: bill::BillError| WxError::InvalidResponse {
            endpoint: Endpoint::DownloadBill,
            problem: e.into(),
        };
        let text = if file.starts_with(&[0x1f, 0x8b]) {
            bill::gunzip(&file).map_err(invalid)?
        } else {
            file
        };
        bill::parse(&text, &self.merchant.mch_id)
            .map(Some)
            .map_err(invalid)
    }
}

/// A Native transaction for a v2-shaped unified order. H5 and JSAPI are refused before
/// anything is sent.
pub fn native_request(
    request: &UnifiedOrderRequest,
    merchant: &Merchant,
) -> Result<wire::NativeRequest, WxError> {
    let Trade::Native { .. } = request.trade else {
        return Err(WxError::ReturnFail {
            endpoint: Endpoint::UnifiedOrder,
            return_msg: format!(
                "{} payments are not made through API v3 here (QR code only)",
                request.trade.trade_type()
            ),
        });
    };
    let time_expire = request
        .time_expire
        .as_deref()
        .map(|text| {
            parse_beijing(text).map(|at| {
                at.with_timezone(&beijing())
                    .to_rfc3339_opts(SecondsFormat::Secs, false)
            })
        })
        .transpose()
        .map_err(|_| WxError::ReturnFail {
            endpoint: Endpoint::UnifiedOrder,
            return_msg: "time_expire is not a Beijing time".into(),
        })?;
    Ok(wire::NativeRequest {
        appid: merchant.appid.clone(),
        mchid: merchant.mch_id.clone(),
        description: request.body.clone(),
        out_trade_no: request.out_trade_no.clone(),
        time_expire,
        attach: request.attach.clone(),
        notify_url: request.notify_url.clone(),
        amount: wire::OrderAmount::cny(request.total_fee),
    })
}

/// A v3 transaction as the v2 order query's answer. A paid one must name its transaction,
/// amount and time, as v2's must.
pub fn query_answer(t: wire::Transaction) -> Result<OrderQueryResponse, WxError> {
    let invalid = |why: &str| WxError::InvalidResponse {
        endpoint: Endpoint::OrderQuery,
        problem: ResponseProblem::V3(why.to_owned()),
    };
    let time_end = t
        .success_time
        .as_deref()
        .map(|text| beijing_time(text).ok_or_else(|| invalid("success_time is not RFC 3339")))
        .transpose()?;
    let amount = t.amount.as_ref();
    let total_fee = amount.and_then(|a| a.total);
    let cash_fee = amount.and_then(|a| a.payer_total);
    let answer = OrderQueryResponse {
        out_trade_no: t.out_trade_no,
        trade_state: TradeState::from(t.trade_state.as_str()),
        trade_state_desc: Some(t.trade_state_desc).filter(|d| !d.is_empty()),
        transaction_id: t.transaction_id.filter(|id| !id.is_empty()),
        total_fee,
        cash_fee,
        coupon_fee: match (total_fee, cash_fee) {
            (Some(total), Some(cash)) if total > cash => Some(total - cash),
            _ => None,
        },
        fee_type: amount.and_then(|a| a.currency.clone()),
        time_end,
        openid: t.payer.map(|p| p.openid).filter(|o| !o.is_empty()),
        bank_type: t.bank_type,
        attach: t.attach.filter(|a| !a.is_empty()),
    };
    if t.trade_state.is_paid() {
        for (name, present) in [
            ("transaction_id", answer.transaction_id.is_some()),
            ("amount.total", answer.total_fee.is_some()),
            ("success_time", answer.time_end.is_some()),
        ] {
            if !present {
                return Err(invalid(&format!("a paid transaction without {name}")));
            }
        }
    }
    Ok(answer)
}

/// v2's refund request as v3's.
pub fn refund_request(request: &RefundRequest) -> wire::RefundRequest {
    wire::RefundRequest {
        transaction_id: None,
        out_trade_no: Some(request.out_trade_no.clone()),
        out_refund_no: request.out_refund_no.clone(),
        reason: request.refund_desc.clone(),
        notify_url: request.notify_url.clone(),
        amount: wire::RefundRequestAmount {
            refund: request.refund_fee,
            total: request.total_fee,
            currency: "CNY".into(),
        },
    }
}

/// A v3 refund as one entry of v2's refund query.
pub fn refund_entry(refund: &wire::Refund) -> Result<RefundEntry, WxError> {
    let success_time = refund
        .success_time
        .as_deref()
        .filter(|t| !t.is_empty())
        .map(|text| {
            DateTime::parse_from_rfc3339(text)
                .map(|at| {
                    at.with_timezone(&beijing())
                        .format("%Y-%m-%d %H:%M:%S")
                        .to_string()
                })
                .map_err(|_| WxError::InvalidResponse {
                    endpoint: Endpoint::RefundQuery,
                    problem: ResponseProblem::V3("success_time is not RFC 3339".into()),
                })
        })
        .transpose()?;
    Ok(RefundEntry {
        out_refund_no: refund.out_refund_no.clone(),
        refund_id: refund.refund_id.clone(),
        refund_fee: refund.amount.refund,
        status: refund_status(refund.status),
        success_time,
    })
}

/// v3's refund states in v2's words: `CLOSED` is `REFUNDCLOSE`, `ABNORMAL` is `CHANGE` (the
/// money could not reach the shopper's account; the merchant must act).
pub fn refund_status(status: wire::RefundStatus) -> RefundStatus {
    match status {
        wire::RefundStatus::Success => RefundStatus::Success,
        wire::RefundStatus::Processing => RefundStatus::Processing,
        wire::RefundStatus::Closed => RefundStatus::RefundClose,
        wire::RefundStatus::Abnormal => RefundStatus::Change,
    }
}

/// RFC 3339 as v2's Beijing `yyyyMMddHHmmss`.
pub fn beijing_time(rfc3339: &str) -> Option<String> {
    DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|at| format_beijing(at.to_utc()))
}

/// A v3 failure at v2's level, with v2's `err_code` where v3 has the same refusal.
pub fn wx_error(e: V3Error) -> WxError {
    let endpoint = match e.endpoint() {
        V3Endpoint::Native => Endpoint::UnifiedOrder,
        V3Endpoint::Query => Endpoint::OrderQuery,
        V3Endpoint::Close => Endpoint::CloseOrder,
        V3Endpoint::Refund => Endpoint::Refund,
        V3Endpoint::RefundQuery => Endpoint::RefundQuery,
        V3Endpoint::TradeBill | V3Endpoint::BillDownload => Endpoint::DownloadBill,
    };
    match e {
        V3Error::Transport { source, .. } => WxError::Transport { endpoint, source },
        V3Error::HttpStatus { status, .. } => WxError::HttpStatus { endpoint, status },
        V3Error::InvalidResponse { problem, .. } => WxError::InvalidResponse {
            endpoint,
            problem: ResponseProblem::V3(problem.to_string()),
        },
        V3Error::Refused {
            status,
            code,
            message,
            ..
        } => {
            let err_code = match code.as_str() {
                "ORDER_NOT_EXIST" => ErrCode::OrderNotExist,
                "ORDER_CLOSED" => ErrCode::OrderClosed,
                "ORDERPAID" | "ORDER_PAID" | "TRADE_PAID" => ErrCode::OrderPaid,
                "SYSTEM_ERROR" | "SYSTEMERROR" => ErrCode::SystemError,
                "FREQUENCY_LIMITED" | "RATELIMIT_EXCEEDED" => ErrCode::FrequencyLimited,
                "NOT_ENOUGH" => ErrCode::NotEnough,
                "RESOURCE_NOT_EXISTS" => ErrCode::RefundNotExist,
                "OUT_TRADE_NO_USED" => ErrCode::OutTradeNoUsed,
                "INVALID_REQUEST" => ErrCode::InvalidRequest,
                "NOAUTH" => ErrCode::NoAuth,
                "APPID_MCHID_NOT_MATCH" => ErrCode::AppidMchidNotMatch,
                "MCH_NOT_EXISTS" => ErrCode::MchidNotExist,
                "USER_ACCOUNT_ABNORMAL" => ErrCode::UserAccountAbnormal,
                "STATEMENT_CREATING" => {
                    return WxError::ReturnFail {
                        endpoint,
                        return_msg: bill::BILL_CREATING.into(),
                    }
                }
                // The call itself was refused, as v2's return_code=FAIL.
                "SIGN_ERROR" | "PARAM_ERROR" => {
                    return WxError::ReturnFail {
                        endpoint,
                        return_msg: format!("{code}: {message}"),
                    }
                }
                _ if status >= 500 || status == 429 => ErrCode::SystemError,
                other => ErrCode::Other(other.to_owned()),
            };
            WxError::Business {
                endpoint,
                err_code,
                err_code_des: message,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn merchant() -> Merchant {
        Merchant {
            appid: "wxd930ea5d5a258f4f".into(),
            mch_id: "1900000109".into(),
            key: SecretString::from(""),
        }
    }

    fn refused(status: u16, code: &str) -> V3Error {
        V3Error::Refused {
            endpoint: V3Endpoint::Query,
            status,
            code: code.into(),
            message: "说明".into(),
        }
    }

    #[test]
    fn a_native_order_carries_the_same_terms() {
        let request = UnifiedOrderRequest {
            body: "茶舍 Tea House-西湖龙井茶 250g".into(),
            out_trade_no: "20261201103000123456".into(),
            total_fee: 12800,
            spbill_create_ip: "127.0.0.1".into(),
            notify_url: "https://shop.example.com/weixin/pay/v3/notify".into(),
            trade: Trade::Native {
                product_id: "1".into(),
            },
            attach: None,
            time_start: Some("20261201103000".into()),
            time_expire: Some("20261201104000".into()),
        };
        let native = native_request(&request, &merchant()).unwrap();
        assert_eq!(
            native.time_expire.as_deref(),
            Some("2026-12-01T10:40:00+08:00")
        );
        assert_eq!(native.amount, wire::OrderAmount::cny(12800));
        assert_eq!(native.notify_url, request.notify_url);
        assert_eq!(
            (native.appid.as_str(), native.mchid.as_str()),
            ("wxd930ea5d5a258f4f", "1900000109")
        );
        let h5 = UnifiedOrderRequest {
            trade: Trade::Mweb {
                wap_url: "https://shop.example.com".into(),
                wap_name: "shop".into(),
            },
            ..request
        };
        assert!(matches!(
            native_request(&h5, &merchant()),
            Err(WxError::ReturnFail { .. })
        ));
    }

    #[test]
    fn a_paid_transaction_reads_as_v2s_answer() {
        let paid: wire::Transaction = serde_json::from_str(r#"{"amount":{"currency":"CNY","payer_currency":"CNY","payer_total":1180,"total":1280},"appid":"wxd930ea5d5a258f4f","bank_type":"OTHERS","mchid":"1900000109","out_trade_no":"20261201103000123456","payer":{"openid":"o4GgauJP_mgWEWictzA15WT15XXX"},"success_time":"2026-12-01T10:31:05+08:00","trade_state":"SUCCESS","trade_state_desc":"支付成功","trade_type":"NATIVE","transaction_id":"4200000891202612018088184743"}"#).unwrap();
        let answer = query_answer(paid.clone()).unwrap();
        assert_eq!(answer.trade_state, TradeState::Success);
        assert_eq!(answer.time_end.as_deref(), Some("20261201103105"));
        assert_eq!(
            (answer.total_fee, answer.cash_fee, answer.coupon_fee),
            (Some(1280), Some(1180), Some(100))
        );
        assert_eq!(answer.fee_type.as_deref(), Some("CNY"));
        // The same instant written in UTC reads the same.
        let utc = wire::Transaction {
            success_time: Some("2026-12-01T02:31:05Z".into()),
            ..paid.clone()
        };
        assert_eq!(
            query_answer(utc).unwrap().time_end.as_deref(),
            Some("20261201103105")
        );
        let without_time = wire::Transaction {
            success_time: None,
            ..paid.clone()
        };
        assert!(matches!(
            query_answer(without_time),
            Err(WxError::InvalidResponse { .. })
        ));
        let unpaid: wire::Transaction = serde_json::from_str(r#"{"amount":{"payer_currency":"CNY","total":1280},"appid":"wxd930ea5d5a258f4f","mchid":"1900000109","out_trade_no":"20261201103000123456","trade_state":"NOTPAY","trade_state_desc":"订单未支付"}"#).unwrap();
        let answer = query_answer(unpaid).unwrap();
        assert_eq!(
            (answer.trade_state, answer.transaction_id),
            (TradeState::NotPay, None)
        );
    }

    #[test]
    fn v3_refusals_read_as_v2s() {
        let code = |e: V3Error| wx_error(e).err_code().cloned();
        assert_eq!(
            code(refused(404, "ORDER_NOT_EXIST")),
            Some(ErrCode::OrderNotExist)
        );
        assert_eq!(
            code(refused(400, "ORDER_CLOSED")),
            Some(ErrCode::OrderClosed)
        );
        assert_eq!(code(refused(403, "ORDERPAID")), Some(ErrCode::OrderPaid));
        assert_eq!(code(refused(403, "NOT_ENOUGH")), Some(ErrCode::NotEnough));
        assert_eq!(
            code(refused(404, "RESOURCE_NOT_EXISTS")),
            Some(ErrCode::RefundNotExist)
        );
        assert!(wx_error(refused(500, "SYSTEM_ERROR")).is_transient());
        assert!(wx_error(refused(429, "FREQUENCY_LIMITED")).is_transient());
        assert!(wx_error(refused(502, "SOMETHING_NEW")).is_transient());
        assert!(!wx_error(refused(400, "SOMETHING_NEW")).is_transient());
        assert!(matches!(
            wx_error(refused(401, "SIGN_ERROR")),
            WxError::ReturnFail { .. }
        ));
        let creating = wx_error(V3Error::Refused {
            endpoint: V3Endpoint::TradeBill,
            status: 400,
            code: "STATEMENT_CREATING".into(),
            message: "账单生成中".into(),
        });
        assert!(
            matches!(&creating, WxError::ReturnFail { return_msg, endpoint: Endpoint::DownloadBill } if bill::is_not_ready(return_msg))
        );
    }

    #[test]
    fn refunds_read_as_v2s() {
        let refund: wire::Refund = serde_json::from_str(r#"{"refund_id":"50000000382026120109732678859","out_refund_no":"R20261201103000123456","transaction_id":"4200000891202612018088184743","out_trade_no":"20261201103000123456","channel":"ORIGINAL","user_received_account":"支付用户零钱","success_time":"2026-12-01T16:18:12+08:00","create_time":"2026-12-01T16:18:02+08:00","status":"SUCCESS","amount":{"total":1280,"refund":500,"payer_total":1280,"payer_refund":500,"currency":"CNY"}}"#).unwrap();
        let entry = refund_entry(&refund).unwrap();
        assert_eq!(entry.success_time.as_deref(), Some("2026-12-01 16:18:12"));
        assert_eq!(
            (entry.refund_fee, entry.status),
            (500, RefundStatus::Success)
        );
        assert_eq!(
            refund_status(wire::RefundStatus::Closed),
            RefundStatus::RefundClose
        );
        assert_eq!(
            refund_status(wire::RefundStatus::Abnormal),
            RefundStatus::Change
        );
        let request = refund_request(&RefundRequest {
            out_trade_no: "20261201103000123456".into(),
            out_refund_no: "R20261201103000123456".into(),
            total_fee: 1280,
            refund_fee: 500,
            refund_desc: Some("退货".into()),
            notify_url: Some("https://shop.example.com/weixin/pay/v3/notify".into()),
        });
        assert_eq!((request.amount.refund, request.amount.total), (500, 1280));
        assert_eq!(request.reason.as_deref(), Some("退货"));
    }
}
