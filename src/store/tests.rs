//! The store against a real SQLite file in a temporary folder.

use super::*;
use crate::domain::{Fen, OrderStatus};
use crate::store::types::time;
use tempfile::TempDir;

/// The SQLite pools behind a store (for SQLite-only tests).
fn pools(store: &Store) -> (&sqlx::SqlitePool, &sqlx::SqlitePool) {
    match &store.backend {
        Backend::Sqlite(db) => (&db.writer, &db.reader),
        Backend::Postgres(_) => panic!("an SQLite store was expected"),
    }
}

/// A fresh PostgreSQL database in the cluster at `TEST_POSTGRES_URL`. Without it the
/// PostgreSQL tests are passed over — except under CI, which always provides one.
pub(crate) async fn fresh_postgres() -> Option<Store> {
    let Some(url) = std::env::var("TEST_POSTGRES_URL").ok() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "TEST_POSTGRES_URL is not set: .ci/run starts a throwaway PostgreSQL"
        );
        eprintln!("SKIPPED PostgreSQL case: set TEST_POSTGRES_URL (scripts/throwaway-postgres)");
        return None;
    };
    let name = format!(
        "store_test_{}",
        crate::wxpay::nonce_str().to_ascii_lowercase()
    );
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let base = url.rsplit_once('/').map_or(url.as_str(), |(base, _)| base);
    let store = Store::connect(&format!("{base}/{name}"), &AppRuntime::current())
        .await
        .unwrap();
    store.use_contact_keys(&[]).await.unwrap();
    Some(store)
}

impl Store {
    /// Runs a statement as it is (test set-ups).
    pub(crate) async fn raw(&self, sql: &str) -> Result<u64, sqlx::Error> {
        match &self.backend {
            Backend::Sqlite(db) => sqlx::query(sql)
                .execute(&db.writer)
                .await
                .map(|r| r.rows_affected()),
            Backend::Postgres(db) => sqlx::query(sql)
                .execute(&db.writer)
                .await
                .map(|r| r.rows_affected()),
        }
    }

    pub(crate) async fn raw_i64(&self, sql: &str) -> i64 {
        match &self.backend {
            Backend::Sqlite(db) => sqlx::query_scalar(sql).fetch_one(&db.writer).await.unwrap(),
            Backend::Postgres(db) => sqlx::query_scalar(sql).fetch_one(&db.writer).await.unwrap(),
        }
    }

    pub(crate) async fn raw_strings(&self, sql: &str) -> Vec<String> {
        match &self.backend {
            Backend::Sqlite(db) => sqlx::query_scalar(sql).fetch_all(&db.writer).await.unwrap(),
            Backend::Postgres(db) => sqlx::query_scalar(sql).fetch_all(&db.writer).await.unwrap(),
        }
    }
}

pub(crate) async fn fresh() -> (TempDir, Store) {
    let dir = TempDir::new().unwrap();
    let url = format!("sqlite://{}/nested/shop.db", dir.path().display());
    let store = Store::connect(&url, &AppRuntime::current()).await.unwrap();
    store.use_contact_keys(&[]).await.unwrap();
    (dir, store)
}

async fn insert_order(
    store: &Store,
    no: &str,
    total_fee: i64,
    status: &str,
) -> Result<u64, sqlx::Error> {
    let closed_at = if matches!(status, "failed" | "closed") {
        "1000"
    } else {
        "NULL"
    };
    store
        .raw(&format!(
            "INSERT INTO orders (out_trade_no, total_fee, status, body, product_id, expires_at,
                                 created_at, updated_at, closed_at)
             VALUES ('{no}', {total_fee}, '{status}', 'demo', '1', 1600, 1000, 1000, {closed_at})"
        ))
        .await
}

#[tokio::test]
async fn connect_creates_the_file_in_wal_mode_and_reconnects() {
    let (dir, store) = fresh().await;
    assert!(dir.path().join("nested/shop.db").exists());
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(pools(&store).0)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(pools(&store).0)
        .await
        .unwrap();
    assert_eq!(sync, 2, "synchronous=FULL");
    store.ping().await.unwrap();
    store.close().await;
    // Migrations already applied: a second start is a no-op.
    let again = Store::connect(
        &format!("sqlite://{}/nested/shop.db", dir.path().display()),
        &AppRuntime::current(),
    )
    .await
    .unwrap();
    again.ping().await.unwrap();
}

#[tokio::test]
async fn a_catalogue_import_upserts_by_sku_all_or_nothing() {
    let (_dir, store) = fresh().await;
    import_case(store).await;
    if let Some(store) = fresh_postgres().await {
        import_case(store).await;
    }
}

