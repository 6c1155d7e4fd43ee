//! Creating orders (stock reserved in the same transaction), reading them through the cache,
//! and storing their prepay.

use super::*;
use crate::store::contacts::ContactKeys;

impl Db {
    /// Creates an order for `items`, reserving their stock, in one transaction: either every
    /// line is reserved and the order exists, or nothing changed. Payment is due within `ttl`.
    pub async fn create_order(
        &self,
        request: &OrderRequest,
        now: DateTime<Utc>,
    ) -> Result<Order, CreateOrderError> {
        let keys = self.keys();
        let mut tx = self.writer.begin().await?;
        let order = create_in(&mut tx, &keys, request, now).await?;
        tx.commit().await?;
        Ok(order)
    }

    /// Creates several orders in one transaction — one commit, one disk flush for all (group
    /// commit) — each in its own savepoint, so an order refused for its stock or items changes
    /// nothing and does not affect the others. A database failure fails the whole batch.
    pub async fn create_orders(
        &self,
        requests: &[&OrderRequest],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<Order, CreateOrderError>>, StoreError> {
        use sqlx::Acquire;
        let keys = self.keys();
        let mut tx = self.writer.begin().await?;
        let mut results = Vec::with_capacity(requests.len());
        for request in requests {
            let mut savepoint = (&mut tx).begin().await?;
            match create_in(&mut savepoint, &keys, request, now).await {
                Ok(order) => {
                    savepoint.commit().await?;
                    results.push(Ok(order));
                }
                Err(CreateOrderError::Store(e)) => return Err(e),
                Err(refused) => {
                    savepoint.rollback().await?;
                    results.push(Err(refused));
                }
            }
        }
        tx.commit().await?;
        Ok(results)
    }

    /// One order, if it exists (through the read cache; see `cache.rs` for how fresh).
    pub async fn order(&self, no: &OutTradeNo) -> Result<Option<Order>, StoreError> {
        if let Some(order) = self.cache.order(no.as_str()) {
            return Ok(Some(order));
        }
        let read_at = std::time::Instant::now();
        let order = self.order_now(no).await?;
        if let Some(order) = &order {
            self.cache.put_order(order, read_at);
        }
        Ok(order)
    }

    /// One order as the database has it now, past the cache (a finished order still changes
    /// when shipped; another process may have shipped it).
    pub async fn order_now(&self, no: &OutTradeNo) -> Result<Option<Order>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE out_trade_no = $1"
        ))
        .bind(no.as_str())
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(order_from_row).transpose()
    }

    /// An order's lines (they never change, so they are cached with the order).
    pub async fn order_items(
        &self,
        no: &OutTradeNo,
    ) -> Result<std::sync::Arc<Vec<OrderItem>>, StoreError> {
        if let Some(items) = self.cache.items(no.as_str()) {
            return Ok(items);
        }
        let items = std::sync::Arc::new(self.read_order_items(no).await?);
        self.cache.put_items(no.as_str(), items.clone());
        Ok(items)
    }

    async fn read_order_items(&self, no: &OutTradeNo) -> Result<Vec<OrderItem>, StoreError> {
        let rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(
            "SELECT product_id, name, unit_price, num FROM order_items
             WHERE out_trade_no = $1 ORDER BY product_id",
        )
        .bind(no.as_str())
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(product_id, name, unit_price, num)| OrderItem {
                product_id,
                name,
                unit_price: Fen(unit_price),
                num,
            })
            .collect())
    }

    /// Moves a pending order's payment deadline to `until`, while it has no prepay (a prepay's
    /// `time_expire` never changes). False when nothing changed.
    pub async fn extend_expiry(
        &self,
        no: &OutTradeNo,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE orders SET expires_at = $1, updated_at = $2
             WHERE out_trade_no = $3 AND status = 'pending' AND code_url IS NULL AND attempts = 0
               AND expires_at < $1",
        )
        .bind(until.timestamp())
        .bind(now_secs())
        .bind(no.as_str())
        .execute(&self.writer)
        .await?;
        self.cache.invalidate(no.as_str());
        Ok(done.rows_affected() == 1)
    }

    /// Stores the prepay of a pending order. Returns false when the order is no longer pending;
    /// an order closed meanwhile before it had a prepay stores it all the same (WeChat has that
    /// order now) and is watched for late money from `now`.
    pub async fn record_prepay(
        &self,
        no: &OutTradeNo,
        prepay: &Prepay,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let updated: Option<(String, i64)> = sqlx::query_as(
            "UPDATE orders SET prepay_id = $1, code_url = $2, code_url_expires_at = $3,
                               sign_type = $4, updated_at = $5,
                               watch_due_at = CASE WHEN status = 'pending' THEN watch_due_at
                                                   ELSE $5 END
             WHERE out_trade_no = $6
               AND (status = 'pending' OR (status = 'closed' AND code_url IS NULL))
             RETURNING status, attempts",
        )
        .bind(&prepay.prepay_id)
        .bind(&prepay.code_url)
        .bind(prepay.code_url_expires_at.timestamp())
        .bind(prepay.sign_type.as_str())
        .bind(now_secs())
        .bind(no.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let status = updated.as_ref().map(|(status, _)| status.as_str());
        if let Some((_, attempts)) = &updated {
            super::console::add_event(
                &mut tx,
                no.as_str(),
                now_secs(),
                "prepay",
                "wechat",
                &prepay.prepay_id,
            )
            .await?;
            // An order paid other ways too: its QR code is one of its attempts.
            if *attempts > 0 {
                super::attempts::native_attempt(&mut tx, no.as_str()).await?;
            }
        }
        tx.commit().await?;
        self.cache.invalidate(no.as_str());
        Ok(status == Some("pending"))
    }
}

