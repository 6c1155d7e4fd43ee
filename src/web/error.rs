//! Where every failure becomes a response, for each kind of caller: a page for the shopper
//! ([`WebError`]'s `ResponseError`), the seed front end's JSON ([`json_failure`]) and WeChat's
//! notify answer ([`notify_failure`]). A status and a sentence for the caller; the cause chain
//! goes to the log, never to the caller.

use std::borrow::Cow;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

use super::seed::ResultBody;
use super::Chrome;
use crate::checkout::cart::MAX_LINES;
use crate::checkout::{BillProblem, CheckoutError, Missing, RefundProblem, MAX_NUM};
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
    /// A URL no route answers.
    #[error("no such page")]
    NoSuchPage,
    /// A form posted from another site's page.
    #[error("a form from another origin")]
    CrossOrigin,
    /// The cart holds as many products as it may.
    #[error("the cart is full")]
    CartFull,
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
    headline: &'a Said,
    detail: &'a Said,
    retry_url: Option<&'a str>,
    chrome: Chrome,
}

/// An error page's content, kept with the response so that [`render_error_pages`] can draw it
/// in the shop's own chrome (an error knows nothing of the shop it happened in).
#[derive(Debug, Clone)]
struct ErrorView {
    status: StatusCode,
    headline: Said,
    detail: Said,
    retry_url: Option<String>,
}