async fn import_case(store: Store) {
    let entry = |sku: &str, name: &str, price: i64, stock: Option<i64>| CatalogueEntry {
        sku: sku.into(),
        name: name.into(),
        price: Fen(price),
        stock,
        description: String::new(),
        active: true,
    };
    let first = [entry("A", "a", 100, Some(5)), entry("B", "b", 200, None)];
    let report = store.import_catalogue(&first, false).await.unwrap();
    assert_eq!((report.added, report.updated, report.unchanged), (2, 0, 0));
    let products = store.products().await.unwrap();
    assert_eq!(
        products
            .iter()
            .map(|p| (p.sku.as_str(), p.stock))
            .collect::<Vec<_>>(),
        [("A", 5), ("B", 0)]
    );
    // A renamed, repriced and restocked A; B untouched; C new: stock stays without a restock.
    let mut a = entry("A", "a2", 150, Some(50));
    a.description = "new".into();
    let second = [
        a.clone(),
        entry("B", "b", 200, None),
        entry("C", "c", 1, Some(3)),
    ];
    let report = store.import_catalogue(&second, false).await.unwrap();
    assert_eq!((report.added, report.updated, report.unchanged), (1, 1, 1));
    let a_now = store.product(products[0].id).await.unwrap().unwrap();
    assert_eq!(
        (
            a_now.name.as_str(),
            a_now.price,
            a_now.stock,
            a_now.description.as_str()
        ),
        ("a2", Fen(150), 5, "new")
    );
    let report = store.import_catalogue(&[a.clone()], true).await.unwrap();
    assert_eq!(report.updated, 1);
    assert_eq!(store.product(a_now.id).await.unwrap().unwrap().stock, 50);
    // One bad entry (the database's own check refuses a zero price) and nothing changes.
    let bad = [
        entry("A", "renamed", 100, None),
        entry("D", "d", 0, Some(1)),
    ];
    assert!(store.import_catalogue(&bad, true).await.is_err());
    let after = store.products().await.unwrap();
    assert_eq!(after.len(), 3);
    assert_eq!(after[0].name, "a2");
    // Deactivated: gone from the shop, still a product (its orders are served).
    let mut hidden = entry("B", "b", 200, None);
    hidden.active = false;
    store.import_catalogue(&[hidden], false).await.unwrap();
    let on_sale = store.products().await.unwrap();
    assert_eq!(
        on_sale.iter().map(|p| p.sku.as_str()).collect::<Vec<_>>(),
        ["A", "C"]
    );
    let b = store.product(products[1].id).await.unwrap().unwrap();
    assert!(!b.active);
    assert!(store
        .products_by_id(&[b.id, a_now.id])
        .await
        .unwrap()
        .iter()
        .all(|p| p.id == a_now.id));
    let err = store
        .create_order(
            &[NewItem {
                product_id: b.id,
                num: 1,
            }],
            Duration::from_secs(600),
            chrono::Utc::now(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, CreateOrderError::UnknownProduct(_)),
        "{err:?}"
    );
    // The demo seed goes only into an empty catalogue.
    assert_eq!(store.seed_catalogue(&first).await.unwrap(), 0);
}

#[tokio::test]
async fn a_product_without_a_sku_is_refused() {
    let (_dir, store) = fresh().await;
    let refused = sqlx::query(
        "INSERT INTO products (name, price_fen, stock, created_at, updated_at)
         VALUES ('x', 1, 1, 0, 0)",
    )
    .execute(pools(&store).0)
    .await;
    assert!(refused.is_err());
    let tea = store
        .insert_product(&NewProduct {
            sku: "T",
            name: "tea",
            price: Fen(1),
            stock: 1,
        })
        .await
        .unwrap();
    let refused = sqlx::query("UPDATE products SET sku = NULL WHERE id = $1")
        .bind(tea.id)
        .execute(pools(&store).0)
        .await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn an_order_keeps_its_contact_and_receipt_token() {
    let (_dir, store) = fresh().await;
    contact_case(store).await;
    if let Some(store) = fresh_postgres().await {
        contact_case(store).await;
    }
}

async fn contact_case(store: Store) {
    let tea = store
        .insert_product(&NewProduct {
            sku: "T",
            name: "tea",
            price: Fen(100),
            stock: 10,
        })
        .await
        .unwrap();
    let contact = Contact {
        name: Some("王小明".into()),
        phone: Some("13800138000".into()),
        address: Some("杭州市西湖区龙井路 1 号".into()),
        email: None,
        note: None,
    };
    let request = OrderRequest {
        items: vec![NewItem {
            product_id: tea.id,
            num: 1,
        }],
        shop_name: "茶舍".into(),
        ttl: Duration::from_secs(600),
        client: None,
        contact: contact.clone(),
    };
    let order = store
        .place_order(&request, chrono::Utc::now())
        .await
        .unwrap();
    let token = order.receipt_token.clone().unwrap();
    assert_eq!(token.len(), 32);
    let stored = store.order(&order.out_trade_no).await.unwrap().unwrap();
    assert_eq!(stored.receipt_token.as_deref(), Some(token.as_str()));
    assert_eq!(
        store.order_contact(&order.out_trade_no).await.unwrap(),
        Some(contact)
    );
    let other = store
        .place_order(&request, chrono::Utc::now())
        .await
        .unwrap();
    assert_ne!(other.receipt_token, order.receipt_token);
    // Shipped only once paid.
    assert!(!store
        .ship_order(&order.out_trade_no, "顺丰", "SF123", "merchant")
        .await
        .unwrap());
}

#[tokio::test]
async fn products_round_trip_and_constraints_hold() {
    let (_dir, store) = fresh().await;
    products_case(store).await;
    if let Some(store) = fresh_postgres().await {
        products_case(store).await;
    }
}

async fn products_case(store: Store) {
    let tea = store
        .insert_product(&NewProduct {
            sku: "S1",
            name: "龙井茶",
            price: Fen(1250),
            stock: 5,
        })
        .await
        .unwrap();
    assert_eq!(store.product(tea.id).await.unwrap(), Some(tea.clone()));
    assert_eq!(store.products().await.unwrap(), vec![tea]);
    assert_eq!(store.product(999).await.unwrap(), None);
    for bad in [
        NewProduct {
            sku: "S2",
            name: "free",
            price: Fen(0),
            stock: 1,
        },
        NewProduct {
            sku: "S3",
            name: "debt",
            price: Fen(-1),
            stock: 1,
        },
        NewProduct {
            sku: "S4",
            name: "oversold",
            price: Fen(1),
            stock: -1,
        },
        NewProduct {
            sku: "S5",
            name: "",
            price: Fen(1),
            stock: 1,
        },
    ] {
        assert!(store.insert_product(&bad).await.is_err(), "{bad:?}");
    }
    assert_eq!(store.products().await.unwrap().len(), 1);
}

#[tokio::test]
async fn orders_refuse_non_positive_amounts_and_inconsistent_states() {
    let (_dir, store) = fresh().await;
    order_constraints_case(store).await;
    if let Some(store) = fresh_postgres().await {
        order_constraints_case(store).await;
    }
}

async fn order_constraints_case(store: Store) {
    insert_order(&store, "ok1", 1, "pending").await.unwrap();
    assert!(insert_order(&store, "zero", 0, "pending").await.is_err());
    assert!(insert_order(&store, "neg", -100, "pending").await.is_err());
    assert!(
        insert_order(&store, "ok1", 5, "pending").await.is_err(),
        "duplicate number"
    );
    assert!(insert_order(&store, "odd", 5, "shipped").await.is_err());
    // Paid needs a transaction id and a pay time.
    assert!(insert_order(&store, "paid", 5, "paid").await.is_err());
    insert_order(&store, "closed", 5, "closed").await.unwrap();
    assert!(insert_order(&store, &"x".repeat(33), 5, "pending")
        .await
        .is_err());
}

#[tokio::test]
async fn readers_are_read_only_and_read_during_a_write() {
    let (_dir, store) = fresh().await;
    assert!(sqlx::query("DELETE FROM products")
        .execute(pools(&store).1)
        .await
        .is_err());
    let mut tx = pools(&store).0.begin().await.unwrap();
    sqlx::query("INSERT INTO products (sku, name, price_fen, stock, created_at, updated_at) VALUES ('X', 'x', 1, 1, 0, 0)")
        .execute(&mut *tx)
        .await
        .unwrap();
    // The open write transaction neither blocks nor is seen by a reader.
    let seen = tokio::time::timeout(Duration::from_secs(2), store.products())
        .await
        .expect("a read must not wait for the writer")
        .unwrap();
    assert!(seen.is_empty());
    tx.commit().await.unwrap();
    assert_eq!(store.products().await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_pending_index_serves_the_pending_scan() {
    let (_dir, store) = fresh().await;
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "EXPLAIN QUERY PLAN SELECT out_trade_no FROM orders WHERE status = 'pending' ORDER BY created_at",
    )
    .fetch_all(pools(&store).1)
    .await
    .unwrap();
    let detail = plan.into_iter().map(|r| r.3).collect::<Vec<_>>().join("; ");
    // The pending orders' own index, or the console's (status, created_at) one: either reads
    // only pending entries, in order.
    assert!(
        detail.contains("orders_pending_by_created")
            || detail.contains("orders_by_status_created (status=?)"),
        "{detail}"
    );
}

#[tokio::test]
async fn other_urls_are_refused() {
    let err = Store::connect("mysql://localhost/x", &AppRuntime::current())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl));
}

