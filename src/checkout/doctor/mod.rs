//! The doctor: checks what going live depends on — the credentials, the clock, the client
//! certificate and the notify URLs — by asking WeChat harmless questions and explaining the
//! answers in plain words, WeChat's own text beside each. `wxpay-checkout doctor` prints it
//! (non-zero exit when something would stop payments or refunds); `/admin/doctor` shows it.
//!
//! Each check is one [`Finding`], in the order of the README's going-live checklist:
//! 1. **Credentials** — an `orderquery` of an order number that cannot exist. `ORDERNOTEXIST`
//!    means WeChat took the appid, the mch_id and the key together; `签名错误` means the key is
//!    wrong; `mch_id与appid不匹配` means the appid is not bound to the merchant.
//! 2. **Clock** — the same answer's HTTP `Date` against this machine's clock (`time_expire` is
//!    computed here; a clock that is off makes WeChat refuse or keep orders open).
//! 3. **Client certificate** — loads, names the mch_id, and is valid now and for a while.
//! 4. **Notify URLs** — https, the standard port, no query string, a name that resolves to an
//!    address WeChat can reach, and a probe POST answered with WeChat's XML (a refusal, since
//!    the probe is not signed). The probe goes out from this machine: a firewall, CDN or WAF in
//!    front that stops WeChat's servers cannot be seen from here, and the finding says so.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use url::Url;

mod v3;

use super::{Checkout, Gateway};
use crate::rt::AppRuntime;
use crate::wxpay::client::Probe;
use crate::wxpay::{Client, ErrCode, WxError};

pub use v3::examine_v3;

/// How far this machine's clock may be from WeChat's before the doctor warns, and fails.
const CLOCK_WARN_SECS: i64 = 5;
const CLOCK_FAIL_SECS: i64 = 60;
/// A client certificate expiring within this many days is warned about.
const CERT_WARN_DAYS: i64 = 30;
/// How long the notify URL probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Works, but worth changing.
    Warn,
    /// Payments or refunds would fail.
    Fail,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `credentials`, `clock`, `certificate`, `notify_url`, `refund_notify_url`.
    pub check: &'static str,
    /// What was checked, for people (Chinese and English).
    pub title: &'static str,
    pub verdict: Verdict,
    /// What was found, in plain words.
    pub said: String,
    /// The usual causes and what to do, when something is wrong.
    pub advice: Vec<&'static str>,
    /// WeChat's (or the server's) own answer, as sent.
    pub raw: Option<String>,
}

impl Finding {
    fn new(check: &'static str, title: &'static str, verdict: Verdict, said: String) -> Finding {
        Finding {
            check,
            title,
            verdict,
            said,
            advice: Vec::new(),
            raw: None,
        }
    }

    fn advice(mut self, advice: &[&'static str]) -> Finding {
        self.advice.extend_from_slice(advice);
        self
    }

    fn raw(mut self, raw: Option<String>) -> Finding {
        self.raw = raw;
        self
    }
}

/// Every finding of one examination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Examination {
    /// WeChat Pay's base URL, the mch_id and the appid examined.
    pub api_base: String,
    pub mch_id: String,
    pub appid: String,
    pub findings: Vec<Finding>,
}

impl Examination {
    /// Whether something found would stop payments or refunds.
    pub fn failed(&self) -> bool {
        self.findings.iter().any(|f| f.verdict == Verdict::Fail)
    }

    /// Adds a finding made before the examination (a certificate that did not load).
    pub fn push_front(&mut self, finding: Finding) {
        self.findings.insert(0, finding);
    }
}

/// A finding about the client certificate files that could not be read at all.
pub fn unreadable_certificate(error: &str) -> Finding {
    Finding::new(
        "certificate",
        "商户API证书 Client certificate",
        Verdict::Fail,
        "the certificate files cannot be loaded, so refunds cannot be made".into(),
    )
    .advice(&[
        "WEIXIN_CERT_P12 is apiclient_cert.p12 with the mch_id as its password; \
         WEIXIN_CERT_PEM and WEIXIN_KEY_PEM are apiclient_cert.pem and apiclient_key.pem",
        "download a new certificate in the merchant platform: 账户中心 → API安全 → 申请API证书",
    ])
    .raw(Some(error.to_owned()))
}

