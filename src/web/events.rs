//! `GET /pay/{out_trade_no}/events`: the pay page's Server-Sent Events. First the order's state
//! as it stands (so a page that connects after the change still hears it), then each change the
//! checkout announces (`paid`, `payerror`, `closed`, `refunded`), a comment line every
//! [`HEARTBEAT`] so proxies keep a quiet stream open, and the end when the shop shuts down or the
//! page goes away. Past the limits on open streams the answer is `429` and the page polls.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use tokio::sync::{broadcast, mpsc};

use super::{AppState, WebError};
use crate::checkout::{loggable, trade_state};
use crate::domain::OrderStatus;

/// How often a quiet stream gets a comment line: it keeps proxies from closing it, and a write
/// is how a page that went away is noticed (the second write after it left fails).
pub const HEARTBEAT: Duration = Duration::from_secs(5);

/// The stream's body: what the pump task sends.
struct Events(mpsc::Receiver<Bytes>);

impl futures_core::Stream for Events {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|bytes| bytes.map(Ok))
    }
}

fn event(state: &str) -> Bytes {
    Bytes::from(format!("event: state\ndata: {state}\n\n"))
}

#[tracing::instrument(name = "pay_events", skip_all, fields(out_trade_no = %loggable(&no)))]
pub async fn events(
    state: web::Data<AppState>,
    req: HttpRequest,
    no: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    let shopper = state.shopper(&req);
    let (order, mut listener) = state.checkout.order_events(&no, &shopper).await?;
    let now = match order.status {
        OrderStatus::Paid => "paid",
        OrderStatus::Closed if order.refunded_fee.0 > 0 => "refunded",
        OrderStatus::Closed => "closed",
        OrderStatus::Pending if trade_state(&order) == crate::wxpay::TradeState::PayError => {
            "payerror"
        }
        OrderStatus::Pending => "pending",
    };
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let first = Bytes::from(format!(
        "retry: 3000\n\n{}",
        String::from_utf8_lossy(&event(now))
    ));
    actix_web::rt::spawn(async move {
        if tx.send(first).await.is_err() {
            return;
        }
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
        loop {
            let next = tokio::select! {
                _ = listener.closing.cancelled() => break,
                _ = tx.closed() => break,
                _ = heartbeat.tick() => Bytes::from_static(b": ping\n\n"),
                change = listener.changes.recv() => match change {
                    Ok(change) => event(change.as_str()),
                    // Fell behind: the page asks the shop.
                    Err(broadcast::error::RecvError::Lagged(_)) => event("changed"),
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            };
            if tx.send(next).await.is_err() {
                break;
            }
        }
        drop(listener);
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(Events(rx)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkout::OrderChange;

    #[test]
    fn events_are_one_line_each() {
        assert_eq!(
            &event(OrderChange::Paid.as_str())[..],
            b"event: state\ndata: paid\n\n"
        );
    }
}
