//! The stylesheet, the pay page's script and WeChat Pay's mark, compiled into the binary: the shop is one file
//! and loads nothing from elsewhere.

use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{web, HttpResponse};

use super::WebError;

const FILES: [(&str, &str, &str); 3] = [
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../static/app.css"),
    ),
    (
        "pay.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/pay.js"),
    ),
    (
        "wechatpay.svg",
        "image/svg+xml",
        include_str!("../../static/wechatpay.svg"),
    ),
];

pub async fn serve(file: web::Path<String>) -> Result<HttpResponse, WebError> {
    let (_, content_type, body) = FILES
        .iter()
        .find(|(name, _, _)| *name == file.as_str())
        .ok_or(WebError::NoSuchFile)?;
    Ok(HttpResponse::Ok()
        .content_type(*content_type)
        .insert_header(CacheControl(vec![
            CacheDirective::Public,
            CacheDirective::MaxAge(3600),
        ]))
        .body(*body))
}
