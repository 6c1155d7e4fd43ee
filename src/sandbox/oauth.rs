//! The official account's web authorisation (`snsapi_base`) at WeChat's paths, so JSAPI payment
//! can learn a payer's openid from the sandbox: `/connect/oauth2/authorize` sends the browser
//! back with a `code` at once (as WeChat does for `snsapi_base`), and `/sns/oauth2/access_token`
//! trades the code, once, within [`OAUTH_CODE_VALIDITY`], for the openid. The account is the
//! merchant's `appid`; its AppSecret is [`super::SandboxConfig::mp_appsecret`].
//!
//! The shopper is the browser: a random `sbx_wxuser` cookie set on the first visit. Its openid
//! is derived, not stored — `o` + a 13-character tag keyed on (appid, user) + a 14-character
//! check keyed on (appid, tag), both URL-safe Base64 of HMAC-SHA256 under the merchant key: 28
//! characters like WeChat's, the same for one browser every time (also across restarts), and
//! recognisable by unifiedorder as issued under this appid without remembering any of them.

use actix_web::cookie::{time::Duration as CookieAge, Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::distr::{Alphanumeric, SampleString};
use secrecy::ExposeSecret;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::http::{render_page, ResultPage};
use super::{Sandbox, OAUTH_CODE_VALIDITY};

/// The cookie naming the sandbox's shopper.
pub const USER_COOKIE: &str = "sbx_wxuser";

/// A code the browser was given: whose openid it is for, and whether it was traded already.
#[derive(Debug)]
pub struct Code {
    openid: String,
    scope: String,
    used: bool,
}

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/connect/oauth2/authorize", web::get().to(authorize))
        .route("/sns/oauth2/access_token", web::get().to(access_token));
}

const TAG_LEN: usize = 13;
const CHECK_LEN: usize = 14;

