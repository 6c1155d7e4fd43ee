//! What one client can hold of the shop: a request body must arrive within a deadline (a
//! connection that trickles one byte every few seconds is cut off), and the server takes no
//! more connections than its open-file limit allows. (Headers have actix-web's own deadline,
//! 5 s; bodies are bounded in size per route.)

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::dev::{Payload, ServiceRequest};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::HttpMessage;
use futures_core::Stream;

/// Gives the request's body `limit` to arrive in full; past it the body ends in an error (the
/// handler answers, and the connection, whose body was never read, is closed). Requests without
/// a body are left as they are: no timer on the hot GET paths.
pub fn with_body_deadline(mut req: ServiceRequest, limit: Duration) -> ServiceRequest {
    let headers = req.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0");
    if has_body {
        let body = Deadline {
            body: req.take_payload(),
            deadline: Box::pin(tokio::time::sleep(limit)),
        };
        req.set_payload(Payload::from(
            Box::pin(body) as Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>>
        ));
    }
    req
}

/// A body that fails once its deadline passes.
struct Deadline {
    body: Payload,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request body did not arrive in time",
            )))));
        }
        Pin::new(&mut self.body).poll_next(cx)
    }
}

/// Connections each of `workers` may hold: what the process's open-file limit leaves after a
/// reserve for the database, WeChat and the log, shared out.
pub fn max_connections_per_worker(workers: usize) -> usize {
    const RESERVE: usize = 128;
    let limit = open_file_limit().unwrap_or(1024);
    (limit.saturating_sub(RESERVE) / workers.max(1)).max(16)
}

/// The soft limit on open files (Linux: `/proc/self/limits`).
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_follow_the_open_file_limit() {
        let limit = open_file_limit().expect("Linux reports its limits");
        assert!(limit > 0);
        assert_eq!(max_connections_per_worker(2), ((limit - 128) / 2).max(16));
        assert!(max_connections_per_worker(1_000_000) >= 16);
    }
}
