//! The doctor for an API v3 shop: the same questions, asked the v3 way.
//!
//! 1. **Credentials** — a query of an order number that cannot exist. `ORDER_NOT_EXIST` means
//!    WeChat took the mchid, the merchant's API key and its serial; `SIGN_ERROR` means the key or
//!    the serial is wrong. The answer's own signature says whether `WEIXIN_PAY_PUBLIC_KEY` and its
//!    id are WeChat Pay's (a refusal is signed too).
//! 2. **Clock** — the answer's `Date` against this clock (v3 refuses requests more than 5
//!    minutes off, and so does this shop its answers).
//! 3. **Certificate** — v3 needs none: requests are signed with the API key.
//! 4. **Notify URLs** — as for v2, probed with an unsigned v3 notify that the shop must refuse
//!    with WeChat's `{"code","message"}`.

use chrono::Utc;
use reqwest::StatusCode;
use url::Url;

use super::{
    clock, is_local, notify_findings, probe_number, Examination, Finding, Protocol, Verdict,
    TITLE_CLOCK,
};
use crate::wxpay::v3::client::{Client, Probe, Problem, V3Error};
use crate::wxpay::v3::SignatureError;

const TITLE_CREDENTIALS: &str = "商户凭证 Credentials (mchid, API key and its serial, APIv3)";
const TITLE_PAY_KEY: &str = "微信支付公钥 WeChat Pay public key";
const TITLE_CERTIFICATE: &str = "商户API证书 Client certificate";

/// Examines what the v3 `client` is configured with and the two notify URLs.
pub async fn examine_v3(client: &Client, notify_url: &Url, refund_notify_url: &Url) -> Examination {
    let config = client.config();
    let now = Utc::now();
    let probe = client.probe_query(&probe_number(now)).await;
    let wechat_is_local = is_local(&config.base_url).await;
    // The clock is judged from the answer's Date, as v2's is.
    let dated = crate::wxpay::client::Probe {
        date: probe.date.clone(),
        raw: None,
        result: Ok(()),
    };
    let clock_finding = if probe.date.is_none() && probe.result.is_err() {
        Finding::new(
            "clock",
            TITLE_CLOCK,
            Verdict::Warn,
            "WeChat could not be asked: the clock was not compared".into(),
        )
    } else {
        clock(&dated, now)
    };
    let mut findings = vec![
        credentials(&probe),
        pay_key(&probe, config.credentials.pay_key.id()),
        clock_finding,
        Finding::new(
            "certificate",
            TITLE_CERTIFICATE,
            Verdict::Ok,
            "API v3 signs every call with the API key (WEIXIN_MCH_PRIVATE_KEY): refunds need no \
             client certificate"
                .into(),
        ),
    ];
    findings.extend(
        notify_findings(
            client.runtime(),
            Protocol::V3,
            [notify_url, refund_notify_url],
            wechat_is_local,
        )
        .await,
    );
    Examination {
        api_base: config.base_url.to_string(),
        mch_id: config.credentials.mchid.clone(),
        appid: config.credentials.appid.clone(),
        findings,
    }
}

fn credentials(probe: &Probe) -> Finding {
    let raw = probe.result.as_ref().err().map(ToString::to_string);
    let finding = |verdict, said: &str| {
        Finding::new("credentials", TITLE_CREDENTIALS, verdict, said.to_owned()).raw(raw.clone())
    };
    match &probe.result {
        Ok(()) => finding(
            Verdict::Ok,
            "WeChat answered a query signed with these credentials",
        ),
        Err(e) => match e.code() {
            Some("ORDER_NOT_EXIST") => finding(
                Verdict::Ok,
                "mchid, the API key and its serial agree: WeChat checked the signature and \
                 looked for a made-up order (ORDER_NOT_EXIST, as it should)",
            ),
            Some("SIGN_ERROR") => finding(
                Verdict::Fail,
                "WeChat says the request's signature is wrong (SIGN_ERROR)",
            )
            .advice(&[
                "WEIXIN_MCH_PRIVATE_KEY is apiclient_key.pem of the merchant's API certificate",
                "WEIXIN_MCH_SERIAL is that certificate's serial number (账户中心 → API安全 → \
                 API证书 → 管理证书), 40 hexadecimal characters",
                "this machine's clock must be within 5 minutes of WeChat's",
            ]),
            Some("MCH_NOT_EXISTS") | Some("APPID_MCHID_NOT_MATCH") => finding(
                Verdict::Fail,
                "WeChat does not know this mchid (or its appid)",
            )
            .advice(&["WEIXIN_PARTNER is the 10-digit 商户号; WEIXIN_APPID starts with wx"]),
            Some(_) => finding(
                Verdict::Warn,
                "WeChat took the signature but answered the query with an error; try again later",
            ),
            None => match e {
                V3Error::Transport { .. } | V3Error::HttpStatus { .. } => finding(
                    Verdict::Fail,
                    "WeChat Pay cannot be reached from this machine",
                )
                .advice(&[
                    "outgoing HTTPS to api.mch.weixin.qq.com must be allowed (firewall, \
                             proxy, DNS)",
                    "WEIXIN_API_BASE, when set, must be WeChat Pay's address or a \
                             sandbox's",
                ]),
                _ => finding(Verdict::Fail, "WeChat's answer could not be read"),
            },
        },
    }
}

