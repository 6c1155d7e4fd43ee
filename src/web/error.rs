//! One error type for the HTML routes: each variant is a status and a page for the shopper; the
//! cause chain goes to the log, never to the page.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("not found: {0}")]
    NotFound(&'static str),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("conflict: {0}")]
    Conflict(String),
    /// WeChat Pay did not answer, or asked to try again: nothing was changed.
    #[error("WeChat Pay unavailable: {0}")]
    WechatUnavailable(String, Option<String>),
    /// WeChat Pay refused the request.
    #[error("WeChat Pay refused: {0}")]
    WechatRefused(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
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
    sandbox: bool,
}

impl WebError {
    /// A headline and a sentence for the shopper.
    pub fn explain(&self) -> (&'static str, String) {
        match self {
            WebError::NotFound(what) => ("找不到 Not found", format!("No such {what}.")),
            WebError::BadRequest(why) => ("请求有误 Bad request", why.clone()),
            WebError::Conflict(why) => ("无法完成 Cannot do that", why.clone()),
            WebError::WechatUnavailable(..) => (
                "微信支付暂时不可用 WeChat Pay is busy",
                "Nothing was charged. Please try again in a moment.".into(),
            ),
            WebError::WechatRefused(_) => (
                "微信支付拒绝了请求 WeChat Pay refused",
                "The payment could not be started. Please contact the shop.".into(),
            ),
            WebError::Store(_) | WebError::Template(_) => (
                "出错了 Something went wrong",
                "Please try again in a moment.".into(),
            ),
        }
    }
}

impl ResponseError for WebError {
    fn status_code(&self) -> StatusCode {
        match self {
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::WechatUnavailable(..) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::WechatRefused(_) => StatusCode::BAD_GATEWAY,
            WebError::Store(_) | WebError::Template(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, "request refused");
        }
        let (headline, detail) = self.explain();
        let retry_url = match self {
            WebError::WechatUnavailable(_, retry) => retry.as_deref(),
            _ => None,
        };
        let page = ErrorPage {
            status: status.as_u16(),
            headline,
            detail: &detail,
            retry_url,
            sandbox: false,
        };
        match page.render() {
            Ok(body) => HttpResponse::build(status)
                .content_type("text/html; charset=utf-8")
                .body(body),
            Err(_) => HttpResponse::build(status).finish(),
        }
    }
}