mod payments {
    use super::*;
    use crate::domain::OutTradeNo;
    use crate::store::{Applied, NewItem, Outcome, PaymentEvent, PaymentResult, PaymentSource};

    async fn order(store: &Store, product: i64) -> OutTradeNo {
        store
            .create_order(
                &[NewItem {
                    product_id: product,
                    num: 2,
                }],
                Duration::from_secs(600),
                chrono::Utc::now(),
            )
            .await
            .unwrap()
            .out_trade_no
    }

    fn paid(no: &OutTradeNo, tid: &str, fee: i64) -> PaymentEvent {
        PaymentEvent {
            wechat_no: None,
            out_trade_no: no.clone(),
            result: PaymentResult::Paid {
                transaction_id: tid.into(),
                pay_time: chrono::Utc::now(),
            },
            total_fee: Fen(fee),
            fee_type: "CNY".into(),
            cash_fee: None,
            coupon_fee: None,
            source: PaymentSource::Notify,
        }
    }

    #[tokio::test]
    async fn a_batch_applies_every_kind_of_event_exactly_once() {
        let (_dir, store) = fresh().await;
        batch_case(store).await;
        if let Some(store) = fresh_postgres().await {
            batch_case(store).await;
        }
    }

    async fn batch_case(store: Store) {
        let product = store
            .insert_product(&NewProduct {
                sku: "S6",
                name: "tea",
                price: Fen(100),
                stock: 20,
            })
            .await
            .unwrap();
        let plain = order(&store, product.id).await;
        let twice = order(&store, product.id).await;
        let failing = order(&store, product.id).await;
        let closed = order(&store, product.id).await;
        let wrong_amount = order(&store, product.id).await;
        store
            .raw(&format!(
                "UPDATE orders SET status = 'closed', closed_at = 1 WHERE out_trade_no = '{closed}'"
            ))
            .await
            .unwrap();
        let failure = PaymentEvent {
            wechat_no: None,
            out_trade_no: failing.clone(),
            result: PaymentResult::Failed,
            total_fee: Fen(200),
            fee_type: "CNY".into(),
            cash_fee: None,
            coupon_fee: None,
            source: PaymentSource::Notify,
        };
        let events = [
            paid(&plain, "T1", 200),
            paid(&plain, "T1", 200), // the same notify again, in the same batch
            paid(&twice, "T2", 200),
            paid(&twice, "T3", 200), // a second transaction for one order
            failure.clone(),
            failure,
            paid(&closed, "T4", 200),
            paid(&wrong_amount, "T5", 1),
        ];
        let refs: Vec<&PaymentEvent> = events.iter().collect();
        let recorded = store.record_payment_events(&refs).await.unwrap();
        assert_eq!(
            recorded.iter().map(|r| r.new).collect::<Vec<_>>(),
            [true, false, true, true, true, false, true, true]
        );
        assert_eq!(recorded[0].id, recorded[1].id);
        assert_eq!(recorded[4].id, recorded[5].id);
        let mut ids: Vec<i64> = recorded.iter().map(|r| r.id).collect();
        ids.dedup();
        let applied = store.apply_payment_events(&ids).await.unwrap();
        let outcomes: Vec<Outcome> = applied
            .iter()
            .map(|a| match a {
                Applied::Now { outcome, .. } => *outcome,
                Applied::Before => panic!("nothing was applied before"),
            })
            .collect();
        assert_eq!(outcomes[0], Outcome::Paid);
        // Of two transactions for one order, one pays it and the other is a payment to refund.
        let twice_outcomes = [outcomes[1], outcomes[2]];
        assert!(
            twice_outcomes.contains(&Outcome::Paid),
            "{twice_outcomes:?}"
        );
        assert_eq!(
            twice_outcomes
                .iter()
                .filter(|o| **o == Outcome::Paid)
                .count(),
            1
        );
        // A failed attempt is noted; the order stays open (the shopper may scan again).
        assert_eq!(outcomes[3], Outcome::PayError);
        assert_eq!(outcomes[4], Outcome::PaidAfterClose);
        // Money of another amount: recorded, the order closed and the money due back.
        assert_eq!(outcomes[5], Outcome::AmountMismatch);
        // Applying again does nothing.
        let again = store.apply_payment_events(&ids).await.unwrap();
        assert!(again.iter().all(|a| *a == Applied::Before));
        // Stock: 5 orders of 2 reserved 10; only the one paid with another amount gave its 2
        // back (a failed attempt keeps its order, and its stock, open).
        assert_eq!(store.product(product.id).await.unwrap().unwrap().stock, 12);
        let failed = store.order(&failing).await.unwrap().unwrap();
        assert_eq!(failed.status, crate::domain::OrderStatus::Pending);
        assert_eq!(failed.wechat_state.as_deref(), Some("PAYERROR"));
        let refund_due = store
            .raw_i64(&format!(
                "SELECT refund_due FROM orders WHERE out_trade_no = '{closed}'"
            ))
            .await;
        assert_eq!(refund_due, 1);
        let stored = store
            .raw_strings("SELECT outcome FROM payment_events ORDER BY id")
            .await;
        assert_eq!(stored.len(), 6);
        let wrong = store.order(&wrong_amount).await.unwrap().unwrap();
        assert_eq!(wrong.status, crate::domain::OrderStatus::Closed);
        assert!(wrong.refund_due);
        // The order is never cached across a write.
        let plain_order = store.order(&plain).await.unwrap().unwrap();
        assert_eq!(plain_order.transaction_id.as_deref(), Some("T1"));
    }
}

