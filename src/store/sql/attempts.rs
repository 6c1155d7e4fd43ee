//! Payment attempts: each way of paying an order as its own WeChat order (see the migration
//! `payment_attempts`). An order paid by QR code alone has none; its first H5 or JSAPI attempt
//! brings its QR code's in too, so every number WeChat could take money under is known and the
//! ones that did not pay can be closed there.

use super::*;
use crate::domain::PayWay;

const ATTEMPT_COLUMNS: &str = "attempt_no, order_no, trade_type, openid, client_ip, prepay_id, \
     prepay_expires_at, sign_type, wechat_state, created_at, closed_at";

fn attempt_from_row(row: &DbRow) -> Result<Attempt, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("payment_attempts.{what}"));
    let trade_type: String = row.try_get("trade_type")?;
    let prepay = match (
        row.try_get::<Option<String>, _>("prepay_id")?,
        row.try_get::<Option<i64>, _>("prepay_expires_at")?,
        row.try_get::<Option<String>, _>("sign_type")?,
    ) {
        (Some(prepay_id), Some(expires_at), Some(sign_type)) => Some(AttemptPrepay {
            prepay_id,
            expires_at: time(expires_at),
            sign_type: sign_type.parse().map_err(|_| corrupt("sign_type"))?,
        }),
        _ => None,
    };
    Ok(Attempt {
        attempt_no: stored_no(&row.try_get::<String, _>("attempt_no")?, "attempt_no")?,
        order_no: stored_no(&row.try_get::<String, _>("order_no")?, "order_no")?,
        way: PayWay::from_trade_type(&trade_type).ok_or_else(|| corrupt("trade_type"))?,
        openid: row.try_get("openid")?,
        client_ip: row.try_get("client_ip")?,
        prepay,
        wechat_state: row.try_get("wechat_state")?,
        created_at: time(row.try_get("created_at")?),
        closed_at: row.try_get::<Option<i64>, _>("closed_at")?.map(time),
    })
}

