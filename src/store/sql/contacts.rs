//! Buyers' contact details: sealed when an order is placed, opened for its pages, re-sealed
//! under the current key (and the plaintext of before sealed), anonymised after the retention
//! period, exported or deleted per buyer, and the log of who looked. The sealing itself is
//! `store/contacts.rs`.

use super::*;
use crate::store::contacts::{ContactKeys, Sealed};
use crate::store::{BuyerData, ContactAccess};

/// Columns of a contact row: the sealed value, and the plaintext of rows from before sealing.
pub(super) const CONTACT_COLUMNS: &str = "c.sealed, c.name, c.phone, c.address, c.email, c.note";

/// Order `no`'s contact row as stored: opened when sealed, as it is when from before sealing;
/// `None` when there is none (a row of a left join without a contact).
pub(super) fn contact_from_row(
    keys: &ContactKeys,
    no: &str,
    row: &DbRow,
) -> Result<Option<Contact>, StoreError> {
    if let Some(sealed) = row.try_get::<Option<String>, _>("sealed")? {
        return keys.open(no, &sealed).map(Some);
    }
    let contact = Contact {
        name: row.try_get("name")?,
        phone: row.try_get("phone")?,
        address: row.try_get("address")?,
        email: row.try_get("email")?,
        note: row.try_get("note")?,
    };
    Ok((!contact.is_empty()).then_some(contact))
}

