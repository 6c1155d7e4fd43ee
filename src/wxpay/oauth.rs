//! The official account's web authorisation (`snsapi_base`), the way JSAPI payment learns the
//! shopper's `openid`: the browser is sent to [`authorize_url`] (WeChat answers at once, without
//! asking the shopper, by redirecting back with `code` and `state`), and the shop trades the
//! code for the openid with [`OAuth::openid`] (`/sns/oauth2/access_token`, with the account's
//! AppSecret; a code works once, for 5 minutes). The base URLs are settings so the built-in
//! sandbox can stand in for both hosts.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::rt::AppRuntime;

/// WeChat's authorisation host (the browser goes there).
pub const OPEN_BASE: &str = "https://open.weixin.qq.com";
/// WeChat's official-account API host (the shop calls it).
pub const MP_API_BASE: &str = "https://api.weixin.qq.com";
/// The longest answer read from `access_token`.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// Where to send the browser: `{open}/connect/oauth2/authorize?appid=…&redirect_uri=…&
/// response_type=code&scope=snsapi_base&state=…#wechat_redirect`, parameters in the order
/// WeChat's documentation gives (it is known to refuse others).
pub fn authorize_url(open_base: &Url, appid: &str, redirect_uri: &str, state: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "{}/connect/oauth2/authorize?appid={}&redirect_uri={}&response_type=code&scope=snsapi_base&state={}#wechat_redirect",
        open_base.as_str().trim_end_matches('/'),
        enc(appid),
        enc(redirect_uri),
        enc(state),
    )
}

/// Why no openid came back.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("the official-account API could not be reached: {0}")]
    Unreachable(String),
    /// WeChat's `errcode`/`errmsg` (40029 invalid code, 40163 code used, 40125 bad secret…).
    #[error("WeChat refused the code: {errcode} {errmsg}")]
    Refused { errcode: i64, errmsg: String },
    #[error("the answer was not WeChat's: {0}")]
    Malformed(String),
}

/// The access_token answer; only what the shop uses.
#[derive(Debug, Deserialize)]
struct TokenAnswer {
    openid: Option<String>,
    errcode: Option<i64>,
    errmsg: Option<String>,
}

/// The official account's side of authorisation.
#[derive(Clone)]
pub struct OAuth {
    http: reqwest::Client,
    rt: AppRuntime,
    pub open_base: Url,
    pub api_base: Url,
    pub appid: String,
    secret: SecretString,
}

impl std::fmt::Debug for OAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth")
            .field("open_base", &self.open_base.as_str())
            .field("api_base", &self.api_base.as_str())
            .field("appid", &self.appid)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

impl OAuth {
    pub fn new(
        open_base: Url,
        api_base: Url,
        appid: String,
        secret: SecretString,
        rt: &AppRuntime,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wxpay-checkout/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(OAuth {
            http,
            rt: rt.clone(),
            open_base,
            api_base,
            appid,
            secret,
        })
    }

    /// Where to send the browser for a code (see [`authorize_url`]).
    pub fn authorize_url(&self, redirect_uri: &str, state: &str) -> String {
        authorize_url(&self.open_base, &self.appid, redirect_uri, state)
    }

    /// Trades an authorisation `code` for the shopper's openid.
    pub async fn openid(&self, code: &str) -> Result<String, OAuthError> {
        let mut url = self
            .api_base
            .join("sns/oauth2/access_token")
            .map_err(|e| OAuthError::Unreachable(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("appid", &self.appid)
            .append_pair("secret", self.secret.expose_secret())
            .append_pair("code", code)
            .append_pair("grant_type", "authorization_code");
        let http = self.http.clone();
        let body = self
            .rt
            .run(async move {
                let mut answer = http.get(url).send().await?.error_for_status()?;
                let mut body = Vec::new();
                while let Some(chunk) = answer.chunk().await? {
                    body.extend_from_slice(&chunk);
                    if body.len() > MAX_ANSWER_BYTES {
                        return Ok(None);
                    }
                }
                Ok::<_, reqwest::Error>(Some(body))
            })
            .await
            // The URL carries the secret: never in the error's text.
            .map_err(|e| OAuthError::Unreachable(e.without_url().to_string()))?
            .ok_or_else(|| OAuthError::Malformed("answer too large".into()))?;
        parse_token_answer(&body)
    }
}

/// The openid in an access_token answer, or WeChat's refusal.
fn parse_token_answer(body: &[u8]) -> Result<String, OAuthError> {
    let answer: TokenAnswer =
        serde_json::from_slice(body).map_err(|e| OAuthError::Malformed(e.to_string()))?;
    if let Some(errcode) = answer.errcode.filter(|c| *c != 0) {
        return Err(OAuthError::Refused {
            errcode,
            errmsg: answer.errmsg.unwrap_or_default(),
        });
    }
    match answer.openid {
        Some(openid) if valid_openid(&openid) => Ok(openid),
        _ => Err(OAuthError::Malformed("no openid".into())),
    }
}

/// An openid as WeChat issues them: 1–64 letters, digits, `-` and `_` (28 in practice).
pub fn valid_openid(openid: &str) -> bool {
    (1..=64).contains(&openid.len())
        && openid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An openid for logs and pages: its first 6 characters and the length, never the whole.
pub fn masked_openid(openid: &str) -> String {
    let head: String = openid.chars().take(6).collect();
    format!("{head}…({})", openid.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authorize_url_is_wechats() {
        let base = Url::parse("https://open.weixin.qq.com").unwrap();
        let url = authorize_url(
            &base,
            "wx520c15f417810387",
            "https://shop.example.com/pay/1/wechat?x=1",
            "st8",
        );
        assert_eq!(
            url,
            "https://open.weixin.qq.com/connect/oauth2/authorize?appid=wx520c15f417810387\
             &redirect_uri=https%3A%2F%2Fshop.example.com%2Fpay%2F1%2Fwechat%3Fx%3D1\
             &response_type=code&scope=snsapi_base&state=st8#wechat_redirect"
        );
    }

    #[test]
    fn token_answers_give_the_openid_or_wechats_refusal() {
        let ok = br#"{"access_token":"ACCESS_TOKEN","expires_in":7200,"refresh_token":"R","openid":"oLVPpjqs9BhvzwPj5A-vTYAX3GLc","scope":"snsapi_base"}"#;
        assert_eq!(
            parse_token_answer(ok).unwrap(),
            "oLVPpjqs9BhvzwPj5A-vTYAX3GLc"
        );
        let refused = br#"{"errcode":40029,"errmsg":"invalid code"}"#;
        assert!(matches!(
            parse_token_answer(refused),
            Err(OAuthError::Refused { errcode: 40029, .. })
        ));
        assert!(matches!(
            parse_token_answer(b"<html>"),
            Err(OAuthError::Malformed(_))
        ));
        assert!(matches!(
            parse_token_answer(br#"{"openid":"a b"}"#),
            Err(OAuthError::Malformed(_))
        ));
        assert_eq!(masked_openid("oLVPpjqs9BhvzwPj5A-vTYAX3GLc"), "oLVPpj…(28)");
    }
}