/// What an order holds and for whom, as a key: `product:num` per line, in product order, then
/// a digest of the contact when there is one — the same cart for another address is another
/// order. The digest is keyed (see `contacts.rs`), so the key says nothing of the contact.
fn cart_key(
    keys: &ContactKeys,
    items: &[NewItem],
    contact: &Contact,
) -> Result<String, StoreError> {
    let mut lines: Vec<(i64, i64)> = items.iter().map(|i| (i.product_id, i.num)).collect();
    lines.sort_unstable();
    let mut key = lines
        .iter()
        .map(|(product, num)| format!("{product}:{num}"))
        .collect::<Vec<_>>()
        .join(",");
    if !contact.is_empty() {
        let parts: Vec<&str> = contact
            .fields()
            .iter()
            .map(|(_, value)| value.unwrap_or_default())
            .collect();
        let digest = keys.digest(&parts).ok_or_else(|| {
            StoreError::Corrupt("a contact needs a key and the store has none (CONTACT_KEY)".into())
        })?;
        key.push('#');
        key.push_str(&digest);
    }
    Ok(key)
}

/// A new receipt token: 128 random bits, as 32 hex digits.
fn receipt_token() -> String {
    use rand::Rng;
    hex::encode(rand::rng().random::<[u8; 16]>())
}

