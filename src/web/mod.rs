//! HTTP: the routes shoppers, WeChat Pay and operators reach. Handlers translate between HTTP
//! and the store / protocol modules; they hold no business rules of their own.

pub mod ops;

use actix_web::web;

/// Registers every route of the shop.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(ops::healthz));
}
