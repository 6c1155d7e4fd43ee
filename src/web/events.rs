//! `GET /pay/{out_trade_no}/events`: the pay page's Server-Sent Events. First the order's state
//! as it stands (so a page that connects after the change still hears it), then each change the
//! checkout announces (`paid`, `payerror`, `closed`, `refunded`), a comment line every
//! [`HEARTBEAT`](crate::checkout::push::HEARTBEAT) so proxies keep a quiet stream open, and the
//! end when the shop shuts down or the page goes away. Past the limits on open streams the answer is `429` and the page polls.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};

use super::{AppState, WebError};
use crate::checkout::push::{Listener, Message};
use crate::checkout::{loggable, trade_state};
use crate::domain::OrderStatus;

/// The stream's body: the first event, then what the checkout hands this page — polled
/// straight from its channel, no task of its own. Dropping it (the page went away) frees the
/// page's place.
struct Events {
    first: Option<Bytes>,
    listener: Listener,
}

impl futures_core::Stream for Events {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        self.listener.messages.poll_recv(cx).map(|message| {
            message.map(|message| {
                Ok(match message {
                    Message::Change(change) => event(change.as_str()),
                    Message::Heartbeat => Bytes::from_static(b": ping\n\n"),
                })
            })
        })
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
    let (order, listener) = state.checkout.order_events(&no, &shopper).await?;
    let now = match order.status {
        OrderStatus::Paid => "paid",
        OrderStatus::Closed if order.refunded_fee.0 > 0 => "refunded",
        OrderStatus::Closed => "closed",
        OrderStatus::Pending if trade_state(&order) == crate::wxpay::TradeState::PayError => {
            "payerror"
        }
        OrderStatus::Pending => "pending",
    };
    let first = Bytes::from(format!("retry: 3000\n\nevent: state\ndata: {now}\n\n"));
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(Events {
            first: Some(first),
            listener,
        }))
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
