//! Order changes between replicas (see `checkout/push.rs`): on PostgreSQL each change is sent
//! with `NOTIFY` on [`CHANNEL`] and every replica `LISTEN`s; an SQLite database has one process,
//! so there is nothing to send.

use std::time::Duration;

use super::{Backend, Store, StoreError};
use crate::domain::OutTradeNo;

/// The channel order changes travel on: payloads are `"{origin} {out_trade_no} {change}"`, the
/// origin naming the process that sent it (so it can pass over its own).
pub const CHANNEL: &str = "wxpay_order_changes";

/// Other replicas' order changes, as they arrive.
pub struct OrderChanges {
    listener: sqlx::postgres::PgListener,
}

impl OrderChanges {
    /// The next change: who sent it, the order number and what happened. A lost connection is
    /// re-made (changes sent meanwhile are lost: pages still poll).
    pub async fn next(&mut self) -> Option<(String, String, String)> {
        loop {
            match self.listener.recv().await {
                Ok(notification) => {
                    let mut parts = notification.payload().splitn(3, ' ');
                    if let (Some(origin), Some(no), Some(change)) =
                        (parts.next(), parts.next(), parts.next())
                    {
                        return Some((origin.to_owned(), no.to_owned(), change.to_owned()));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "listening for order changes: retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

impl Store {
    /// Sends an order change to the other replicas (PostgreSQL; nothing on SQLite).
    pub async fn notify_order_change(
        &self,
        origin: &str,
        no: &OutTradeNo,
        change: &str,
    ) -> Result<(), StoreError> {
        let Backend::Postgres(db) = &self.backend else {
            return Ok(());
        };
        let payload = format!("{origin} {no} {change}");
        self.rt
            .run(async {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHANNEL)
                    .bind(&payload)
                    .execute(&db.writer)
                    .await
            })
            .await?;
        Ok(())
    }

    /// Listens for the other replicas' order changes (PostgreSQL; `None` on SQLite).
    pub async fn listen_order_changes(&self) -> Result<Option<OrderChanges>, StoreError> {
        let Backend::Postgres(db) = &self.backend else {
            return Ok(None);
        };
        let listener = self
            .rt
            .run(async {
                let mut listener = sqlx::postgres::PgListener::connect_with(&db.writer).await?;
                listener.listen(CHANNEL).await?;
                Ok::<_, sqlx::Error>(listener)
            })
            .await?;
        Ok(Some(OrderChanges { listener }))
    }
}