/// Seals and stores an order's contact inside `tx` (the order's creation).
pub(super) async fn insert_in(
    tx: &mut Tx<'_>,
    keys: &ContactKeys,
    no: &str,
    contact: &Contact,
) -> Result<(), StoreError> {
    let sealed = keys.seal(no, contact)?;
    sqlx::query(
        "INSERT INTO order_contacts (out_trade_no, sealed, key_id, phone_hash, name_hash)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(no)
    .bind(&sealed.sealed)
    .bind(&sealed.key_id)
    .bind(&sealed.phone_hash)
    .bind(&sealed.name_hash)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Replaces order `no`'s contact with `sealed` inside `tx`, emptying any plaintext — only if
/// the row is still under `was` (the key it was read under; `None`: plaintext), so a contact
/// deleted or anonymised meanwhile is not brought back. False when it was not replaced.
async fn reseal_in(
    tx: &mut Tx<'_>,
    no: &str,
    was: Option<&str>,
    sealed: &Sealed,
) -> Result<bool, StoreError> {
    let mut query = sqlx::QueryBuilder::<Kind>::new("UPDATE order_contacts SET sealed = ");
    query.push_bind(&sealed.sealed);
    query.push(", key_id = ");
    query.push_bind(&sealed.key_id);
    query.push(", phone_hash = ");
    query.push_bind(&sealed.phone_hash);
    query.push(", name_hash = ");
    query.push_bind(&sealed.name_hash);
    query.push(
        ", name = NULL, phone = NULL, address = NULL, email = NULL, note = NULL \
         WHERE out_trade_no = ",
    );
    query.push_bind(no);
    match was {
        Some(id) => {
            query.push(" AND key_id = ");
            query.push_bind(id);
        }
        None => {
            query.push(" AND key_id IS NULL");
        }
    }
    Ok(query.build().execute(&mut **tx).await?.rows_affected() == 1)
}

impl Db {
    /// The key ring in use now.
    pub(super) fn keys(&self) -> std::sync::Arc<ContactKeys> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn set_keys(&self, keys: ContactKeys) {
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = std::sync::Arc::new(keys);
    }

    /// The key generated when none was configured, if one was.
    pub async fn generated_contact_key(&self) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT key FROM contact_key WHERE id = 1")
                .fetch_optional(&self.writer)
                .await?,
        )
    }

    /// Stores a generated key unless one exists (another replica's may have been first);
    /// returns the one stored.
    pub async fn store_generated_contact_key(&self, key: &str) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO contact_key (id, key, created_at) VALUES (1, $1, $2)
             ON CONFLICT DO NOTHING",
        )
        .bind(key)
        .bind(now_secs())
        .execute(&self.writer)
        .await?;
        Ok(
            sqlx::query_scalar("SELECT key FROM contact_key WHERE id = 1")
                .fetch_one(&self.writer)
                .await?,
        )
    }

    /// The buyer's contact given with an order, if any.
    pub async fn order_contact(&self, no: &OutTradeNo) -> Result<Option<Contact>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CONTACT_COLUMNS} FROM order_contacts c WHERE c.out_trade_no = $1"
        ))
        .bind(no.as_str())
        .fetch_optional(&self.reader)
        .await?;
        match row {
            Some(row) => contact_from_row(&self.keys(), no.as_str(), &row),
            None => Ok(None),
        }
    }

    /// Re-seals up to `limit` contacts that are not sealed under the current key (sealed under
    /// an older key of the ring, or plaintext from before sealing), each with fresh search
    /// hashes. Returns how many were re-sealed; rows under a key the ring lacks are left.
    pub async fn reseal_contacts(&self, limit: i64) -> Result<usize, StoreError> {
        let keys = self.keys();
        let Some(current) = keys.current_id() else {
            return Ok(0);
        };
        let mut query = sqlx::QueryBuilder::<Kind>::new(format!(
            "SELECT c.out_trade_no, c.key_id, {CONTACT_COLUMNS} FROM order_contacts c \
             WHERE c.key_id IS NULL"
        ));
        let older: Vec<String> = keys.ids().into_iter().skip(1).collect();
        if !older.is_empty() {
            query.push(" OR c.key_id IN (");
            let mut list = query.separated(", ");
            for id in &older {
                list.push_bind(id.as_str());
            }
            query.push(")");
        }
        query.push(" ORDER BY c.out_trade_no LIMIT ");
        query.push_bind(limit);
        let rows = query.build().fetch_all(&self.writer).await?;
        let mut tx = self.writer.begin().await?;
        let mut done = 0;
        for row in &rows {
            let no: String = row.try_get("out_trade_no")?;
            let was: Option<String> = row.try_get("key_id")?;
            let Some(contact) = contact_from_row(&keys, &no, row)? else {
                // A row from before sealing with nothing in it: nothing to keep.
                sqlx::query(
                    "DELETE FROM order_contacts WHERE out_trade_no = $1 AND key_id IS NULL",
                )
                .bind(&no)
                .execute(&mut *tx)
                .await?;
                continue;
            };
            let sealed = keys.seal(&no, &contact)?;
            debug_assert_eq!(sealed.key_id, current);
            if reseal_in(&mut tx, &no, was.as_deref(), &sealed).await? {
                done += 1;
            }
        }
        tx.commit().await?;
        Ok(done)
    }

    /// How many contacts are stored under each key (`None`: plaintext from before sealing).
    pub async fn contacts_by_key(&self) -> Result<Vec<(Option<String>, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT key_id, CAST(COUNT(*) AS BIGINT) FROM order_contacts GROUP BY key_id",
        )
        .fetch_all(&self.reader)
        .await?)
    }

    /// Removes the contact of up to `limit` orders finished before `before` (paid or closed,
    /// nothing owed back, no refund under way; the last change of the order counts), each with
    /// an event on its timeline that says so without the data. The order, its items, payments
    /// and refunds stay. Returns the orders anonymised.
    pub async fn anonymise_contacts(
        &self,
        before: i64,
        limit: i64,
    ) -> Result<Vec<OutTradeNo>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT c.out_trade_no FROM order_contacts c
             JOIN orders o ON o.out_trade_no = c.out_trade_no
             WHERE o.status IN ('paid', 'closed') AND o.refund_due = 0 AND o.updated_at < $1
               AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.out_trade_no = o.out_trade_no
                               AND r.status IN ('requested', 'processing'))
             ORDER BY o.updated_at LIMIT $2",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(&self.writer)
        .await?;
        let now = now_secs();
        let mut tx = self.writer.begin().await?;
        let mut done = Vec::with_capacity(rows.len());
        for no in rows {
            if remove_contact(&mut tx, &no, now, "contact_anonymised", "retention").await? {
                done.push(stored_no(&no, "order_contacts.out_trade_no")?);
            }
        }
        tx.commit().await?;
        for no in &done {
            self.cache.invalidate(no.as_str());
        }
        Ok(done)
    }

    /// Every order of the buyer of order `no` with its contact: the orders whose phone is the
    /// same (through the search hashes), or only this one when it has no phone. Empty when it
    /// has no contact.
    pub async fn buyer_data(&self, no: &OutTradeNo) -> Result<Vec<BuyerData>, StoreError> {
        let keys = self.keys();
        let Some(contact) = self.order_contact(no).await? else {
            return Ok(Vec::new());
        };
        let Some(phone) = contact.phone.clone() else {
            return Ok(vec![BuyerData {
                out_trade_no: no.clone(),
                contact,
            }]);
        };
        let mut query = sqlx::QueryBuilder::<Kind>::new(format!(
            "SELECT c.out_trade_no, {CONTACT_COLUMNS} FROM order_contacts c WHERE c.out_trade_no = "
        ));
        query.push_bind(no.as_str());
        query.push(" OR c.phone_hash IN (");
        let mut list = query.separated(", ");
        for hash in keys.phone_hashes(&phone) {
            list.push_bind(hash);
        }
        query.push(") ORDER BY c.out_trade_no");
        let rows = query.build().fetch_all(&self.reader).await?;
        let mut data = Vec::with_capacity(rows.len());
        for row in &rows {
            let order: String = row.try_get("out_trade_no")?;
            if let Some(contact) = contact_from_row(&keys, &order, row)? {
                data.push(BuyerData {
                    out_trade_no: stored_no(&order, "order_contacts.out_trade_no")?,
                    contact,
                });
            }
        }
        Ok(data)
    }

    /// Deletes the contact of every order of the buyer of order `no` (see
    /// [`Db::buyer_data`]), each with an event naming `actor` and not the data. Returns the
    /// orders whose contact went.
    pub async fn delete_buyer(
        &self,
        no: &OutTradeNo,
        actor: &str,
    ) -> Result<Vec<OutTradeNo>, StoreError> {
        let orders = self.buyer_data(no).await?;
        let now = now_secs();
        let mut tx = self.writer.begin().await?;
        let mut done = Vec::with_capacity(orders.len());
        for order in orders {
            let no = order.out_trade_no.as_str();
            if remove_contact(&mut tx, no, now, "contact_deleted", actor).await? {
                done.push(order.out_trade_no);
            }
        }
        tx.commit().await?;
        for no in &done {
            self.cache.invalidate(no.as_str());
        }
        Ok(done)
    }

    /// Records that a console session saw, exported or deleted buyers' details.
    pub async fn record_contact_access(
        &self,
        session: &str,
        action: &str,
        subject: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO contact_access (at, session, action, subject) VALUES ($1, $2, $3, $4)",
        )
        .bind(now_secs())
        .bind(session)
        .bind(action)
        .bind(subject.chars().take(200).collect::<String>())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// The latest `limit` records of the access log, newest first.
    pub async fn contact_access(&self, limit: i64) -> Result<Vec<ContactAccess>, StoreError> {
        let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
            "SELECT at, session, action, subject FROM contact_access ORDER BY at DESC, id DESC
             LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(at, session, action, subject)| ContactAccess {
                at: time(at),
                session,
                action,
                subject,
            })
            .collect())
    }
}

/// Deletes order `no`'s contact inside `tx`, with what else the order kept of its buyer — the
/// client's address (per-client limits) and the cart key (which digests the contact) — noting
/// `kind` on its timeline. False when it had none.
async fn remove_contact(
    tx: &mut Tx<'_>,
    no: &str,
    now: i64,
    kind: &str,
    actor: &str,
) -> Result<bool, StoreError> {
    let gone = sqlx::query("DELETE FROM order_contacts WHERE out_trade_no = $1")
        .bind(no)
        .execute(&mut **tx)
        .await?
        .rows_affected()
        == 1;
    if gone {
        sqlx::query("UPDATE orders SET cart = NULL, client = NULL WHERE out_trade_no = $1")
            .bind(no)
            .execute(&mut **tx)
            .await?;
        super::console::add_event(tx, no, now, kind, actor, "").await?;
    }
    Ok(gone)
}
