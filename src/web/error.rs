//! Where every failure becomes a response, for each kind of caller: a page for the shopper
//! ([`WebError`]'s `ResponseError`), the seed front end's JSON ([`json_failure`]) and WeChat's
//! notify answer ([`notify_failure`]). A status and a sentence for the caller; the cause chain
//! goes to the log, never to the caller.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

use super::seed::ResultBody;
use super::Chrome;
use crate::checkout::cart::MAX_LINES;
use crate::checkout::{CheckoutError, MAX_NUM};
use crate::wxpay::notify::fail_answer;

/// A failure of an HTML route: the checkout's, or the page's own.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(transparent)]
    Checkout(#[from] CheckoutError),
    #[error(transparent)]
    Console(#[from] crate::console::ConsoleError),
    #[error("no such file")]
    NoSuchFile,
    /// A form posted from another site's page.
    #[error("a form from another origin")]
    CrossOrigin,
    /// The cart holds as many products as it may.
    #[error("the cart is full")]
    CartFull,
    /// The cart's order could not be reserved: a line is short of stock or no longer sold.
    #[error("the cart cannot be reserved")]
    CartShort,
    /// A cookie that could not be set.
    #[error("a cookie could not be encoded")]
    Cookie,
    /// WeChat's code_url does not fit in a QR code (theirs are about 40 characters).
    #[error("a code_url too long for a QR code")]
    Undrawable,
    #[error("template: {0}")]
    Template(#[from] askama::Error),
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    headline: &'a str,
    detail: &'a str,
    retry_url: Option<&'a str>,
    chrome: Chrome,
}

/// An error page's content, kept with the response so that [`render_error_pages`] can draw it
/// in the shop's own chrome (an error knows nothing of the shop it happened in).
#[derive(Debug, Clone)]
struct ErrorView {
    status: StatusCode,
    headline: &'static str,
    detail: String,
    retry_url: Option<String>,
}

impl ErrorView {
    fn render(&self, chrome: Chrome) -> Option<String> {
        ErrorPage {
            status: self.status.as_u16(),
            headline: self.headline,
            detail: &self.detail,
            retry_url: self.retry_url.as_deref(),
            chrome,
        }
        .render()
        .ok()
    }
}

/// Draws error pages in the shop's chrome (its name on every page).
pub fn render_error_pages<S>(
    req: actix_web::dev::ServiceRequest,
    service: &S,
) -> impl std::future::Future<Output = Result<actix_web::dev::ServiceResponse, actix_web::Error>>
where
    S: actix_web::dev::Service<
        actix_web::dev::ServiceRequest,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
{
    let response = service.call(req);
    async move {
        let response = response.await?;
        let view = response.response().extensions().get::<ErrorView>().cloned();
        let Some(view) = view else {
            return Ok(response);
        };
        // The chrome only for a response that is an error page: nothing for the others.
        let request = response.request();
        let Some(chrome) = request
            .app_data::<actix_web::web::Data<super::AppState>>()
            .map(|state| state.chrome(request))
        else {
            return Ok(response);
        };
        let Some(page) = view.render(chrome) else {
            return Ok(response);
        };
        Ok(response.map_body(|_, _| actix_web::body::BoxBody::new(page)))
    }
}

const NOT_FOUND: &str = "找不到 Not found";
const BAD_REQUEST: &str = "请求有误 Bad request";
const CONFLICT: &str = "无法完成 Cannot do that";
const BUSY: &str = "微信支付暂时不可用 WeChat Pay is busy";
const REFUSED: &str = "微信支付拒绝了请求 WeChat Pay refused";
const BROKEN: &str = "出错了 Something went wrong";
const TRY_AGAIN: &str = "Please try again in a moment.";

/// A status, a headline and a sentence for the caller.
fn explain(e: &CheckoutError) -> (StatusCode, &'static str, String) {
    use CheckoutError as E;
    match e {
        E::NotFound(what) => (
            StatusCode::NOT_FOUND,
            NOT_FOUND,
            format!("No such {}.", what.as_str()),
        ),
        E::BadQuantity => (
            StatusCode::BAD_REQUEST,
            BAD_REQUEST,
            format!("数量须为 1 到 {MAX_NUM} 的整数 Quantity must be a whole number from 1 to {MAX_NUM}."),
        ),
        E::Unplaceable => (
            StatusCode::BAD_REQUEST,
            BAD_REQUEST,
            "This order cannot be placed.".into(),
        ),
        E::AmountMismatch => (StatusCode::BAD_REQUEST, BAD_REQUEST, e.to_string()),
        E::OutOfStock => (
            StatusCode::CONFLICT,
            CONFLICT,
            "库存不足 Not enough stock for this order.".into(),
        ),
        E::TooMany => (
            StatusCode::TOO_MANY_REQUESTS,
            "请求过多 Too many orders",
            "You have placed or left unpaid as many orders as one shopper may. Please pay or \
             wait for an unpaid order to expire, then try again."
                .into(),
        ),
        E::NotPayable(_) => (StatusCode::CONFLICT, CONFLICT, e.to_string()),
        E::WayUnavailable(why) => (StatusCode::CONFLICT, CONFLICT, (*why).to_owned()),
        E::WechatBusy { .. } | E::NotSettled { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            BUSY,
            "Nothing was charged. Please try again in a moment.".into(),
        ),
        E::WechatRefused(_) => (
            StatusCode::BAD_GATEWAY,
            REFUSED,
            "The payment could not be started. Please contact the shop.".into(),
        ),
        E::NotifyRefused { .. } => (StatusCode::BAD_REQUEST, BAD_REQUEST, e.to_string()),
        E::Refund(crate::checkout::RefundProblem::NoCertificate) => (
            StatusCode::SERVICE_UNAVAILABLE,
            REFUSED,
            e.to_string(),
        ),
        E::Refund(_) => (StatusCode::CONFLICT, CONFLICT, e.to_string()),
        E::Bill(crate::checkout::BillProblem::Future) => {
            (StatusCode::BAD_REQUEST, BAD_REQUEST, e.to_string())
        }
        E::Bill(crate::checkout::BillProblem::Busy) => {
            (StatusCode::CONFLICT, CONFLICT, e.to_string())
        }
        E::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, BROKEN, TRY_AGAIN.into()),
    }
}

/// Logs a failure at the level its status deserves.
fn log(status: StatusCode, e: &dyn std::error::Error) {
    if status.is_server_error() {
        tracing::error!(error = %e, "request failed");
    } else {
        tracing::debug!(error = %e, "request refused");
    }
}

impl WebError {
    fn explain(&self) -> (StatusCode, &'static str, String) {
        match self {
            WebError::Checkout(e) => explain(e),
            WebError::NoSuchFile => (StatusCode::NOT_FOUND, NOT_FOUND, "No such file.".into()),
            WebError::CrossOrigin => (
                StatusCode::FORBIDDEN,
                "不接受的请求 Not accepted",
                "Orders are placed from the shop's own pages.".into(),
            ),
            WebError::Console(e) => {
                use crate::console::ConsoleError as C;
                match e {
                    C::NoSuchOrder => (StatusCode::NOT_FOUND, NOT_FOUND, "No such order.".into()),
                    C::NoSuchProduct => {
                        (StatusCode::NOT_FOUND, NOT_FOUND, "No such product.".into())
                    }
                    C::Invalid(problem) => (StatusCode::BAD_REQUEST, BAD_REQUEST, problem.clone()),
                    C::Conflict(problem) => (StatusCode::CONFLICT, CONFLICT, (*problem).into()),
                    C::WrongPassword | C::LockedOut(_) => (
                        StatusCode::UNAUTHORIZED,
                        "请登录 Sign in",
                        "Please sign in again.".into(),
                    ),
                    C::BadConfiguredHash | C::Hashing(_) | C::Store(_) => {
                        (StatusCode::INTERNAL_SERVER_ERROR, BROKEN, TRY_AGAIN.into())
                    }
                }
            }
            WebError::CartFull => (
                StatusCode::BAD_REQUEST,
                BAD_REQUEST,
                format!(
                    "购物车最多 {MAX_LINES} 种商品 A cart holds {MAX_LINES} different products at most."
                ),
            ),
            WebError::CartShort => (
                StatusCode::CONFLICT,
                CONFLICT,
                "购物车中有商品库存不足或已下架，请调整后再结算。Some of your cart is no longer \
                 available in that quantity; please change it and check out again. Nothing \
                 was reserved."
                    .into(),
            ),
            WebError::Undrawable => (
                StatusCode::BAD_GATEWAY,
                REFUSED,
                "The payment could not be started. Please contact the shop.".into(),
            ),
            WebError::Template(_) | WebError::Cookie => {
                (StatusCode::INTERNAL_SERVER_ERROR, BROKEN, TRY_AGAIN.into())
            }
        }
    }
}

impl ResponseError for WebError {
    fn status_code(&self) -> StatusCode {
        self.explain().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, headline, detail) = self.explain();
        log(status, self);
        let retry_url = match self {
            WebError::Checkout(e) => e.retry().map(|no| format!("/pay/{no}")),
            WebError::CartShort => Some("/cart".to_owned()),
            _ => None,
        };
        let view = ErrorView {
            status,
            headline,
            detail,
            retry_url,
        };
        // Drawn in a neutral chrome here; `render_error_pages` redraws it in the shop's.
        let neutral = Chrome {
            shop_name: String::new(),
            sandbox: false,
            cart_items: 0,
            icp_beian: None,
            shop_contact: None,
        };
        let mut response = match view.render(neutral) {
            Some(body) => HttpResponse::build(status)
                .content_type("text/html; charset=utf-8")
                .body(body),
            None => HttpResponse::build(status).finish(),
        };
        response.extensions_mut().insert(view);
        if status == StatusCode::TOO_MANY_REQUESTS {
            response.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from_static("60"),
            );
        }
        response
    }
}

/// The seed front end's failure: `{"flag": false, "code": 20001, "message": …}` with the
/// status of the same failure's page.
pub fn json_failure(e: &CheckoutError) -> HttpResponse {
    let (status, headline, detail) = explain(e);
    log(status, e);
    let message = match e {
        // Said to a program, as the seed said it.
        CheckoutError::AmountMismatch | CheckoutError::NotPayable(_) => detail,
        _ => format!("{headline}: {detail}"),
    };
    HttpResponse::build(status).json(ResultBody::<()> {
        flag: false,
        code: super::seed::ERROR,
        message,
        data: None,
    })
}

/// WeChat's answer to a notify that was not recorded: `FAIL` with a short reason (WeChat
/// delivers it again). The checkout has logged and counted it.
pub fn notify_failure(e: &CheckoutError) -> HttpResponse {
    let reason = match e {
        CheckoutError::NotifyRefused { refusal, .. } => refusal.reason(),
        _ => "temporarily unavailable",
    };
    super::notify::xml_answer(fail_answer(reason))
}
