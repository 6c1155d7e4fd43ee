//! Operations endpoints: health (and, later, metrics).

use actix_web::{web, HttpResponse};

use crate::store::Store;

/// 200 when the database answers, 503 otherwise.
pub async fn healthz(store: web::Data<Store>) -> HttpResponse {
    match store.ping().await {
        Ok(()) => HttpResponse::Ok().content_type("text/plain").body("ok\n"),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            HttpResponse::ServiceUnavailable()
                .content_type("text/plain")
                .body("database unavailable\n")
        }
    }
}
