//! Buyers' contact details in the store: sealed at rest, found by phone and name, re-sealed
//! under a new key, anonymised after retention, deleted per buyer — on SQLite and, with
//! `TEST_POSTGRES_URL`, on PostgreSQL.

use super::contacts::ContactKeys;
use super::tests::{fresh, fresh_postgres};
use super::*;
use std::time::Duration;

const PHONE: &str = "13800138000";

fn contact(name: &str, phone: &str) -> Contact {
    Contact {
        name: Some(name.into()),
        phone: Some(phone.into()),
        address: Some("杭州市西湖区龙井路 1 号".into()),
        email: None,
        note: Some("请放门口".into()),
    }
}

async fn place(store: &Store, contact: Contact) -> Order {
    let tea = match store.products().await.unwrap().first() {
        Some(p) => p.id,
        None => {
            store
                .insert_product(&NewProduct {
                    sku: "T",
                    name: "tea",
                    price: Fen(100),
                    stock: 100,
                })
                .await
                .unwrap()
                .id
        }
    };
    let request = OrderRequest {
        items: vec![NewItem {
            product_id: tea,
            num: 1,
        }],
        shop_name: "茶舍".into(),
        ttl: Duration::from_secs(600),
        // A client of its own each time (the same cart and contact from one client would be
        // sent to its order already waiting).
        client: Some(ClientLimits {
            key: format!(
                "198.51.100.{}",
                store
                    .raw_i64("SELECT CAST(COUNT(*) AS BIGINT) FROM orders")
                    .await
            ),
            max_pending: 10,
            unprepaid_hold: Duration::from_secs(120),
        }),
        contact,
    };
    store
        .place_order(&request, chrono::Utc::now())
        .await
        .unwrap()
}

fn search(q: &str) -> OrderFilter {
    OrderFilter {
        search: Some(q.into()),
        ..Default::default()
    }
}

async fn found(store: &Store, q: &str) -> Vec<String> {
    store
        .list_orders(&search(q), 50)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.out_trade_no.to_string())
        .collect()
}

#[tokio::test]
async fn contacts_are_sealed_searchable_and_move_to_a_new_key() {
    let (_dir, store) = fresh().await;
    sealed_case(store).await;
    if let Some(store) = fresh_postgres().await {
        sealed_case(store).await;
    }
}

async fn sealed_case(store: Store) {
    let order = place(&store, contact("王小明", PHONE)).await;
    let no = order.out_trade_no.to_string();
    // Nothing readable at rest: no plaintext column, no phone in the sealed value.
    let stored = store
        .raw_strings(
            "SELECT COALESCE(name, '') || COALESCE(phone, '') || COALESCE(address, '') \
             || COALESCE(note, '') || sealed || phone_hash || name_hash FROM order_contacts",
        )
        .await;
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].contains(PHONE) && !stored[0].contains("王小明"));
    assert!(!stored[0].contains("龙井路"));
    let cart = store.raw_strings("SELECT cart FROM orders").await.concat();
    assert!(!cart.contains(PHONE));
    // Callers see it plain, and the console finds it by phone or name.
    assert_eq!(
        store.order_contact(&order.out_trade_no).await.unwrap(),
        Some(contact("王小明", PHONE))
    );
    assert_eq!(found(&store, PHONE).await, std::slice::from_ref(&no));
    assert_eq!(found(&store, " 王小明 ").await, std::slice::from_ref(&no));
    assert!(found(&store, "13800138001").await.is_empty());
    let listed = store
        .list_orders(&OrderFilter::default(), 50)
        .await
        .unwrap();
    assert_eq!(listed[0].phone.as_deref(), Some(PHONE));

    // Rotation: the new key first, the old one after it still opens and finds.
    let old = ContactKeys::decode(
        &store
            .raw_strings("SELECT key FROM contact_key")
            .await
            .concat(),
    )
    .unwrap();
    let new = ContactKeys::generate();
    let new_id = store.use_contact_keys(&[new]).await.unwrap();
    assert_eq!(
        store.order_contact(&order.out_trade_no).await.unwrap(),
        Some(contact("王小明", PHONE))
    );
    assert_eq!(found(&store, PHONE).await, std::slice::from_ref(&no));
    // A new order is sealed under the new key.
    let second = place(&store, contact("李四", "13900139000")).await;
    assert_eq!(
        store
            .raw_strings(&format!(
                "SELECT key_id FROM order_contacts WHERE out_trade_no = '{}'",
                second.out_trade_no
            ))
            .await,
        std::slice::from_ref(&new_id)
    );
    let usage = store.contact_key_use().await.unwrap();
    assert_eq!(usage.current.as_deref(), Some(new_id.as_str()));
    assert_eq!(
        (
            usage.current_rows,
            usage.waiting_rows,
            usage.unreadable_rows
        ),
        (1, 1, 0)
    );
    // Re-sealing moves the old row; then the new key alone reads and finds everything.
    let done = store
        .reseal_all_contacts(&Default::default())
        .await
        .unwrap();
    assert_eq!(done, 1);
    assert_eq!(
        store
            .raw_strings("SELECT DISTINCT key_id FROM order_contacts")
            .await,
        [new_id]
    );
    store.set_keys(ContactKeys::new(&[new]));
    assert_eq!(
        store.order_contact(&order.out_trade_no).await.unwrap(),
        Some(contact("王小明", PHONE))
    );
    assert_eq!(found(&store, PHONE).await, std::slice::from_ref(&no));
    let usage = store.contact_key_use().await.unwrap();
    assert_eq!(
        (
            usage.current_rows,
            usage.waiting_rows,
            usage.unreadable_rows
        ),
        (2, 0, 0)
    );
    // The old key alone reads none of it, and says so.
    store.set_keys(ContactKeys::new(&[old]));
    assert!(store.order_contact(&order.out_trade_no).await.is_err());
    let usage = store.contact_key_use().await.unwrap();
    assert_eq!(
        (
            usage.current_rows,
            usage.waiting_rows,
            usage.unreadable_rows
        ),
        (0, 0, 2)
    );
}