/// The certificate finding in built-in sandbox mode, where the running shop holds the one
/// its sandbox issued.
pub fn sandbox_certificate() -> Finding {
    Finding::new(
        "certificate",
        TITLE_CERTIFICATE,
        Verdict::Ok,
        "sandbox mode: the built-in sandbox issues the running shop its own certificate".into(),
    )
}

impl Checkout {
    /// The doctor's examination of this shop's credentials, clock, certificate and notify URLs.
    pub async fn doctor(&self) -> Examination {
        let terms = self.terms();
        let mut examination = match self.wechat() {
            Gateway::V2(client) => {
                examine(client, &terms.notify_url, &terms.refund_notify_url).await
            }
            Gateway::V3(gateway) => {
                examine_v3(
                    gateway.client(),
                    &terms.notify_url,
                    &terms.refund_notify_url,
                )
                .await
            }
        };
        let local = is_local(self.wechat().base_url()).await;
        examination
            .findings
            .extend(phones(&terms.phones, local).await);
        examination
    }
}

/// Examines what `client` is configured with and the two notify URLs.
pub async fn examine(client: &Client, notify_url: &Url, refund_notify_url: &Url) -> Examination {
    let config = client.config();
    let now = Utc::now();
    let probe = client.probe_order_query(&probe_number(now)).await;
    let wechat_is_local = is_local(&config.base_url).await;
    let mut findings = vec![
        credentials(&probe),
        clock(&probe, now),
        certificate(client, now),
    ];
    findings.extend(
        notify_findings(
            client.runtime(),
            Protocol::V2,
            [notify_url, refund_notify_url],
            wechat_is_local,
        )
        .await,
    );
    Examination {
        api_base: config.base_url.to_string(),
        mch_id: config.merchant.mch_id.clone(),
        appid: config.merchant.appid.clone(),
        findings,
    }
}

const TITLE_H5: &str = "H5 支付 H5 payment (phone browsers)";
const TITLE_MP: &str = "公众号 Official account (JSAPI inside WeChat)";