#[tokio::test]
async fn the_reconciliation_scan_touches_only_pending_orders() {
    let (_dir, store) = fresh().await;
    // Many finished orders, a few pending ones.
    let mut tx = pools(&store).0.begin().await.unwrap();
    for i in 0..10_000 {
        sqlx::query(
            "INSERT INTO orders (out_trade_no, total_fee, status, body, product_id, expires_at,
                                 created_at, updated_at, closed_at)
             VALUES ($1, 100, 'closed', 'x', '1', 2000, 1000, 1000, 1000)",
        )
        .bind(format!("F{i:012}"))
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    for i in 0..100 {
        sqlx::query(
            "INSERT INTO orders (out_trade_no, total_fee, status, body, product_id, expires_at,
                                 created_at, updated_at, code_url, code_url_expires_at,
                                 sign_type, prepay_id)
             VALUES ($1, 100, 'pending', 'x', '1', 3000, $2, 1000, 'weixin://x', 3000, 'MD5', 'wx')",
        )
        .bind(format!("P{i:012}"))
        .bind(1000 + i)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    for sql in [
        // The claim's own statement, as `claim_due_for_reconcile` sends it.
        "UPDATE orders SET reconcile_due_at = 6000
         WHERE reconcile_due_at <= 5000 AND status = 'pending' AND out_trade_no IN (
             SELECT out_trade_no FROM orders
             WHERE status = 'pending' AND code_url IS NOT NULL AND reconcile_due_at <= 5000
             ORDER BY created_at LIMIT 1000)
         RETURNING out_trade_no",
        "SELECT out_trade_no FROM orders WHERE status = 'pending' AND code_url IS NULL AND expires_at <= 5000 ORDER BY created_at LIMIT 1000",
    ] {
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
            .fetch_all(pools(&store).1)
            .await
            .unwrap();
        let steps: Vec<String> = plan.into_iter().map(|r| r.3).collect();
        let detail = steps.join("; ");
        assert!(
            detail.contains("USING INDEX orders_pending_by_created")
                || detail.contains("orders_by_status_created (status=?)"),
            "{detail}"
        );
        // No step reads the whole table.
        assert!(!steps.iter().any(|step| step == "SCAN orders"), "{detail}");
    }
    let at = |secs| chrono::DateTime::from_timestamp(secs, 0).unwrap();
    let claimed = store
        .claim_due_for_reconcile(at(5000), at(5030), 1000)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 100);
    assert!(claimed
        .windows(2)
        .all(|w| w[0].created_at <= w[1].created_at));
    // Claimed until 5030: another job in between gets none of them; after it, all again.
    let again = |secs| store.claim_due_for_reconcile(at(secs), at(secs + 30), 1000);
    assert!(again(5029).await.unwrap().is_empty());
    assert_eq!(again(5030).await.unwrap().len(), 100);
}

#[tokio::test]
async fn a_batch_of_orders_commits_together_and_refusals_change_nothing() {
    let (_dir, store) = fresh().await;
    order_batch_case(store).await;
    if let Some(store) = fresh_postgres().await {
        order_batch_case(store).await;
    }
}

async fn order_batch_case(store: Store) {
    use crate::store::{CreateOrderError, NewItem};
    let tea = store
        .insert_product(&NewProduct {
            sku: "S7",
            name: "tea",
            price: Fen(100),
            stock: 3,
        })
        .await
        .unwrap();
    let item = |product_id, num| [NewItem { product_id, num }];
    let ttl = Duration::from_secs(600);
    let (a, b, c, d) = (
        item(tea.id, 2),
        item(tea.id, 2),
        item(999, 1),
        item(tea.id, 1),
    );
    let request = |items: [NewItem; 1]| OrderRequest {
        items: items.to_vec(),
        shop_name: String::new(),
        ttl,
        client: None,
        contact: Default::default(),
    };
    let (a, b, c, d) = (request(a), request(b), request(c), request(d));
    let results = store
        .create_orders(&[&a, &b, &c, &d], chrono::Utc::now())
        .await
        .unwrap();
    assert!(results[0].is_ok());
    assert!(matches!(
        results[1],
        Err(CreateOrderError::NotEnoughStock { available: 1, .. })
    ));
    assert!(matches!(
        results[2],
        Err(CreateOrderError::UnknownProduct(999))
    ));
    assert!(results[3].is_ok());
    assert_eq!(store.product(tea.id).await.unwrap().unwrap().stock, 0);
    assert_eq!(store.raw_i64("SELECT COUNT(*) FROM orders").await, 2);
    assert_eq!(store.raw_i64("SELECT COUNT(*) FROM order_items").await, 2);
}

/// A prepay and an expiry racing: the close of an unprepaid order re-checks that it still has
/// no prepay, and a prepay that lands after such a close is kept and watched for late money.
#[tokio::test]
async fn an_expiry_and_a_prepay_at_the_same_moment_never_lose_a_payable_order() {
    let (_dir, store) = fresh().await;
    expiry_race_case(store).await;
    if let Some(store) = fresh_postgres().await {
        expiry_race_case(store).await;
    }
}