impl Sandbox {
    /// URL-safe Base64 of HMAC-SHA256 over `parts` joined by `|`, under the merchant key.
    fn keyed(&self, parts: &[&str]) -> String {
        let key = self.config.merchant.key.expose_secret().as_bytes();
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key");
        mac.update(parts.join("|").as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// The openid of `user` under the merchant's appid.
    pub(super) fn openid_of(&self, user: &str) -> String {
        let appid = self.config.merchant.appid.as_str();
        let tag = &self.keyed(&["openid-user", appid, user])[..TAG_LEN];
        let check = &self.keyed(&["openid-check", appid, tag])[..CHECK_LEN];
        format!("o{tag}{check}")
    }

    /// Whether `openid` is one [`Sandbox::openid_of`] issued under the merchant's appid.
    pub(super) fn issued_openid(&self, openid: &str) -> bool {
        let Some(rest) = openid.strip_prefix('o') else {
            return false;
        };
        if rest.len() != TAG_LEN + CHECK_LEN || !rest.is_ascii() {
            return false;
        }
        let (tag, check) = rest.split_at(TAG_LEN);
        let appid = self.config.merchant.appid.as_str();
        let expected = &self.keyed(&["openid-check", appid, tag])[..CHECK_LEN];
        bool::from(expected.as_bytes().ct_eq(check.as_bytes()))
    }
}

#[derive(Debug, Deserialize)]
struct Authorize {
    appid: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    scope: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

/// The page WeChat shows instead of redirecting, with its `4xx` status.
fn refused(headline: &str, detail: &str) -> HttpResponse {
    render_page(
        &ResultPage::refusal(headline, detail),
        StatusCode::BAD_REQUEST,
    )
}

/// `GET /connect/oauth2/authorize`: `302` to `redirect_uri` with `code` and `state`.
async fn authorize(
    sandbox: web::Data<Sandbox>,
    request: HttpRequest,
    query: web::Query<Authorize>,
) -> HttpResponse {
    let query = query.into_inner();
    let present = |v: &Option<String>| v.as_deref().filter(|v| !v.is_empty()).map(str::to_owned);
    if present(&query.appid).as_deref() != Some(sandbox.config.merchant.appid.as_str()) {
        return refused(
            "appid参数错误",
            "Unknown appid: the sandbox's official account is the merchant's appid.",
        );
    }
    let Some(target) = present(&query.redirect_uri) else {
        return refused("redirect_uri参数错误", "redirect_uri is required.");
    };
    let Some(mut target) = sandbox.redirect_target(&target) else {
        let detail = if sandbox.config.notify_only.is_some() {
            "redirect_uri must be an absolute http(s) URL on the shop's own origin."
        } else {
            "redirect_uri must be an absolute http(s) URL."
        };
        return refused("redirect_uri域名与后台配置不一致", detail);
    };
    if present(&query.response_type).as_deref() != Some("code") {
        return refused("response_type参数错误", "response_type must be code.");
    }
    let scope = match present(&query.scope).as_deref() {
        Some(scope @ ("snsapi_base" | "snsapi_userinfo")) => scope.to_owned(),
        _ => {
            return refused(
                "scope参数错误或没有scope权限",
                "scope must be snsapi_base (or snsapi_userinfo).",
            )
        }
    };
    // WeChat's limit; it also keeps what the sandbox echoes small.
    let state = query.state.unwrap_or_default();
    if state.len() > 128 {
        return refused("state参数错误", "state is at most 128 bytes.");
    }

    let known = request
        .cookie(USER_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|u| (16..=64).contains(&u.len()) && u.bytes().all(|b| b.is_ascii_alphanumeric()));
    let user = known
        .clone()
        .unwrap_or_else(|| Alphanumeric.sample_string(&mut rand::rng(), 24));
    let code = Alphanumeric.sample_string(&mut rand::rng(), 32);
    let now = sandbox.now();
    sandbox.codes().insert(
        code.clone(),
        Code {
            openid: sandbox.openid_of(&user),
            scope,
            used: false,
        },
        now + OAUTH_CODE_VALIDITY,
    );
    target
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &state);
    let mut response = HttpResponse::Found();
    response.insert_header((actix_web::http::header::LOCATION, target.as_str()));
    if known.is_none() {
        response.cookie(
            Cookie::build(USER_COOKIE, user)
                .path("/")
                .http_only(true)
                .same_site(SameSite::Lax)
                .max_age(CookieAge::days(365))
                .finish(),
        );
    }
    response.finish()
}

#[derive(Debug, Deserialize)]
struct AccessToken {
    appid: Option<String>,
    secret: Option<String>,
    code: Option<String>,
    grant_type: Option<String>,
}

/// WeChat's refusal: `{"errcode":…,"errmsg":"…, hints: [ req_id: … ]"}`, status 200 as
/// WeChat's.
fn errcode(code: i64, message: &str) -> HttpResponse {
    let req_id = Alphanumeric.sample_string(&mut rand::rng(), 12);
    HttpResponse::Ok().json(serde_json::json!({
        "errcode": code,
        "errmsg": format!("{message}, hints: [ req_id: {req_id} ]"),
    }))
}

/// `GET /sns/oauth2/access_token`: the openid for a code, once.
async fn access_token(sandbox: web::Data<Sandbox>, query: web::Query<AccessToken>) -> HttpResponse {
    let query = query.into_inner();
    let present = |v: Option<String>| v.filter(|v| !v.is_empty());
    let Some(appid) = present(query.appid) else {
        return errcode(41002, "appid missing");
    };
    if appid != sandbox.config.merchant.appid {
        return errcode(40013, "invalid appid");
    }
    let Some(secret) = present(query.secret) else {
        return errcode(41004, "appsecret missing");
    };
    let expected = sandbox.config.mp_appsecret.expose_secret().as_bytes();
    if !bool::from(expected.ct_eq(secret.as_bytes())) {
        return errcode(40125, "invalid appsecret");
    }
    let Some(code) = present(query.code) else {
        return errcode(41008, "missing code");
    };
    if query.grant_type.as_deref() != Some("authorization_code") {
        return errcode(40002, "invalid grant_type");
    }
    let now = sandbox.now();
    let (openid, scope) = {
        let mut codes = sandbox.codes();
        let Some(entry) = codes.get_mut(&code, now) else {
            return errcode(40029, "invalid code");
        };
        if entry.used {
            return errcode(40163, "code been used");
        }
        entry.used = true;
        (entry.openid.clone(), entry.scope.clone())
    };
    let token = |n| Alphanumeric.sample_string(&mut rand::rng(), n);
    HttpResponse::Ok().json(serde_json::json!({
        "access_token": token(88),
        "expires_in": 7200,
        "refresh_token": token(88),
        "openid": openid,
        "scope": scope,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::AppRuntime;
    use crate::sandbox::SandboxConfig;
    use crate::wxpay::Merchant;

    fn sandbox(appid: &str) -> Sandbox {
        let merchant = Merchant {
            appid: appid.into(),
            mch_id: "1".into(),
            key: "192006250b4c09247ec02edce69f6a2d".to_string().into(),
        };
        Sandbox::new(SandboxConfig::new(merchant), &AppRuntime::current()).unwrap()
    }

    #[tokio::test]
    async fn openids_are_wechat_shaped_stable_and_recognised_only_under_their_appid() {
        let ours = sandbox("wx1");
        let theirs = sandbox("wx2");
        let openid = ours.openid_of("browser-a");
        assert_eq!(openid.len(), 28);
        assert!(openid.starts_with('o'));
        assert!(crate::wxpay::oauth::valid_openid(&openid), "{openid}");
        assert_eq!(openid, ours.openid_of("browser-a"));
        assert_ne!(openid, ours.openid_of("browser-b"));
        assert!(ours.issued_openid(&openid));
        assert!(!theirs.issued_openid(&openid));
        assert!(!ours.issued_openid(&theirs.openid_of("browser-a")));
        let mut forged = openid.clone();
        forged.replace_range(27.., if openid.ends_with('A') { "B" } else { "A" });
        assert!(!ours.issued_openid(&forged));
        assert!(!ours.issued_openid("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"));
    }
}