/// Paying on a phone: H5's domain, and the official account's AppSecret (one access_token call
/// with a code that cannot exist: WeChat's `invalid code` means the appid and secret passed).
/// `wechat_is_local`: a sandbox, where a loopback shop is expected.
pub async fn phones(terms: &super::PhoneTerms, wechat_is_local: bool) -> Vec<Finding> {
    let mut findings = Vec::new();
    let base = &terms.public_base_url;
    let host_is_ip = matches!(base.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)))
        || base.host_str() == Some("localhost");
    findings.push(if !terms.h5 {
        Finding::new(
            "h5",
            TITLE_H5,
            Verdict::Ok,
            "off (WEIXIN_H5): phone browsers get instructions and the QR code for another device"
                .into(),
        )
    } else if wechat_is_local || (base.scheme() == "https" && !host_is_ip) {
        Finding::new(
            "h5",
            TITLE_H5,
            Verdict::Ok,
            format!(
                "on: the pay page's domain {} must be the one registered for H5 in the merchant                  platform",
                base.host_str().unwrap_or_default()
            ),
        )
        .advice(&["商户平台 → 产品中心 → H5支付 → 开发配置: register the shop's domain there"])
    } else {
        Finding::new(
            "h5",
            TITLE_H5,
            Verdict::Warn,
            format!("on, but PUBLIC_BASE_URL is {base}: WeChat's H5 page opens only for a registered domain"),
        )
        .advice(&[
            "set PUBLIC_BASE_URL to the shop's https domain and register it for H5 in the \
             merchant platform (产品中心 → H5支付 → 开发配置)",
        ])
    });
    let Some(oauth) = &terms.oauth else {
        findings.push(Finding::new(
            "official_account",
            TITLE_MP,
            Verdict::Ok,
            "off (WEIXIN_MP_APPSECRET unset): inside WeChat the shopper gets instructions".into(),
        ));
        return findings;
    };
    use crate::wxpay::oauth::OAuthError;
    findings.push(match oauth.openid("doctor_probe_invalid_code").await {
        Err(OAuthError::Refused { errcode, errmsg }) => {
            let raw = Some(format!("errcode={errcode} errmsg={errmsg}"));
            match errcode {
                // The code was judged, so the appid and secret were taken.
                40029 | 40163 => Finding::new(
                    "official_account",
                    TITLE_MP,
                    Verdict::Ok,
                    format!("WeChat takes the appid {} and its AppSecret", oauth.appid),
                ),
                40125 | 40001 => Finding::new(
                    "official_account",
                    TITLE_MP,
                    Verdict::Fail,
                    "WeChat refuses the AppSecret: JSAPI payment cannot learn who pays".into(),
                )
                .advice(&[
                    "WEIXIN_MP_APPSECRET is the official account's AppSecret (公众号 → 设置与开发 \
                     → 基本配置), not the API key",
                    "an AppSecret reset in the official account's console makes the old one invalid",
                ]),
                40013 => Finding::new(
                    "official_account",
                    TITLE_MP,
                    Verdict::Fail,
                    format!("WeChat does not know {} as an official account", oauth.appid),
                )
                .advice(&["WEIXIN_APPID must be the official account's appid, bound to the mch_id"]),
                40164 | 61004 => Finding::new(
                    "official_account",
                    TITLE_MP,
                    Verdict::Fail,
                    "this server's IP address is not on the official account's IP whitelist".into(),
                )
                .advice(&["公众号 → 设置与开发 → 基本配置 → IP白名单: add this server's address"]),
                _ => Finding::new(
                    "official_account",
                    TITLE_MP,
                    Verdict::Warn,
                    "WeChat answered with an error this doctor does not know".into(),
                ),
            }
            .raw(raw)
        }
        Err(e) => Finding::new(
            "official_account",
            TITLE_MP,
            Verdict::Fail,
            format!("the official account's API could not be asked: {e}"),
        ),
        Ok(_) => Finding::new(
            "official_account",
            TITLE_MP,
            Verdict::Warn,
            "WeChat gave an openid for a code that cannot exist".into(),
        ),
    });
    findings
}

/// An order number no shop ever made: `doctor` and the time, within WeChat's 32 characters.
fn probe_number(now: DateTime<Utc>) -> String {
    use rand::Rng;
    format!(
        "doctor{}{:06}",
        now.format("%Y%m%d%H%M%S"),
        rand::rng().random_range(0..1_000_000)
    )
}

/// The answer's fields worth showing, as WeChat sent them.
fn raw_answer(probe: &Probe) -> Option<String> {
    let fields = probe.raw.as_ref()?;
    let shown: Vec<String> = [
        "return_code",
        "return_msg",
        "result_code",
        "err_code",
        "err_code_des",
    ]
    .iter()
    .filter_map(|name| fields.get(*name).map(|value| format!("{name}={value}")))
    .collect();
    (!shown.is_empty()).then(|| shown.join(" "))
}

const TITLE_CREDENTIALS: &str = "商户凭证 Credentials (appid, mch_id, API key)";