async fn expiry_race_case(store: Store) {
    let product = store
        .insert_product(&NewProduct {
            sku: "S8",
            name: "tea",
            price: Fen(100),
            stock: 10,
        })
        .await
        .unwrap();
    let item = [NewItem {
        product_id: product.id,
        num: 1,
    }];
    let created = chrono::DateTime::from_timestamp(1_000_000, 0).unwrap();
    let ttl = Duration::from_secs(600);
    let late = created + chrono::Duration::minutes(11);
    let prepay = |expires: chrono::DateTime<chrono::Utc>| Prepay {
        prepay_id: "wx1".into(),
        code_url: "weixin://wxpay/bizpayurl?pr=race".into(),
        code_url_expires_at: expires,
        sign_type: crate::wxpay::SignType::Md5,
    };

    // The pay page got its prepay just before the expiry ran: the order is not expired.
    let first = store.create_order(&item, ttl, created).await.unwrap();
    assert!(store
        .record_prepay(&first.out_trade_no, &prepay(first.expires_at))
        .await
        .unwrap());
    assert!(!store
        .close_unprepaid(&first.out_trade_no, late, None)
        .await
        .unwrap());
    assert!(store
        .expire_unprepaid(late, None, 100)
        .await
        .unwrap()
        .is_empty());
    let first = store.order(&first.out_trade_no).await.unwrap().unwrap();
    assert_eq!(first.status, OrderStatus::Pending);

    // The expiry ran first: the order is closed, and the prepay WeChat issued meanwhile is kept
    // and watched at once.
    let second = store.create_order(&item, ttl, created).await.unwrap();
    assert_eq!(
        store.expire_unprepaid(late, None, 100).await.unwrap(),
        std::slice::from_ref(&second.out_trade_no)
    );
    assert!(!store
        .record_prepay(&second.out_trade_no, &prepay(second.expires_at))
        .await
        .unwrap());
    let second = store.order(&second.out_trade_no).await.unwrap().unwrap();
    assert_eq!(second.status, OrderStatus::Closed);
    assert!(second.prepay.is_some());
    let watched = store
        .claim_due_for_watch(
            chrono::Utc::now(),
            chrono::Utc::now() + chrono::Duration::seconds(30),
            100,
        )
        .await
        .unwrap();
    assert_eq!(
        watched.iter().map(|o| &o.out_trade_no).collect::<Vec<_>>(),
        [&second.out_trade_no]
    );
    // One unit back from the closed order, one held by the open one.
    assert_eq!(store.product(product.id).await.unwrap().unwrap().stock, 9);
}

/// Expiries are decided by the database's clock, which every replica shares.
#[tokio::test]
async fn the_clock_is_the_databases() {
    let (_dir, store) = fresh().await;
    clock_case(store).await;
    if let Some(store) = fresh_postgres().await {
        clock_case(store).await;
    }
}

async fn clock_case(store: Store) {
    let database = store.now().await.unwrap();
    let direct = match &store.backend {
        Backend::Sqlite(db) => {
            sqlx::query_scalar::<_, i64>("SELECT CAST(strftime('%s', 'now') AS INTEGER)")
                .fetch_one(&db.reader)
                .await
                .unwrap()
        }
        Backend::Postgres(db) => {
            sqlx::query_scalar::<_, i64>("SELECT CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)")
                .fetch_one(&db.reader)
                .await
                .unwrap()
        }
    };
    assert!((database.timestamp() - direct).abs() <= 1);
    // In seconds, as every time column.
    assert!((database - chrono::Utc::now()).num_seconds().abs() <= 5);
}

/// The console's order list reads an index in list order and stops at its page, whatever the
/// filter: no full scan of the orders, no sort of all of them. The plans are printed.
#[tokio::test]
async fn the_order_list_is_served_by_indexes() {
    let (_dir, store) = fresh().await;
    let mut tx = pools(&store).0.begin().await.unwrap();
    for i in 0..5_000i64 {
        let status = ["pending", "paid", "closed"][(i % 3) as usize];
        sqlx::query(
            "INSERT INTO orders (out_trade_no, total_fee, status, body, product_id, expires_at,
                                 created_at, updated_at, transaction_id, pay_time, closed_at,
                                 refund_due)
             VALUES ($1, 100, $2, 'x', '1', $3 + 600, $3, $3, $4, $5, $6, $7)",
        )
        .bind(format!("L{i:012}"))
        .bind(status)
        .bind(1_000 + i)
        .bind((status == "paid").then(|| format!("T{i:012}")))
        .bind((status == "paid").then_some(1_000 + i))
        .bind((status == "closed").then_some(1_000 + i))
        .bind(i64::from(status == "closed" && i % 100 == 2))
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query("INSERT INTO order_contacts (out_trade_no, name, phone) VALUES ($1, $2, $3)")
            .bind(format!("L{i:012}"))
            .bind(format!("买家{}", i % 700))
            .bind(format!("139{:08}", i % 900))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    // Written as before contacts were sealed: sealed now, as at start-up.
    let resealed = store
        .reseal_all_contacts(&Default::default())
        .await
        .unwrap();
    assert_eq!(resealed, 5_000);
    sqlx::query("ANALYZE")
        .execute(pools(&store).0)
        .await
        .unwrap();
    let at = |secs| chrono::DateTime::from_timestamp(secs, 0).unwrap();
    let after = Some((at(4_000), OutTradeNo::parse("L000000003000").unwrap()));
    let filters = [
        ("all", OrderFilter::default(), false),
        (
            "a later page",
            OrderFilter {
                after: after.clone(),
                ..Default::default()
            },
            false,
        ),
        (
            "paid, a later page",
            OrderFilter {
                status: Some(ListStatus::Paid),
                after,
                ..Default::default()
            },
            false,
        ),
        (
            "refund due",
            OrderFilter {
                status: Some(ListStatus::RefundDue),
                ..Default::default()
            },
            false,
        ),
        (
            "a day",
            OrderFilter {
                from: Some(at(2_000)),
                to: Some(at(3_000)),
                ..Default::default()
            },
            false,
        ),
        // A search names a few orders through indexes; sorting those few is fine.
        (
            "a phone",
            OrderFilter {
                search: Some("13900000007".into()),
                ..Default::default()
            },
            true,
        ),
    ];
    for (what, filter, may_sort) in filters {
        let plan = store.explain_list_orders(&filter, 50).await.unwrap();
        let detail = plan.join("; ");
        eprintln!("{what}: {detail}");
        assert!(
            !plan
                .iter()
                .any(|step| step == "SCAN o" || step == "SCAN orders"),
            "{what}: a full scan: {detail}"
        );
        if !may_sort {
            assert!(
                !detail.contains("TEMP B-TREE FOR ORDER BY"),
                "{what}: sorts every match: {detail}"
            );
        }
        let listed = store.list_orders(&filter, 50).await.unwrap();
        assert!(!listed.is_empty(), "{what}");
        assert!(
            listed
                .windows(2)
                .all(|w| (w[0].created_at, &w[0].out_trade_no)
                    > (w[1].created_at, &w[1].out_trade_no))
        );
    }
}

