//! Operations endpoints: health and Prometheus metrics.

use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use metrics::SharedString;

use super::AppState;

/// 200 when the database answers, 503 otherwise.
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    match state.checkout.ping().await {
        Ok(()) => HttpResponse::Ok().content_type("text/plain").body("ok\n"),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            HttpResponse::ServiceUnavailable()
                .content_type("text/plain")
                .body("database unavailable\n")
        }
    }
}

/// Prometheus text format: requests by route and status, notify outcomes, order transitions,
/// WeChat API latency and errors, the payments channel's depth, reconciliation runs.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    metrics::gauge!("payments_channel_depth").set(state.checkout.payments_waiting() as f64);
    metrics::gauge!("event_streams_open").set(state.checkout.event_streams() as f64);
    let handle = crate::telemetry::metrics();
    handle.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render())
}

/// Counts every request by route pattern (never the raw path, which holds order numbers),
/// method and status.
pub fn count_request<S>(
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
    // A fixed set: a method is whatever the client sends, and every label value is kept
    // forever by the recorder.
    let method: SharedString = match *req.method() {
        Method::GET => "GET".into(),
        Method::POST => "POST".into(),
        Method::HEAD => "HEAD".into(),
        Method::PUT => "PUT".into(),
        Method::DELETE => "DELETE".into(),
        Method::OPTIONS => "OPTIONS".into(),
        _ => "other".into(),
    };
    let response = service.call(req);
    async move {
        let response = response.await?;
        // Read once routed: then the pattern comes from the matched resource, not from matching
        // the path against every route again.
        let route = response
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".into());
        metrics::counter!(
            "http_requests_total",
            "route" => route,
            "method" => method,
            "status" => response.status().as_u16().to_string()
        )
        .increment(1);
        Ok(response)
    }
}