fn credentials(probe: &Probe) -> Finding {
    let raw = raw_answer(probe).or_else(|| probe.result.as_ref().err().map(|e| e.to_string()));
    let finding = |verdict, said: &str| {
        Finding::new("credentials", TITLE_CREDENTIALS, verdict, said.to_owned()).raw(raw.clone())
    };
    let Err(error) = &probe.result else {
        return finding(
            Verdict::Ok,
            "WeChat answered a query with these credentials: appid, mch_id and key agree",
        );
    };
    match error {
        WxError::Business {
            err_code: ErrCode::OrderNotExist,
            ..
        } => finding(
            Verdict::Ok,
            "appid, mch_id and the API key agree: WeChat checked the signature and looked for \
             a made-up order (ORDERNOTEXIST, as it should)",
        ),
        WxError::Business { .. } => finding(
            Verdict::Warn,
            "WeChat accepted the signature but answered the query with an error; try again \
             later",
        ),
        WxError::ReturnFail { return_msg, .. } if return_msg.contains("签名") => finding(
            Verdict::Fail,
            "WeChat says the signature is wrong (SIGNERROR): WEIXIN_PARTNERKEY is not this \
             merchant's API key",
        )
        .advice(&[
            "the API key is the 32-character v2 key set in the merchant platform \
             (账户中心 → API安全 → 设置APIv2密钥), not the APIv3 key, not the official \
             account's AppSecret",
            "a key reset in the merchant platform replaces the old one at once: set the new one",
            "copy it without spaces or line breaks",
            "WEIXIN_SIGN_TYPE must be one WeChat accepts for this merchant (MD5 or HMAC-SHA256)",
        ]),
        WxError::ReturnFail { return_msg, .. } if return_msg.contains("不匹配") => finding(
            Verdict::Fail,
            "WeChat says the appid and the mch_id do not belong together: WEIXIN_APPID is not \
             bound to WEIXIN_PARTNER",
        )
        .advice(&[
            "bind the appid in the merchant platform: 产品中心 → AppID账号管理 → 关联AppID, then \
             confirm it in the official account's platform",
            "check that WEIXIN_APPID is the official account's (or mini program's) appid, not \
             another account's",
        ]),
        WxError::ReturnFail { return_msg, .. } if return_msg.contains("不存在") => {
            finding(Verdict::Fail, "WeChat does not know this appid or mch_id")
                .advice(&["WEIXIN_APPID starts with wx; WEIXIN_PARTNER is the 10-digit 商户号"])
        }
        WxError::ReturnFail { .. } => finding(
            Verdict::Fail,
            "WeChat refused the query itself (return_code=FAIL)",
        ),
        WxError::InvalidResponse { problem, .. } => finding(
            Verdict::Fail,
            &format!(
                "WeChat's answer cannot be trusted: {problem} — with a wrong key the answers' \
                 signatures do not verify"
            ),
        )
        .advice(&[
            "check WEIXIN_PARTNERKEY and WEIXIN_SIGN_TYPE",
            "a proxy between this machine and WeChat must pass answers unchanged",
        ]),
        WxError::Transport { .. } | WxError::HttpStatus { .. } => finding(
            Verdict::Fail,
            "WeChat Pay cannot be reached from this machine",
        )
        .advice(&[
            "outgoing HTTPS to api.mch.weixin.qq.com must be allowed (firewall, proxy, DNS)",
            "WEIXIN_API_BASE, when set, must be WeChat Pay's address or a sandbox's",
        ]),
        WxError::NoCertificate { .. } => finding(Verdict::Fail, "no client certificate"),
    }
}

const TITLE_CLOCK: &str = "系统时钟 Clock";