#[tokio::test]
async fn refunds_never_exceed_what_was_paid_even_when_requests_race() {
    let (_dir, store) = fresh().await;
    refunds_case(store).await;
    if let Some(store) = fresh_postgres().await {
        refunds_case(store).await;
    }
}

fn ask<'a>(fee: Fen, reason: &'a str, restock: bool, by: &'a str) -> RefundAsk<'a> {
    RefundAsk {
        fee,
        reason,
        restock,
        requested_by: by,
    }
}

async fn refunds_case(store: Store) {
    let tea = store
        .insert_product(&NewProduct {
            sku: "T",
            name: "tea",
            price: Fen(1_000),
            stock: 10,
        })
        .await
        .unwrap();
    let order = store
        .create_order(
            &[NewItem {
                product_id: tea.id,
                num: 3,
            }],
            Duration::from_secs(600),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let no = order.out_trade_no.clone();
    // Not paid yet: nothing to refund.
    assert!(matches!(
        store
            .request_refund(&no, &ask(Fen(100), "", false, "merchant"), 0)
            .await,
        Err(RefundRefused::NotPaid)
    ));
    let event = PaymentEvent {
        wechat_no: None,
        out_trade_no: no.clone(),
        result: PaymentResult::Paid {
            transaction_id: "4200000000000000000000000001".into(),
            pay_time: chrono::Utc::now(),
        },
        total_fee: Fen(3_000),
        fee_type: "CNY".into(),
        cash_fee: None,
        coupon_fee: None,
        source: PaymentSource::Notify,
    };
    let recorded = store.record_payment_event(&event).await.unwrap();
    store.apply_payment_event(recorded.id).await.unwrap();

    // Twenty requests of ¥7.00 at once for a ¥30.00 payment: four fit, none more.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            let no = no.clone();
            tokio::spawn(async move {
                store
                    .request_refund(&no, &ask(Fen(700), "race", false, &format!("m{i}")), 0)
                    .await
            })
        })
        .collect();
    let mut made = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(refund) => made.push(refund),
            Err(RefundRefused::ExceedsPaid { remaining }) => assert!(remaining.0 < 700),
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(made.len(), 4);
    let numbers: std::collections::HashSet<_> = made.iter().map(|r| &r.out_refund_no).collect();
    assert_eq!(numbers.len(), 4, "each refund its own number");
    let left = match store
        .request_refund(&no, &ask(Fen(201), "", false, "m"), 0)
        .await
    {
        Err(RefundRefused::ExceedsPaid { remaining }) => remaining,
        other => panic!("{other:?}"),
    };
    assert_eq!(left, Fen(200));
    let last = store
        .request_refund(&no, &ask(Fen(200), "rest", true, "m"), 0)
        .await
        .unwrap();
    assert!(last.restock);
    assert_eq!(store.refunds_of(&no).await.unwrap().len(), 5);

    // Settled once; a closed refund gives its amount back, and only once.
    let first = &made[0].out_refund_no;
    assert!(store.refund_accepted(first, "W1").await.unwrap());
    assert!(store
        .settle_refund(first, RefundState::Closed, None, None)
        .await
        .unwrap()
        .is_some());
    assert!(store
        .settle_refund(first, RefundState::Closed, None, None)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .settle_refund(first, RefundState::Succeeded, None, None)
        .await
        .unwrap()
        .is_none());
    let again = store
        .request_refund(&no, &ask(Fen(700), "again", false, "m"), 0)
        .await
        .unwrap();
    assert!(store
        .settle_refund(
            &again.out_refund_no,
            RefundState::Succeeded,
            Some("W2"),
            None
        )
        .await
        .unwrap()
        .is_some_and(|s| !s.restocked));
    // The restocking refund puts the order's three back, once.
    let stock_before = store.product(tea.id).await.unwrap().unwrap().stock;
    let settled = store
        .settle_refund(
            &last.out_refund_no,
            RefundState::Succeeded,
            Some("W3"),
            None,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(settled.restocked);
    assert_eq!(
        store.product(tea.id).await.unwrap().unwrap().stock,
        stock_before + 3
    );
    let refunds = store.refunds_of(&no).await.unwrap();
    let closed = refunds.iter().find(|r| &r.out_refund_no == first).unwrap();
    assert_eq!(
        (closed.state, closed.refund_id.as_deref()),
        (RefundState::Closed, Some("W1"))
    );
    assert!(closed.settled_at.is_some());
    assert!(matches!(
        store
            .request_refund(&no, &ask(Fen(1), "", false, "m"), 0)
            .await,
        Err(RefundRefused::ExceedsPaid { remaining: Fen(0) })
    ));
    let events = store.order_events(&no).await.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind == "refund_requested")
            .count(),
        6
    );
}

#[tokio::test]
async fn a_bill_day_is_claimed_once_and_its_findings_kept_once() {
    let (_dir, store) = fresh().await;
    bill_day_case(store).await;
    if let Some(store) = fresh_postgres().await {
        bill_day_case(store).await;
    }
}