/// Creates one order and reserves its stock inside `tx`.
async fn create_in(
    tx: &mut Tx<'_>,
    keys: &ContactKeys,
    request: &OrderRequest,
    now: DateTime<Utc>,
) -> Result<Order, CreateOrderError> {
    let items = request.items.as_slice();
    if items.is_empty() || items.iter().any(|i| i.num <= 0) {
        return Err(CreateOrderError::Empty);
    }
    let created = now.timestamp();
    let expires = created + request.ttl.as_secs() as i64;
    let cart = cart_key(keys, items, &request.contact)?;
    if let Some(client) = &request.client {
        // The same cart, still payable: send the shopper back to it rather than reserve twice.
        let hold = client.unprepaid_hold.as_secs() as i64;
        let existing: Option<String> = sqlx::query_scalar(
            "SELECT out_trade_no FROM orders
             WHERE client = $1 AND status = 'pending' AND cart = $2 AND expires_at > $3
               AND (code_url IS NOT NULL OR created_at > $4)
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(&client.key)
        .bind(&cart)
        .bind(created)
        .bind(created - hold)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(no) = existing {
            return Err(CreateOrderError::AlreadyPending(stored_no(
                &no,
                "orders.out_trade_no",
            )?));
        }
        let pending: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM orders WHERE client = $1 AND status = 'pending'",
        )
        .bind(&client.key)
        .fetch_one(&mut **tx)
        .await?;
        if pending >= client.max_pending {
            return Err(CreateOrderError::TooManyPending);
        }
    }
    let mut lines = Vec::with_capacity(items.len());
    let mut total = Fen(0);
    for item in items {
        // Reserve only if enough is left; the condition and the decrement are one statement.
        let reserved = sqlx::query(
            "UPDATE products SET stock = stock - $1, updated_at = $2
             WHERE id = $3 AND stock >= $1 AND active = 1 RETURNING name, price_fen",
        )
        .bind(item.num)
        .bind(created)
        .bind(item.product_id)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = reserved else {
            let available: Option<i64> =
                sqlx::query_scalar("SELECT stock FROM products WHERE id = $1 AND active = 1")
                    .bind(item.product_id)
                    .fetch_optional(&mut **tx)
                    .await?;
            return Err(match available {
                None => CreateOrderError::UnknownProduct(item.product_id),
                Some(available) => CreateOrderError::NotEnoughStock {
                    product_id: item.product_id,
                    available,
                },
            });
        };
        let name: String = row.try_get("name")?;
        let price = Fen(row.try_get("price_fen")?);
        total = price
            .checked_mul(item.num)
            .and_then(|line| total.checked_add(line))
            .ok_or(CreateOrderError::TooLarge)?;
        lines.push((item, name, price));
    }
    // WeChat's total_fee is a 32-bit integer of fen.
    if total.0 > i64::from(i32::MAX) {
        return Err(CreateOrderError::TooLarge);
    }
    let no = OutTradeNo::generate(now);
    let body = order_body(
        &request.shop_name,
        &lines
            .iter()
            .map(|(item, name, _)| (name.clone(), item.num))
            .collect::<Vec<_>>(),
    );
    let product_id = items[0].product_id.to_string();
    let token = receipt_token();
    sqlx::query(
        "INSERT INTO orders (out_trade_no, total_fee, status, body, product_id, expires_at,
                             created_at, updated_at, client, cart, receipt_token)
         VALUES ($1, $2, 'pending', $3, $4, $5, $6, $6, $7, $8, $9)",
    )
    .bind(no.as_str())
    .bind(total.0)
    .bind(&body)
    .bind(&product_id)
    .bind(expires)
    .bind(created)
    .bind(request.client.as_ref().map(|c| c.key.as_str()))
    .bind(&cart)
    .bind(&token)
    .execute(&mut **tx)
    .await?;
    if !request.contact.is_empty() {
        super::contacts::insert_in(tx, keys, no.as_str(), &request.contact).await?;
    }
    for (item, name, price) in &lines {
        sqlx::query(
            "INSERT INTO order_items (out_trade_no, product_id, name, unit_price, num)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(no.as_str())
        .bind(item.product_id)
        .bind(name)
        .bind(price.0)
        .bind(item.num)
        .execute(&mut **tx)
        .await?;
    }
    Ok(Order {
        out_trade_no: no,
        total_fee: total,
        status: OrderStatus::Pending,
        body,
        product_id,
        expires_at: time(expires),
        prepay: None,
        transaction_id: None,
        pay_time: None,
        created_at: time(created),
        updated_at: time(created),
        closed_at: None,
        reconcile_attempts: 0,
        is_deleted: false,
        refund_due: false,
        refunded_fee: Fen(0),
        wechat_state: None,
        watch_step: 0,
        cash_fee: None,
        coupon_fee: None,
        receipt_token: Some(token),
        shipment: None,
        attempts: 0,
        paid_no: None,
        cancel_requested_at: None,
    })
}