fn clock(probe: &Probe, now: DateTime<Utc>) -> Finding {
    let Some(date) = &probe.date else {
        return Finding::new(
            "clock",
            TITLE_CLOCK,
            Verdict::Warn,
            "WeChat's answer carried no Date header: the clock could not be compared".into(),
        );
    };
    let Ok(theirs) = DateTime::parse_from_rfc2822(date) else {
        return Finding::new(
            "clock",
            TITLE_CLOCK,
            Verdict::Warn,
            "WeChat's Date header could not be read: the clock could not be compared".into(),
        )
        .raw(Some(format!("Date: {date}")));
    };
    // The header has whole seconds and left WeChat a moment before it was read here.
    let skew = theirs.timestamp() - now.timestamp();
    let raw = Some(format!("Date: {date}"));
    let (verdict, said) = match skew.abs() {
        s if s <= CLOCK_WARN_SECS => (
            Verdict::Ok,
            format!("within {CLOCK_WARN_SECS} s of WeChat's"),
        ),
        s if s <= CLOCK_FAIL_SECS => (
            Verdict::Warn,
            format!(
                "{} by {s} s: orders' time_expire will be off by as much",
                ahead_or_behind(skew)
            ),
        ),
        s => (
            Verdict::Fail,
            format!(
                "{} by {s} s: WeChat refuses orders whose time_expire is too near, and \
                 expiries and reconciliation run at the wrong times",
                ahead_or_behind(skew)
            ),
        ),
    };
    let finding = Finding::new(
        "clock",
        TITLE_CLOCK,
        verdict,
        format!("this machine's clock is {said}"),
    )
    .raw(raw);
    if verdict == Verdict::Ok {
        finding
    } else {
        finding.advice(&[
            "turn on time synchronisation (chrony or systemd-timesyncd, with ntp.aliyun.com or \
             another NTP server); containers take the host's clock",
        ])
    }
}

/// Said of this machine's clock, from WeChat's minus ours.
fn ahead_or_behind(skew: i64) -> &'static str {
    if skew > 0 {
        "behind WeChat's"
    } else {
        "ahead of WeChat's"
    }
}

const TITLE_CERTIFICATE: &str = "商户API证书 Client certificate";