async fn bill_day_case(store: Store) {
    use chrono::NaiveDate;
    let day = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
    let now = 1_800_000_000;
    store
        .open_bill_days(&[day, day.pred_opt().unwrap()], now)
        .await
        .unwrap();
    assert_eq!(
        store.latest_bill_day_before(day).await.unwrap(),
        day.pred_opt()
    );
    assert_eq!(
        store
            .latest_bill_day_before(day.succ_opt().unwrap())
            .await
            .unwrap(),
        Some(day)
    );
    // Oldest first; a leased day is not claimed again, by anyone, until its lease ends.
    let first = store
        .claim_due_bill_day(now, now + 600)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.day, day.pred_opt().unwrap());
    assert_eq!(first.attempts, 1);
    let second = store
        .claim_due_bill_day(now, now + 600)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.day, day);
    assert!(store
        .claim_due_bill_day(now, now + 600)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .claim_bill_day(day, now, now + 600)
        .await
        .unwrap()
        .is_none());
    // A failure leaves it open, due later.
    store
        .fail_bill_day(day, "downloadbill: HTTP status 503", now + 300, now)
        .await
        .unwrap();
    assert!(store
        .claim_due_bill_day(now + 299, now + 900)
        .await
        .unwrap()
        .is_none());
    let again = store
        .claim_due_bill_day(now + 300, now + 900)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.day, again.attempts), (day, 2));
    assert_eq!(
        again.last_error.as_deref(),
        Some("downloadbill: HTTP status 503")
    );

    let found = |kind, reference: &str, action: &str| Discrepancy {
        kind,
        reference: reference.into(),
        out_trade_no: Some("N1".into()),
        wechat_fee: Some(Fen(100)),
        shop_fee: None,
        detail: "only at WeChat".into(),
        action: action.into(),
        found_at: time(now),
        resolved_at: None,
    };
    let findings = DayFindings {
        figures: DayFigures {
            lines: 3,
            payments: 2,
            payments_fee: Fen(300),
            refunds: 1,
            refunds_fee: Fen(50),
            matched: 1,
            ..DayFigures::default()
        },
        discrepancies: vec![
            found(DiscrepancyKind::WechatOnly, "T1", "applied as paid"),
            found(DiscrepancyKind::Refund, "R1", ""),
        ],
    };
    let new = store
        .finish_bill_day(day, &findings, now + 310)
        .await
        .unwrap();
    assert_eq!(new, [DiscrepancyKind::WechatOnly, DiscrepancyKind::Refund]);
    let done = store.bill_day(day).await.unwrap().unwrap();
    assert_eq!(done.status, BillDayStatus::Done);
    assert_eq!(done.figures, findings.figures);
    assert_eq!(done.open_discrepancies, 2);
    assert_eq!(done.last_error, None);
    assert_eq!(store.open_discrepancies().await.unwrap(), 2);

    // A re-run: what it finds again is not new (and keeps its action), what it no longer finds
    // is resolved.
    let rerun = store
        .claim_bill_day(day, now + 400, now + 900)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rerun.status, BillDayStatus::Done);
    let findings = DayFindings {
        figures: findings.figures,
        discrepancies: vec![found(DiscrepancyKind::Refund, "R1", "")],
    };
    assert!(store
        .finish_bill_day(day, &findings, now + 410)
        .await
        .unwrap()
        .is_empty());
    let listed = store.bill_discrepancies(day).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].reference, "R1");
    assert_eq!(listed[0].resolved_at, None);
    assert_eq!(listed[1].reference, "T1");
    assert_eq!(listed[1].action, "applied as paid");
    assert_eq!(listed[1].resolved_at, Some(time(now + 410)));
    assert_eq!(store.open_discrepancies().await.unwrap(), 1);
    assert_eq!(store.bill_days(10).await.unwrap().len(), 2);

    store
        .expire_bill_day(first.day, "WeChat keeps bills three months", now)
        .await
        .unwrap();
    let expired = store.bill_day(first.day).await.unwrap().unwrap();
    assert_eq!(expired.status, BillDayStatus::Expired);
}

/// The outbox: an event is fanned out once (a second replica's fan-out does nothing), each
/// target and order gets one delivery at a time in the events' order, a claim is leased, a
/// target answering again brings its waiting retries forward, and delivered events are pruned.
#[tokio::test]
async fn the_outbox_fans_out_once_and_keeps_each_orders_events_in_order() {
    let (_dir, store) = fresh().await;
    outbox_case(store).await;
    if let Some(store) = fresh_postgres().await {
        outbox_case(store).await;
    }
}