impl ErrorView {
    fn render(&self, chrome: Chrome) -> Option<String> {
        ErrorPage {
            status: self.status.as_u16(),
            headline: &self.headline,
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

/// A sentence said in both languages, Chinese first; pages draw the English with `lang="en"`.
#[derive(Debug, Clone)]
struct Said {
    zh: Cow<'static, str>,
    en: Cow<'static, str>,
}

impl Said {
    fn new(zh: impl Into<Cow<'static, str>>, en: impl Into<Cow<'static, str>>) -> Said {
        Said {
            zh: zh.into(),
            en: en.into(),
        }
    }

    /// A text written "中文 English" (the checkout's bilingual messages), split after its last
    /// Chinese character; a text with none is English under the Chinese `zh`.
    fn split(text: &'static str, zh: &'static str) -> Said {
        let chinese = |c: char| matches!(c, '\u{2e80}'..='\u{9fff}' | '\u{ff00}'..='\u{ffef}');
        match text.char_indices().rfind(|(_, c)| chinese(*c)) {
            Some((at, c)) => {
                let (first, rest) = text.split_at(at + c.len_utf8());
                Said::new(first, rest.trim_start())
            }
            None => Said::new(zh, text),
        }
    }
}

impl std::fmt::Display for Said {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.zh, self.en)
    }
}

const NOT_FOUND: (&str, &str) = ("找不到", "Not found");
const BAD_REQUEST: (&str, &str) = ("请求有误", "Bad request");
const CONFLICT: (&str, &str) = ("无法完成", "Cannot do that");
const BUSY: (&str, &str) = ("微信支付暂时不可用", "WeChat Pay is busy");
const REFUSED: (&str, &str) = ("微信支付拒绝了请求", "WeChat Pay refused");
const BROKEN: (&str, &str) = ("出错了", "Something went wrong");
const TRY_AGAIN: (&str, &str) = ("请稍后再试。", "Please try again in a moment.");
const NOT_STARTED: (&str, &str) = (
    "未能发起支付，请联系商家。",
    "The payment could not be started. Please contact the shop.",
);

fn said((zh, en): (&'static str, &'static str)) -> Said {
    Said::new(zh, en)
}

/// What a missing thing is called (Chinese, English).
fn missing(what: Missing) -> (&'static str, &'static str) {
    match what {
        Missing::Order => ("没有这个订单。", "No such order."),
        Missing::Product => ("没有这个商品。", "No such product."),
        Missing::BillDay => ("这一天还没有对账。", "No such reconciled day."),
        Missing::Delivery => ("没有这条通知。", "No such delivery."),
    }
}

/// A refund that cannot be made, said to the merchant.
fn refund_problem(problem: &RefundProblem) -> Said {
    let en = problem.to_string();
    let zh = match problem {
        RefundProblem::NoCertificate => "退款需要商户API证书。",
        RefundProblem::NotPaid => "只有已支付的订单可以退款。",
        RefundProblem::NothingLeft => "已没有可退的金额。",
        RefundProblem::ExceedsPaid { .. } => "退款金额超过可退金额。",
        RefundProblem::BadAmount => "退款金额须大于 ¥0.00。",
        RefundProblem::BadReason => "退款原因过长或不止一行。",
        RefundProblem::NothingDue => "此订单没有应退的款项。",
    };
    Said::new(zh, en)
}

/// A status, a headline and a sentence for the caller.
fn explain(e: &CheckoutError) -> (StatusCode, Said, Said) {
    use CheckoutError as E;
    match e {
        E::NotFound(what) => (StatusCode::NOT_FOUND, said(NOT_FOUND), said(missing(*what))),
        E::BadQuantity => (
            StatusCode::BAD_REQUEST,
            said(BAD_REQUEST),
            Said::new(
                format!("数量须为 1 到 {MAX_NUM} 的整数。"),
                format!("Quantity must be a whole number from 1 to {MAX_NUM}."),
            ),
        ),
        E::Unplaceable => (
            StatusCode::BAD_REQUEST,
            said(BAD_REQUEST),
            Said::new("无法下这个订单。", "This order cannot be placed."),
        ),
        E::AmountMismatch => (
            StatusCode::BAD_REQUEST,
            said(BAD_REQUEST),
            Said::new("金额与订单不符。", e.to_string()),
        ),
        E::OutOfStock => (
            StatusCode::CONFLICT,
            said(CONFLICT),
            Said::new("库存不足。", "Not enough stock for this order."),
        ),
        E::TooMany => (
            StatusCode::TOO_MANY_REQUESTS,
            Said::new("请求过多", "Too many orders"),
            Said::new(
                "您未付款的订单或下单次数已达上限。请先付款，或等未付款的订单过期后再试。",
                "You have placed or left unpaid as many orders as one shopper may. Please pay \
                 or wait for an unpaid order to expire, then try again.",
            ),
        ),
        E::NotPayable(_) => (
            StatusCode::CONFLICT,
            said(CONFLICT),
            Said::new(
                "此订单已无法支付。",
                format!("This order cannot be paid: {e}."),
            ),
        ),
        E::WayUnavailable(why) => (
            StatusCode::CONFLICT,
            said(CONFLICT),
            Said::split(why, "无法用这种方式支付。"),
        ),
        E::WechatBusy { .. } | E::NotSettled { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            said(BUSY),
            Said::new(
                "没有扣款，请稍后再试。",
                "Nothing was charged. Please try again in a moment.",
            ),
        ),
        E::WechatRefused(_) => (StatusCode::BAD_GATEWAY, said(REFUSED), said(NOT_STARTED)),
        E::NotifyRefused { .. } => (
            StatusCode::BAD_REQUEST,
            said(BAD_REQUEST),
            Said::new("通知未被接受。", e.to_string()),
        ),
        E::Refund(problem @ RefundProblem::NoCertificate) => (
            StatusCode::SERVICE_UNAVAILABLE,
            said(REFUSED),
            refund_problem(problem),
        ),
        E::Refund(problem) => (
            StatusCode::CONFLICT,
            said(CONFLICT),
            refund_problem(problem),
        ),
        E::Bill(BillProblem::Future) => (
            StatusCode::BAD_REQUEST,
            said(BAD_REQUEST),
            Said::new("北京时间这一天还没有开始。", e.to_string()),
        ),
        E::Bill(BillProblem::Busy) => (
            StatusCode::CONFLICT,
            said(CONFLICT),
            Said::new("这一天正在对账，请一分钟后再试。", e.to_string()),
        ),
        E::Store(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            said(BROKEN),
            said(TRY_AGAIN),
        ),
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
    fn explain(&self) -> (StatusCode, Said, Said) {
        match self {
            WebError::Checkout(e) => explain(e),
            WebError::NoSuchFile => (
                StatusCode::NOT_FOUND,
                said(NOT_FOUND),
                Said::new("没有这个文件。", "No such file."),
            ),
            WebError::NoSuchPage => (
                StatusCode::NOT_FOUND,
                Said::new("找不到页面", "Page not found"),
                Said::new(
                    "这个地址没有页面，可能已移动或输入有误。",
                    "There is no page at this address: it may have moved, or the address may be \
                     mistyped.",
                ),
            ),
            WebError::CrossOrigin => (
                StatusCode::FORBIDDEN,
                Said::new("不接受的请求", "Not accepted"),
                Said::new(
                    "请从本店的页面下单。",
                    "Orders are placed from the shop's own pages.",
                ),
            ),
            WebError::Console(e) => {
                use crate::console::ConsoleError as C;
                match e {
                    C::NoSuchOrder => (
                        StatusCode::NOT_FOUND,
                        said(NOT_FOUND),
                        said(missing(Missing::Order)),
                    ),
                    C::NoSuchProduct => (
                        StatusCode::NOT_FOUND,
                        said(NOT_FOUND),
                        said(missing(Missing::Product)),
                    ),
                    C::Invalid(problem) => (
                        StatusCode::BAD_REQUEST,
                        said(BAD_REQUEST),
                        Said::new("表单内容有误：", problem.clone()),
                    ),
                    C::Conflict(problem) => (
                        StatusCode::CONFLICT,
                        said(CONFLICT),
                        Said::new("订单当前的状态不允许这样做：", *problem),
                    ),
                    C::WrongPassword | C::LockedOut(_) => (
                        StatusCode::UNAUTHORIZED,
                        Said::new("请登录", "Sign in"),
                        Said::new("请重新登录。", "Please sign in again."),
                    ),
                    C::BadConfiguredHash | C::Hashing(_) | C::Store(_) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        said(BROKEN),
                        said(TRY_AGAIN),
                    ),
                }
            }
            WebError::CartFull => (
                StatusCode::BAD_REQUEST,
                said(BAD_REQUEST),
                Said::new(
                    format!("购物车最多 {MAX_LINES} 种商品。"),
                    format!("A cart holds {MAX_LINES} different products at most."),
                ),
            ),
            WebError::Undrawable => (StatusCode::BAD_GATEWAY, said(REFUSED), said(NOT_STARTED)),
            WebError::Template(_) | WebError::Cookie => (
                StatusCode::INTERNAL_SERVER_ERROR,
                said(BROKEN),
                said(TRY_AGAIN),
            ),
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
        CheckoutError::AmountMismatch | CheckoutError::NotPayable(_) => e.to_string(),
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

#[cfg(test)]
mod tests {
    use super::Said;

    #[test]
    fn a_bilingual_text_splits_after_its_last_chinese_character() {
        let said = Said::split(
            "这家店未开通 H5 支付 This shop does not take H5 payments.",
            "无",
        );
        assert_eq!(
            (said.zh.as_ref(), said.en.as_ref()),
            (
                "这家店未开通 H5 支付",
                "This shop does not take H5 payments."
            )
        );
        let said = Said::split("微信授权失败，请重试 WeChat did not confirm.", "无");
        assert_eq!(said.zh, "微信授权失败，请重试");
        let english = Said::split("only English", "中文");
        assert_eq!(
            (english.zh.as_ref(), english.en.as_ref()),
            ("中文", "only English")
        );
    }
}