fn certificate(client: &Client, now: DateTime<Utc>) -> Finding {
    let config = client.config();
    let Some(secapi) = &config.secapi else {
        return Finding::new(
            "certificate",
            TITLE_CERTIFICATE,
            Verdict::Warn,
            "no client certificate is configured: payments work, refunds cannot be made".into(),
        )
        .advice(&[
            "set WEIXIN_CERT_P12 (apiclient_cert.p12), or WEIXIN_CERT_PEM and WEIXIN_KEY_PEM",
        ]);
    };
    let cert = &secapi.cert;
    let raw = Some(format!("subject: {}", cert.subject()));
    let mch_id = &config.merchant.mch_id;
    let names_merchant = cert
        .subject()
        .split(',')
        .any(|part| part.trim() == format!("CN={mch_id}"));
    let (not_before, not_after) = cert.validity();
    let until = DateTime::from_timestamp(not_after, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    let days_left = (not_after - now.timestamp()).div_euclid(86_400);
    let renew = "download a new certificate in the merchant platform (账户中心 → API安全 → \
                 申请API证书) and replace the files";
    if !names_merchant {
        return Finding::new(
            "certificate",
            TITLE_CERTIFICATE,
            Verdict::Fail,
            format!(
                "the certificate is not this merchant's: its subject does not name mch_id \
                 {mch_id}, and WeChat refuses refunds made with it"
            ),
        )
        .advice(&[renew])
        .raw(raw);
    }
    let (verdict, said) = if not_after <= now.timestamp() {
        (
            Verdict::Fail,
            format!("the certificate expired on {until}: WeChat refuses refunds made with it"),
        )
    } else if not_before > now.timestamp() {
        (
            Verdict::Fail,
            "the certificate is not valid yet (or this machine's clock is behind)".to_owned(),
        )
    } else if days_left < CERT_WARN_DAYS {
        (
            Verdict::Warn,
            format!("the certificate expires on {until}, in {days_left} days"),
        )
    } else {
        (
            Verdict::Ok,
            format!("loads, names mch_id {mch_id}, valid until {until}"),
        )
    };
    let finding = Finding::new("certificate", TITLE_CERTIFICATE, verdict, said).raw(raw);
    if verdict == Verdict::Ok {
        finding
    } else {
        finding.advice(&[renew])
    }
}

/// Whether `url`'s host is this machine or a private network (a sandbox, not WeChat).
async fn is_local(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let port = url.port_or_known_default().unwrap_or(443);
    match tokio::net::lookup_host((host.trim_matches(['[', ']']), port)).await {
        Ok(mut addrs) => addrs.any(|a| !is_public(a.ip())),
        Err(_) => false,
    }
}

/// Whether WeChat's servers could reach `ip` across the internet.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                // 100.64.0.0/10, carrier-grade NAT.
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64))
        }
        IpAddr::V6(v6) => {
            !(v6.is_loopback()
                || v6.is_unspecified()
                // fc00::/7 unique local, fe80::/10 link local.
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

/// The payment and the refund notify URLs' findings.
async fn notify_findings(
    rt: &AppRuntime,
    protocol: Protocol,
    [notify_url, refund_notify_url]: [&Url; 2],
    wechat_is_local: bool,
) -> [Finding; 2] {
    [
        notify(
            rt,
            protocol,
            "notify_url",
            "支付通知地址 Payment notify URL",
            notify_url,
            wechat_is_local,
        )
        .await,
        notify(
            rt,
            protocol,
            "refund_notify_url",
            "退款通知地址 Refund notify URL",
            refund_notify_url,
            wechat_is_local,
        )
        .await,
    ]
}

/// Which protocol's notifies a URL is probed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    V2,
    V3,
}

async fn notify(
    rt: &AppRuntime,
    protocol: Protocol,
    check: &'static str,
    title: &'static str,
    url: &Url,
    wechat_is_local: bool,
) -> Finding {
    let mut problems: Vec<(Verdict, String)> = Vec::new();
    let mut advice: Vec<&'static str> = Vec::new();
    if url.query().is_some() || url.fragment().is_some() {
        problems.push((
            Verdict::Fail,
            "it carries a query string, which WeChat does not keep".into(),
        ));
        advice.push("use a plain path: PUBLIC_BASE_URL + /weixin/pay/notify/url");
    }
    if url.scheme() != "https" {
        problems.push((
            Verdict::Warn,
            "it is http: the notify crosses the internet unencrypted, and API v3 requires https"
                .into(),
        ));
        advice.push(
            "put the shop behind HTTPS (a reverse proxy with a certificate) and set \
             PUBLIC_BASE_URL to the https address",
        );
    }
    if url.port().is_some() {
        problems.push((
            Verdict::Warn,
            format!(
                "it names port {}: WeChat calls back on the standard ports (443, 80), other \
                 ports are often blocked on the way",
                url.port().unwrap_or_default()
            ),
        ));
        advice.push("serve the shop on 443 through a reverse proxy");
    }
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(443);
    match tokio::net::lookup_host((host.trim_matches(['[', ']']), port)).await {
        Err(_) => {
            problems.push((
                Verdict::Fail,
                format!("{host} does not resolve from here: WeChat cannot find it"),
            ));
            advice.push("add the DNS record for the shop's name");
        }
        Ok(addrs) => {
            let private: Vec<IpAddr> = addrs.map(|a| a.ip()).filter(|ip| !is_public(*ip)).collect();
            if !private.is_empty() && !wechat_is_local {
                problems.push((
                    Verdict::Fail,
                    format!(
                        "{host} is {}, an address WeChat's servers cannot reach",
                        private[0]
                    ),
                ));
                advice.push(
                    "set PUBLIC_BASE_URL to the shop's public https address (the one shoppers \
                     use)",
                );
            }
        }
    }
    let (probe_verdict, probe_said, raw) = probe_notify(rt, protocol, url).await;
    if probe_verdict != Verdict::Ok {
        problems.push((probe_verdict, probe_said.clone()));
        advice.push(
            "the notify route must take a POST with its body and headers unchanged: no login, \
             CSRF check, WAF rule, redirect (http→https included) or body rewriting in front of it",
        );
    }
    let verdict = problems
        .iter()
        .map(|(v, _)| *v)
        .max_by_key(|v| match v {
            Verdict::Ok => 0,
            Verdict::Warn => 1,
            Verdict::Fail => 2,
        })
        .unwrap_or(Verdict::Ok);
    let said = if problems.is_empty() {
        format!(
            "{url} is https on the standard port and {probe_said}. Checked from this machine \
             only: a firewall, CDN or WAF that stops WeChat's servers cannot be seen from here \
             — the console's notify log shows what arrives"
        )
    } else {
        let listed: Vec<String> = problems.into_iter().map(|(_, p)| p).collect();
        format!("{url}: {}", listed.join("; "))
    };
    Finding {
        check,
        title,
        verdict,
        said,
        advice,
        raw,
    }
}

/// POSTs a notify that is not WeChat's to `url` — v2: unsigned XML with `return_code=FAIL`,
/// answered with WeChat's XML (a refusal); v3: unsigned JSON, answered 401 with WeChat's
/// `{"code","message"}` — so anything else in the way shows.
async fn probe_notify(
    rt: &AppRuntime,
    protocol: Protocol,
    url: &Url,
) -> (Verdict, String, Option<String>) {
    let http = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(PROBE_TIMEOUT)
        .build()
    {
        Ok(http) => http,
        Err(e) => return (Verdict::Fail, format!("cannot probe: {e}"), None),
    };
    let (content_type, body) = match protocol {
        Protocol::V2 => (
            "text/xml",
            "<xml><return_code><![CDATA[FAIL]]></return_code>\
             <return_msg><![CDATA[wxpay-checkout doctor probe]]></return_msg></xml>",
        ),
        Protocol::V3 => (
            "application/json",
            r#"{"id":"wxpay-checkout-doctor-probe","event_type":"TRANSACTION.SUCCESS"}"#,
        ),
    };
    let sent = rt
        .run(async {
            let response = http
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body)
                .send()
                .await?;
            let status = response.status();
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_owned);
            let text = response.text().await?;
            Ok::<_, reqwest::Error>((status, location, text))
        })
        .await;
    let (status, location, text) =
        match sent {
            Ok(answer) => answer,
            Err(e) => return (
                Verdict::Fail,
                "nothing answers a POST there from this machine (is the shop running, and does \
                 the address lead to it?)"
                    .into(),
                Some(without_url(&e)),
            ),
        };
    let excerpt: String = text.chars().take(200).collect();
    let raw = Some(format!("HTTP {}: {excerpt}", status.as_u16()));
    if status.is_redirection() {
        return (
            Verdict::Fail,
            format!(
                "a POST there is redirected (HTTP {} to {}): WeChat does not follow redirects",
                status.as_u16(),
                location.unwrap_or_default()
            ),
            raw,
        );
    }
    if protocol == Protocol::V3 {
        return v3::judge_probe_answer(status, &text, raw);
    }
    if !status.is_success() {
        return (
            Verdict::Fail,
            format!(
                "a POST there is answered HTTP {}: WeChat's notifies would be refused the same way",
                status.as_u16()
            ),
            raw,
        );
    }
    let is_wechat_xml = crate::wxpay::xml::decode(text.as_bytes())
        .is_ok_and(|fields| fields.contains_key("return_code"));
    if !is_wechat_xml {
        return (
            Verdict::Fail,
            "a POST there is answered by something other than this shop (not WeChat's XML)".into(),
            raw,
        );
    }
    (
        Verdict::Ok,
        "a probe POST is answered with WeChat's XML".into(),
        raw,
    )
}

/// A transport error's text without its URL (which is already shown beside it).
fn without_url(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut text = String::new();
    let mut source: Option<&dyn Error> = e.source();
    while let Some(cause) = source {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if text.is_empty() {
        "no answer".into()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_loopback_addresses_are_not_reachable_from_wechat() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.5",
            "172.16.0.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["101.226.103.1", "8.8.8.8", "2408:8000::1"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn probe_numbers_are_valid_order_numbers() {
        let no = probe_number(Utc::now());
        assert!(no.len() <= 32, "{no}");
        crate::domain::OutTradeNo::parse(&no).unwrap();
    }
}
