//! The ceiling for load benchmarks: a bare actix-web endpoint with the shop's worker count,
//! answering a small JSON body. Every figure in `scripts/bench` is reported as a share of it.
//!
//! Usage: `bare ADDR`

use actix_web::{web, App, HttpResponse, HttpServer};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".into());
    HttpServer::new(|| {
        App::new().route(
            "/",
            web::get().to(|| async {
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body(r#"{"flag":true,"code":20000,"message":"OK","data":null}"#)
            }),
        )
    })
    .bind(addr)?
    .run()
    .await
}