fn pay_key(probe: &Probe, configured_id: &str) -> Finding {
    let finding =
        |verdict, said: String| Finding::new("pay_public_key", TITLE_PAY_KEY, verdict, said);
    match &probe.signature {
        Some(Ok(())) => finding(
            Verdict::Ok,
            format!("WeChat's answer is signed by {configured_id}, and the signature checks out"),
        ),
        Some(Err(SignatureError::OtherKey { got, expected })) => finding(
            Verdict::Fail,
            format!(
                "WeChat signs with {got}, not {expected}: every answer and notify would be refused"
            ),
        )
        .advice(&[
            "WEIXIN_PAY_PUBLIC_KEY_ID and WEIXIN_PAY_PUBLIC_KEY are shown in the merchant \
             platform: 账户中心 → API安全 → 微信支付公钥",
            "a merchant still on platform certificates must switch to the WeChat Pay public key \
             there first",
        ]),
        Some(Err(SignatureError::Stale(skew))) => finding(
            Verdict::Fail,
            format!("WeChat's answer is {skew} s from this clock: answers and notifies would be refused as replays"),
        )
        .advice(&["set the clock right (NTP)"]),
        Some(Err(e)) => finding(
            Verdict::Fail,
            format!("WeChat's answer does not verify with WEIXIN_PAY_PUBLIC_KEY: {e}"),
        )
        .advice(&["WEIXIN_PAY_PUBLIC_KEY is pub_key.pem as downloaded, with its id in WEIXIN_PAY_PUBLIC_KEY_ID"]),
        None => match &probe.result {
            Err(V3Error::InvalidResponse {
                problem: Problem::Signature(e),
                ..
            }) => finding(Verdict::Fail, format!("WeChat's answer does not verify: {e}")),
            Err(V3Error::Transport { .. }) => finding(
                Verdict::Warn,
                "WeChat could not be asked: the public key was not checked".into(),
            ),
            _ => finding(
                Verdict::Warn,
                "WeChat's answer carried no signature: the public key was not checked".into(),
            ),
        },
    }
}

/// The shop's answer to an unsigned v3 notify: WeChat's failure JSON with a 4xx is right; a
/// 2xx would mean an unsigned notify was taken.
pub(super) fn judge_probe_answer(
    status: StatusCode,
    text: &str,
    raw: Option<String>,
) -> (Verdict, String, Option<String>) {
    let is_wechat_json = serde_json::from_str::<serde_json::Value>(text)
        .is_ok_and(|v| v.get("code").is_some() && v.get("message").is_some());
    if status.is_success() {
        return (
            Verdict::Fail,
            format!(
                "an unsigned notify there is answered HTTP {} — taken: whatever answers is not \
                 this shop's v3 notify route (/weixin/pay/v3/notify)",
                status.as_u16()
            ),
            raw,
        );
    }
    if status.is_client_error() && is_wechat_json {
        return (
            Verdict::Ok,
            "an unsigned notify there is refused with WeChat's {\"code\",\"message\"}, as this \
             shop refuses one"
                .into(),
            raw,
        );
    }
    (
        Verdict::Fail,
        format!(
            "a POST there is answered HTTP {} by something other than this shop's v3 notify route",
            status.as_u16()
        ),
        raw,
    )
}
