//! Paying on a phone: which way the pay page offers (by the browser's user agent), and the
//! routes of H5 (`/pay/{no}/h5` → WeChat's page → back to the pay page) and JSAPI
//! (`/pay/{no}/wechat` → the official account's OAuth → `/pay/{no}/wechat/back` → the pay
//! page's WeChat button). The rules are the checkout service's (`checkout::phones`).

use actix_web::cookie::Cookie;
use actix_web::http::header::{self, LOCATION};
use actix_web::{web, HttpRequest, HttpResponse};

use super::{AppState, WebError};
use crate::checkout::{loggable, CheckoutError, PhoneStep};

/// The cookie that binds an OAuth round trip to the browser that started it (its `state`).
const OAUTH_COOKIE: &str = "wxpay_oauth";

/// What kind of browser asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Desktop,
    /// A phone's browser outside WeChat.
    Phone,
    /// WeChat's own browser (`MicroMessenger`), on a phone or a computer.
    WeChat,
}

impl Device {
    pub fn of(req: &HttpRequest) -> Device {
        let ua = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if ua.contains("MicroMessenger") {
            Device::WeChat
        } else if ["Mobile", "Android", "iPhone", "iPad", "HarmonyOS"]
            .iter()
            .any(|m| ua.contains(m))
        {
            Device::Phone
        } else {
            Device::Desktop
        }
    }
}

fn see_other(to: String) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((LOCATION, to))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// The shop's public URL of `path`.
fn public_url(state: &AppState, path: &str) -> String {
    let base = &state.checkout.terms().phones.public_base_url;
    format!("{}{}", base.as_str().trim_end_matches('/'), path)
}

/// H5: asks WeChat for the attempt's page and sends the browser there, with the pay page as
/// the way back (WeChat returns there whether or not the shopper paid; the page then checks).
#[tracing::instrument(name = "pay_h5", skip_all, fields(out_trade_no = %loggable(&no)))]
pub async fn pay_h5(
    state: web::Data<AppState>,
    req: HttpRequest,
    no: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let ip = state.client_ip(&req);
    let shopper = state.shopper(&req);
    match state.checkout.pay_h5(&no, ip, &shopper).await? {
        PhoneStep::Ready(mweb_url) => {
            let back = public_url(&state, &format!("/pay/{no}?returned=h5"));
            let back: String = url::form_urlencoded::byte_serialize(back.as_bytes()).collect();
            Ok(see_other(format!("{mweb_url}&redirect_url={back}")))
        }
        PhoneStep::Finished(order) => Ok(see_other(super::pay::result_location(&order))),
    }
}

/// JSAPI, step 1: off to the official account's OAuth (`snsapi_base`: WeChat answers at
/// once), with a `state` bound to this browser by a cookie.
pub async fn oauth_start(
    state: web::Data<AppState>,
    no: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let order = state.checkout.order(&no).await?;
    let token = crate::wxpay::nonce_str();
    let back = public_url(&state, &format!("/pay/{}/wechat/back", order.out_trade_no));
    let to = state
        .checkout
        .oauth_url(&back, &token)
        .ok_or(CheckoutError::WayUnavailable(
            "这家店未开通微信内支付 This shop does not take payments inside WeChat.",
        ))?;
    let mut cookie = state.cookie(
        OAUTH_COOKIE,
        token,
        format!("/pay/{}/wechat", order.out_trade_no),
    );
    cookie.set_max_age(actix_web::cookie::time::Duration::minutes(10));
    let mut response = see_other(to);
    response.add_cookie(&cookie).map_err(|_| WebError::Cookie)?;
    Ok(response)
}

#[derive(serde::Deserialize)]
pub struct OAuthBack {
    code: Option<String>,
    state: Option<String>,
}

/// JSAPI, step 2: WeChat's way back with `code`. The `state` must be this browser's (else a
/// stranger's code could pay from the stranger's account in this shopper's page — login
/// CSRF); the code becomes the openid (never shown or logged whole), and the attempt's prepay
/// is made; then back to the pay page and its WeChat button.
#[tracing::instrument(name = "oauth_back", skip_all, fields(out_trade_no = %loggable(&no)))]
pub async fn oauth_back(
    state: web::Data<AppState>,
    req: HttpRequest,
    no: web::Path<String>,
    query: web::Query<OAuthBack>,
) -> Result<HttpResponse, WebError> {
    let expected = req.cookie(OAUTH_COOKIE).map(|c| c.value().to_owned());
    let bound = match (&query.state, &expected) {
        (Some(given), Some(expected)) => {
            !given.is_empty()
                && bool::from(subtle::ConstantTimeEq::ct_eq(
                    given.as_bytes(),
                    expected.as_bytes(),
                ))
        }
        _ => false,
    };
    if !bound {
        return Err(CheckoutError::WayUnavailable(
            "微信授权已失效，请重新打开支付页面 This sign-in with WeChat has expired or did not \
             start here; open the pay page again.",
        )
        .into());
    }
    let Some(code) = query
        .code
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= 128)
    else {
        // The shopper declined, or WeChat sent nothing: the QR code is still there.
        return Ok(see_other(format!("/pay/{no}?wechat=declined")));
    };
    let openid = state.checkout.openid_for_code(code).await?;
    let shopper = state.shopper(&req);
    let step = state.checkout.pay_jsapi(&no, &openid, &shopper).await?;
    let to = match step {
        PhoneStep::Ready(_) => format!("/pay/{no}"),
        PhoneStep::Finished(order) => super::pay::result_location(&order),
    };
    let mut removal = Cookie::build(OAUTH_COOKIE, "")
        .path(format!("/pay/{no}/wechat"))
        .finish();
    removal.make_removal();
    let mut response = see_other(to);
    response
        .add_cookie(&removal)
        .map_err(|_| WebError::Cookie)?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(ua: &str) -> Device {
        let req = actix_web::test::TestRequest::default()
            .insert_header((header::USER_AGENT, ua))
            .to_http_request();
        Device::of(&req)
    }

    #[test]
    fn the_browser_chooses_the_way() {
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
        let wechat = "Mozilla/5.0 (Linux; Android 13; V2148A Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160065 MMWEBSDK/20231202 MMWEBID/2247 MicroMessenger/8.0.47.2560(0x28002F35) WeChat/arm64 Weixin NetType/WIFI Language/zh_CN ABI/arm64";
        let desktop = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
        assert_eq!(device(iphone), Device::Phone);
        assert_eq!(device(wechat), Device::WeChat);
        assert_eq!(device(desktop), Device::Desktop);
        assert_eq!(device(""), Device::Desktop);
    }
}