/// Brings an order's QR code in as one of its attempts, once it has another (no-op otherwise,
/// or when it has no QR code yet).
pub(super) async fn native_attempt(tx: &mut Tx<'_>, no: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO payment_attempts
             (attempt_no, order_no, trade_type, prepay_id, prepay_expires_at, sign_type,
              created_at)
         SELECT out_trade_no, out_trade_no, 'NATIVE', prepay_id, code_url_expires_at, sign_type,
                created_at
         FROM orders WHERE out_trade_no = $1 AND attempts > 0 AND code_url IS NOT NULL
         ON CONFLICT DO NOTHING",
    )
    .bind(no)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Db {
    /// The order's attempt for `way`, made if it has none: `None` when the order is not
    /// pending (a new attempt for a finished order is never made). `openid` and `client_ip`
    /// are kept from the first time: a re-entry at WeChat must repeat them.
    pub async fn open_attempt(
        &self,
        order_no: &OutTradeNo,
        way: PayWay,
        attempt_no: &OutTradeNo,
        openid: Option<&str>,
        client_ip: Option<&str>,
    ) -> Result<Option<Attempt>, StoreError> {
        let now = now_secs();
        sqlx::query(
            "INSERT INTO payment_attempts
                 (attempt_no, order_no, trade_type, openid, client_ip, created_at)
             SELECT $1, out_trade_no, $2, $3, $4, $5 FROM orders
             WHERE out_trade_no = $6 AND status = 'pending'
             ON CONFLICT DO NOTHING",
        )
        .bind(attempt_no.as_str())
        .bind(way.trade_type())
        .bind(openid)
        .bind(client_ip)
        .bind(now)
        .bind(order_no.as_str())
        .execute(&self.writer)
        .await?;
        let attempt = self.attempt(attempt_no).await?;
        Ok(attempt.filter(|a| a.order_no == *order_no && a.way == way))
    }

    /// An attempt by its number at WeChat.
    pub async fn attempt(&self, attempt_no: &OutTradeNo) -> Result<Option<Attempt>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ATTEMPT_COLUMNS} FROM payment_attempts WHERE attempt_no = $1"
        ))
        .bind(attempt_no.as_str())
        .fetch_optional(&self.writer)
        .await?;
        row.as_ref().map(attempt_from_row).transpose()
    }

    /// An order's attempts, oldest first.
    pub async fn attempts_of(&self, order_no: &OutTradeNo) -> Result<Vec<Attempt>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ATTEMPT_COLUMNS} FROM payment_attempts WHERE order_no = $1
             ORDER BY created_at, attempt_no"
        ))
        .bind(order_no.as_str())
        .fetch_all(&self.writer)
        .await?;
        rows.iter().map(attempt_from_row).collect()
    }

    /// Keeps the prepay WeChat gave an attempt. The first one counts the attempt on its order
    /// (from then on the reconciliation job asks about it) and brings the order's QR code in as
    /// an attempt too. Recorded whatever the order's state: WeChat has the attempt either way,
    /// and one that did not pay is closed there.
    pub async fn record_attempt_prepay(
        &self,
        attempt_no: &OutTradeNo,
        prepay: &AttemptPrepay,
    ) -> Result<(), StoreError> {
        let now = now_secs();
        let mut tx = self.writer.begin().await?;
        let first: Option<String> = sqlx::query_scalar(
            "UPDATE payment_attempts SET prepay_id = $1, prepay_expires_at = $2, sign_type = $3
             WHERE attempt_no = $4 AND prepay_id IS NULL
             RETURNING order_no",
        )
        .bind(&prepay.prepay_id)
        .bind(prepay.expires_at.timestamp())
        .bind(prepay.sign_type.as_str())
        .bind(attempt_no.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(order_no) = first else {
            // A re-entry: WeChat answered with the same prepay; keep its (longer) life.
            sqlx::query(
                "UPDATE payment_attempts SET prepay_id = $1, prepay_expires_at = $2
                 WHERE attempt_no = $3",
            )
            .bind(&prepay.prepay_id)
            .bind(prepay.expires_at.timestamp())
            .bind(attempt_no.as_str())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(());
        };
        sqlx::query(
            "UPDATE orders SET attempts = attempts + 1, updated_at = $1 WHERE out_trade_no = $2",
        )
        .bind(now)
        .bind(&order_no)
        .execute(&mut *tx)
        .await?;
        native_attempt(&mut tx, &order_no).await?;
        let way: String =
            sqlx::query_scalar("SELECT trade_type FROM payment_attempts WHERE attempt_no = $1")
                .bind(attempt_no.as_str())
                .fetch_one(&mut *tx)
                .await?;
        super::console::add_event(
            &mut tx,
            &order_no,
            now,
            "prepay",
            "wechat",
            &format!("{way} {attempt_no} {}", prepay.prepay_id),
        )
        .await?;
        tx.commit().await?;
        self.cache.invalidate(&order_no);
        Ok(())
    }

    /// Notes the trade_state WeChat reported for an attempt.
    pub async fn note_attempt_state(
        &self,
        attempt_no: &OutTradeNo,
        state: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE payment_attempts SET wechat_state = $1 WHERE attempt_no = $2")
            .bind(state)
            .bind(attempt_no.as_str())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Marks an attempt over at WeChat (closed there); true when this call did.
    pub async fn close_attempt(
        &self,
        attempt_no: &OutTradeNo,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let order_no: Option<String> = sqlx::query_scalar(
            "UPDATE payment_attempts SET closed_at = $1 WHERE attempt_no = $2 AND closed_at IS NULL
             RETURNING order_no",
        )
        .bind(now.timestamp())
        .bind(attempt_no.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(order_no) = &order_no {
            super::console::add_event(
                &mut tx,
                order_no,
                now.timestamp(),
                "attempt_closed",
                "wechat",
                attempt_no.as_str(),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(order_no.is_some())
    }

    /// Attempts WeChat may still take money for although their order is over (paid another
    /// way, or closed) and that are old enough to close (`made_before`: WeChat refuses to close
    /// an order in its first 5 minutes), oldest first.
    pub async fn spare_attempts(
        &self,
        made_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Attempt>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM payment_attempts a JOIN orders o ON o.out_trade_no = a.order_no
             WHERE a.closed_at IS NULL AND a.prepay_id IS NOT NULL AND o.status <> 'pending'
               AND a.attempt_no <> COALESCE(o.paid_no, o.out_trade_no) AND a.created_at <= $1
             ORDER BY a.created_at LIMIT $2",
            ATTEMPT_COLUMNS
                .split(", ")
                .map(|c| format!("a.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .bind(made_before.timestamp())
        .bind(limit)
        .fetch_all(&self.writer)
        .await?;
        rows.iter().map(attempt_from_row).collect()
    }
}