#[tokio::test]
async fn plaintext_contacts_of_before_are_sealed() {
    let (_dir, store) = fresh().await;
    let order = place(&store, Contact::default()).await;
    store
        .raw(&format!(
            "INSERT INTO order_contacts (out_trade_no, name, phone, address) \
             VALUES ('{}', '张三', '{PHONE}', '北京')",
            order.out_trade_no
        ))
        .await
        .unwrap();
    // Readable before it is sealed, found once it is.
    let before = store.order_contact(&order.out_trade_no).await.unwrap();
    assert_eq!(
        before.as_ref().and_then(|c| c.phone.as_deref()),
        Some(PHONE)
    );
    assert_eq!(
        store
            .reseal_all_contacts(&Default::default())
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .raw_i64("SELECT COUNT(*) FROM order_contacts WHERE phone IS NOT NULL OR name IS NOT NULL OR address IS NOT NULL")
            .await,
        0
    );
    assert_eq!(
        store.order_contact(&order.out_trade_no).await.unwrap(),
        before
    );
    assert_eq!(found(&store, PHONE).await, [order.out_trade_no.to_string()]);
}

#[tokio::test]
async fn old_contacts_are_anonymised_and_a_buyer_can_be_deleted() {
    let (_dir, store) = fresh().await;
    retention_case(store).await;
    if let Some(store) = fresh_postgres().await {
        retention_case(store).await;
    }
}

async fn retention_case(store: Store) {
    let now = chrono::Utc::now();
    let old = place(&store, contact("王小明", PHONE)).await;
    let recent = place(&store, contact("王小明", PHONE)).await;
    let pending = place(&store, contact("王小明", PHONE)).await;
    for order in [&old, &recent] {
        assert!(store
            .close_order(&order.out_trade_no, now, None)
            .await
            .unwrap());
    }
    // The order keeps its client's address and a cart key (digesting the contact).
    let kept_of_buyer = format!(
        "SELECT CAST(COUNT(client) + COUNT(cart) AS BIGINT) FROM orders \
         WHERE out_trade_no = '{}'",
        old.out_trade_no
    );
    assert_eq!(store.raw_i64(&kept_of_buyer).await, 2);
    // The old one finished 40 days ago.
    store
        .raw(&format!(
            "UPDATE orders SET updated_at = updated_at - 40 * 86400 WHERE out_trade_no = '{}'",
            old.out_trade_no
        ))
        .await
        .unwrap();
    let done = store
        .anonymise_contacts(now - chrono::Duration::days(30), 50)
        .await
        .unwrap();
    assert_eq!(done, std::slice::from_ref(&old.out_trade_no));
    assert_eq!(store.order_contact(&old.out_trade_no).await.unwrap(), None);
    let kept = store.order_now(&old.out_trade_no).await.unwrap().unwrap();
    assert_eq!(kept.total_fee, old.total_fee);
    assert_eq!(
        store.raw_i64(&kept_of_buyer).await,
        0,
        "the client's address and the cart key go with the contact"
    );
    let events = store.order_events(&old.out_trade_no).await.unwrap();
    let event = events
        .iter()
        .find(|e| e.kind == "contact_anonymised")
        .unwrap();
    assert_eq!(event.detail, "");
    // Once only; the recent and the pending orders keep theirs.
    assert!(store
        .anonymise_contacts(now - chrono::Duration::days(30), 50)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .order_contact(&recent.out_trade_no)
        .await
        .unwrap()
        .is_some());

    // The buyer's data: every order with the phone, and only those.
    let other = place(&store, contact("李四", "13900139000")).await;
    let data = store.buyer_data(&pending.out_trade_no).await.unwrap();
    let mut orders: Vec<String> = data.iter().map(|d| d.out_trade_no.to_string()).collect();
    orders.sort();
    let mut want = vec![
        recent.out_trade_no.to_string(),
        pending.out_trade_no.to_string(),
    ];
    want.sort();
    assert_eq!(orders, want);
    assert!(data
        .iter()
        .all(|d| d.contact.phone.as_deref() == Some(PHONE)));
    let deleted = store
        .delete_buyer(&recent.out_trade_no, "merchant (console)")
        .await
        .unwrap();
    assert_eq!(deleted.len(), 2);
    assert!(found(&store, PHONE).await.is_empty());
    assert_eq!(
        found(&store, "13900139000").await,
        [other.out_trade_no.to_string()]
    );
    assert_eq!(
        store
            .raw_i64("SELECT CAST(COUNT(*) AS BIGINT) FROM order_contacts")
            .await,
        1
    );
    assert!(store
        .order_events(&pending.out_trade_no)
        .await
        .unwrap()
        .iter()
        .any(|e| e.kind == "contact_deleted" && e.detail.is_empty()));
    assert!(store
        .buyer_data(&recent.out_trade_no)
        .await
        .unwrap()
        .is_empty());

    // The access log keeps what it is told, newest first.
    store
        .record_contact_access("abc123", "view", "N1")
        .await
        .unwrap();
    store
        .record_contact_access("abc123", "export", "N2")
        .await
        .unwrap();
    let log = store.contact_access(10).await.unwrap();
    assert_eq!(log.len(), 2);
    assert!(log
        .iter()
        .any(|a| a.action == "export" && a.subject == "N2"));
}