async fn outbox_case(store: Store) {
    use crate::store::{Attempted, FannedEvent};
    for (kind, no, subject) in [
        ("order.paid", "'A'", "A"),
        ("order.paid", "'B'", "B"),
        ("refund.succeeded", "'A'", "R1"),
        ("bill.discrepancy", "NULL", "7"),
    ] {
        store
            .raw(&format!(
                "INSERT INTO outbox_events (kind, out_trade_no, subject, created_at)
                 VALUES ('{kind}', {no}, '{subject}', 1000)"
            ))
            .await
            .unwrap();
    }
    let events = store.unfanned_events(10).await.unwrap();
    assert_eq!(events.len(), 4);
    let fanned: Vec<FannedEvent> = events
        .iter()
        .map(|e| FannedEvent {
            seq: e.seq,
            event_id: format!("evt_{}", e.seq),
            data: "{}".into(),
            out_trade_no: e.out_trade_no.clone(),
            targets: vec!["t1".into(), "t2".into()],
        })
        .collect();
    let now = 2000;
    assert_eq!(store.fan_out(&fanned, now).await.unwrap(), 4);
    // Another replica that read the same events fans out nothing.
    assert_eq!(store.fan_out(&fanned, now).await.unwrap(), 0);
    assert!(store.unfanned_events(10).await.unwrap().is_empty());
    assert_eq!(
        store
            .raw_i64("SELECT COUNT(*) FROM outbox_deliveries")
            .await,
        8
    );

    assert!(store.has_due_deliveries(now).await.unwrap());
    assert!(!store.has_due_deliveries(now - 1).await.unwrap());
    let claimed = store.claim_deliveries(now, now + 60, 100).await.unwrap();
    assert!(!store.has_due_deliveries(now).await.unwrap(), "all leased");
    let subjects = |ds: &[crate::store::Delivery]| -> Vec<(String, String)> {
        ds.iter()
            .map(|d| (d.target.clone(), d.kind.clone()))
            .collect()
    };
    // A's refund waits for A's payment, per target.
    assert_eq!(claimed.len(), 6, "{:?}", subjects(&claimed));
    assert!(claimed.iter().all(|d| d.kind != "refund.succeeded"));
    // Leased: nobody else takes them.
    assert!(store
        .claim_deliveries(now, now + 60, 100)
        .await
        .unwrap()
        .is_empty());
    let a_paid = events[0].seq;
    store
        .finish_delivery(
            a_paid,
            "t1",
            &Attempted::Delivered {
                result: "HTTP 200".into(),
            },
            now,
        )
        .await
        .unwrap();
    store
        .finish_delivery(
            a_paid,
            "t2",
            &Attempted::Refused {
                result: "HTTP 503".into(),
                retry_at: Some(now + 600),
            },
            now,
        )
        .await
        .unwrap();
    // t1 may now send A's refund; t2 may not while A's payment waits for its retry.
    let next = store.claim_deliveries(now, now + 60, 100).await.unwrap();
    assert_eq!(subjects(&next), [("t1".into(), "refund.succeeded".into())]);
    assert!(store
        .claim_deliveries(now + 1, now + 61, 100)
        .await
        .unwrap()
        .is_empty());
    // t2 answers again: its waiting retry is due now.
    assert_eq!(store.hurry_target("t2", now + 1).await.unwrap(), 1);
    let hurried = store
        .claim_deliveries(now + 1, now + 61, 100)
        .await
        .unwrap();
    assert_eq!(subjects(&hurried), [("t2".into(), "order.paid".into())]);
    // Given up: no longer pending, counted, and sent again on request.
    store
        .finish_delivery(
            a_paid,
            "t2",
            &Attempted::Refused {
                result: "HTTP 503".into(),
                retry_at: None,
            },
            now + 2,
        )
        .await
        .unwrap();
    let counts = store.delivery_counts().await.unwrap();
    assert_eq!((counts.pending, counts.failed), (6, 1));
    assert!(store.resend_delivery(a_paid, "t2", now + 3).await.unwrap());
    assert!(!store.resend_delivery(a_paid, "t9", now + 3).await.unwrap());
    assert_eq!(store.delivery_counts().await.unwrap().failed, 0);
    // Everything delivered: old events go, with their deliveries.
    for d in store.deliveries(None, None, 100).await.unwrap() {
        store
            .finish_delivery(
                d.seq,
                &d.target,
                &Attempted::Delivered {
                    result: "HTTP 204".into(),
                },
                now + 4,
            )
            .await
            .unwrap();
    }
    assert_eq!(store.deliveries_of("A").await.unwrap().len(), 4);
    assert_eq!(store.prune_outbox(1001).await.unwrap(), 4);
    assert_eq!(
        store
            .raw_i64("SELECT COUNT(*) FROM outbox_deliveries")
            .await,
        0
    );
}

#[tokio::test]
async fn the_notify_log_takes_big_batches_and_an_alarm_changes_once() {
    let (_dir, store) = fresh().await;
    notify_health_case(store).await;
    if let Some(store) = fresh_postgres().await {
        notify_health_case(store).await;
    }
}

async fn notify_health_case(store: Store) {
    use crate::store::{NotifyLogEntry, NOTIFY_MISSING, NOTIFY_MISSING_EVENT};
    // More lines than one statement binds: written in chunks, in one transaction.
    let entries: Vec<NotifyLogEntry> = (0..2_500)
        .map(|n| NotifyLogEntry {
            at: time(1_000 + n),
            kind: "payment",
            outcome: if n % 2 == 0 { "accepted" } else { "duplicate" },
            reason: None,
            out_trade_no: Some(format!("N{n}")),
            count: 1,
        })
        .chain([NotifyLogEntry {
            at: time(5_000),
            kind: "payment",
            outcome: "refused",
            reason: Some("invalid signature".into()),
            out_trade_no: None,
            count: 40,
        }])
        .collect();
    store.log_notifies(&entries).await.unwrap();
    let newest = store.notify_log(None, 10).await.unwrap();
    assert_eq!(newest.len(), 10);
    assert_eq!(newest[0].entry.reason.as_deref(), Some("invalid signature"));
    assert_eq!(newest[0].entry.count, 40);
    let older = store.notify_log(Some(newest[9].id), 5).await.unwrap();
    assert!(older[0].id < newest[9].id);
    let figures = store.notify_figures(3_000).await.unwrap();
    assert_eq!(
        (figures.notifies, figures.refused),
        (500, 40),
        "lines from 3000 on: {figures:?}"
    );
    assert_eq!(store.notify_figures(0).await.unwrap().notifies, 2_500);

    // Raised once (one event), again changes nothing; cleared once.
    store.write_events(true);
    assert!(store.alarm(NOTIFY_MISSING).await.unwrap().is_none());
    assert!(store
        .set_alarm(NOTIFY_MISSING, true, "{\"n\":1}", NOTIFY_MISSING_EVENT, 100)
        .await
        .unwrap());
    assert!(!store
        .set_alarm(NOTIFY_MISSING, true, "{\"n\":2}", NOTIFY_MISSING_EVENT, 101)
        .await
        .unwrap());
    let alarm = store.alarm(NOTIFY_MISSING).await.unwrap().unwrap();
    assert_eq!(alarm.raised_at, Some(time(100)));
    assert_eq!(alarm.detail, "{\"n\":1}");
    assert!(store
        .set_alarm(NOTIFY_MISSING, false, "{}", "notify.restored", 200)
        .await
        .unwrap());
    assert_eq!(
        store
            .raw_i64(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM outbox_events WHERE kind LIKE 'notify.%'"
            )
            .await,
        2
    );
    assert_eq!(store.prune_notify_log(3_000).await.unwrap(), 2_000);
}
