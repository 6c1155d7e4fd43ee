//! The buyer's privacy: contact details sealed at rest and still searchable, anonymised after
//! the retention period, exported and deleted per buyer from the console, every look logged,
//! and the key rotated — through the real server and its database.

use std::time::Duration;

use crate::admin::sign_in;
use crate::helpers::{demo_merchant, on_postgres, test_terms, TestApp};

/// `CONTACT_KEY`s: 32 bytes each, base64.
const KEY_A: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const KEY_B: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

/// A buyer as typed at checkout, and the phone as stored (normalised).
struct Buyer {
    name: &'static str,
    typed_phone: &'static str,
    phone: &'static str,
    address: &'static str,
}

const ZHAO: Buyer = Buyer {
    name: "赵六",
    typed_phone: "+86 139 1234 5678",
    phone: "13912345678",
    address: "上海市黄浦区南京东路 100 号",
};
const QIAN: Buyer = Buyer {
    name: "钱七",
    typed_phone: "137-0000-1111",
    phone: "13700001111",
    address: "广州市天河区体育西路 8 号",
};

/// Places an order of one demo tea for `buyer`; its number.
async fn buy_as(app: &TestApp, buyer: &Buyer) -> String {
    let response = app
        .http
        .post(app.url("/orders"))
        .form(&[
            ("sku_id", "1"),
            ("num", "1"),
            ("name", buyer.name),
            ("phone", buyer.typed_phone),
            ("address", buyer.address),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    location.strip_prefix("/pay/").unwrap().to_owned()
}

async fn pay(app: &TestApp, no: &str) {
    let code_url = app.open_pay_page(no).await;
    app.pay_in_sandbox(&code_url).await;
    assert!(
        app.wait_for_status(no, "paid", Duration::from_secs(10))
            .await
    );
}

/// Every `table.column` of the database whose value, as text, contains `needle`.
async fn columns_holding(app: &TestApp, needle: &str) -> Vec<String> {
    let columns: Vec<(String, String)> = if on_postgres() {
        sqlx::query_as(
            "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT)
             FROM information_schema.columns WHERE table_schema = 'public'",
        )
        .fetch_all(&app.db)
        .await
        .unwrap()
    } else {
        sqlx::query_as(
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
             WHERE m.type = 'table'",
        )
        .fetch_all(&app.db)
        .await
        .unwrap()
    };
    assert!(
        columns.len() > 50,
        "every table's columns: {}",
        columns.len()
    );
    let mut holding = Vec::new();
    for (table, column) in columns {
        let count: i64 = sqlx::query_scalar(&format!(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM \"{table}\"
             WHERE CAST(\"{column}\" AS TEXT) LIKE $1"
        ))
        .bind(format!("%{needle}%"))
        .fetch_one(&app.db)
        .await
        .unwrap();
        if count > 0 {
            holding.push(format!("{table}.{column}"));
        }
    }
    holding
}

/// Whether the SQLite database's files (the database and its write-ahead log) hold `needle`.
fn sqlite_files_hold(app: &TestApp, needle: &str) -> bool {
    let path = app
        .database_url
        .strip_prefix("sqlite://")
        .expect("an SQLite database")
        .to_owned();
    [path.clone(), format!("{path}-wal")].iter().any(|file| {
        let bytes = std::fs::read(file).unwrap_or_default();
        bytes
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
    })
}

async fn page(http: &reqwest::Client, app: &TestApp, path: &str) -> (u16, String) {
    let response = http.get(app.url(path)).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn the_database_holds_no_plain_text_phone_number_and_search_still_finds_it() {
    let app = TestApp::spawn_with(&[("CONTACT_KEY", KEY_A)]).await;
    let first = buy_as(&app, &ZHAO).await;
    let second = buy_as(&app, &ZHAO).await;
    let other = buy_as(&app, &QIAN).await;
    pay(&app, &first).await;

    // The scans see what is stored in plain (the order's number; the product's name).
    assert!(columns_holding(&app, &first)
        .await
        .contains(&"orders.out_trade_no".to_owned()));
    assert!(!columns_holding(&app, "龙井").await.is_empty());
    if !on_postgres() {
        assert!(sqlite_files_hold(&app, &first));
    }
    for needle in [ZHAO.phone, "1234 5678", ZHAO.name, "南京东路", QIAN.phone] {
        assert_eq!(
            columns_holding(&app, needle).await,
            Vec::<String>::new(),
            "{needle}"
        );
        if !on_postgres() {
            assert!(!sqlite_files_hold(&app, needle), "the file holds {needle}");
        }
    }
    // The sealed rows are there, and say which key.
    let sealed: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM order_contacts
         WHERE sealed IS NOT NULL AND phone_hash IS NOT NULL AND phone IS NULL",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(sealed, 3);

    // The console finds the buyer's orders by phone, however it is typed, and by name.
    let (http, _) = sign_in(&app).await;
    for q in ["13912345678", "139%201234%205678", "%E8%B5%B5%E5%85%AD"] {
        let (status, list) = page(&http, &app, &format!("/admin/orders?q={q}")).await;
        assert_eq!(status, 200);
        assert!(list.contains(&first) && list.contains(&second), "{q}");
        assert!(!list.contains(&other), "{q}");
    }
    // And shows them in plain on the order's page.
    let (_, order) = page(&http, &app, &format!("/admin/orders/{first}")).await;
    assert!(order.contains(ZHAO.name) && order.contains(ZHAO.phone));
    assert!(order.contains(ZHAO.address));
}

#[tokio::test]
async fn contact_details_go_after_the_retention_period_while_totals_and_payments_stay() {
    let app = TestApp::spawn_with(&[("CONTACT_RETENTION_DAYS", "30")]).await;
    let old = buy_as(&app, &ZHAO).await;
    let recent = buy_as(&app, &ZHAO).await;
    pay(&app, &old).await;
    pay(&app, &recent).await;
    let total_before: i64 =
        sqlx::query_scalar("SELECT total_fee FROM orders WHERE out_trade_no = $1")
            .bind(&old)
            .fetch_one(&app.db)
            .await
            .unwrap();
    // The old order was finished 31 days ago.
    sqlx::query("UPDATE orders SET updated_at = updated_at - 31 * 86400 WHERE out_trade_no = $1")
        .bind(&old)
        .execute(&app.db)
        .await
        .unwrap();
    // The retention job, as the shop runs it (`CONTACT_RETENTION_DAYS=30`).
    let mut terms = test_terms(Duration::from_secs(60), None);
    terms.privacy.retention_days = 30;
    let checkout = app.checkout_on(demo_merchant(), terms).await;
    let done = checkout
        .anonymise_expired_contacts(chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(done, 1);

    let contacts = |no: String| {
        let db = app.db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM order_contacts WHERE out_trade_no = $1",
            )
            .bind(no)
            .fetch_one(&db)
            .await
            .unwrap()
        }
    };
    assert_eq!(contacts(old.clone()).await, 0);
    assert_eq!(contacts(recent.clone()).await, 1);
    // The order, its items and its payment stay.
    let (status, tid, pay_time) = app.order_row(&old).await;
    assert_eq!(status, "paid");
    assert!(tid.is_some() && pay_time.is_some());
    let total_after: i64 =
        sqlx::query_scalar("SELECT total_fee FROM orders WHERE out_trade_no = $1")
            .bind(&old)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(total_after, total_before);
    for table in ["order_items", "payment_events"] {
        let rows: i64 = sqlx::query_scalar(&format!(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM {table} WHERE out_trade_no = $1"
        ))
        .bind(&old)
        .fetch_one(&app.db)
        .await
        .unwrap();
        assert!(rows > 0, "{table}");
    }
    // The console shows the order without a buyer, and why.
    let (http, _) = sign_in(&app).await;
    let (_, order) = page(&http, &app, &format!("/admin/orders/{old}")).await;
    assert!(!order.contains(ZHAO.name) && !order.contains(ZHAO.phone));
    assert!(order.contains("contact_anonymised"));
    assert!(order.contains(&format!(
        "¥{}.{:02}",
        total_before / 100,
        total_before % 100
    )));
    let (_, kept) = page(&http, &app, &format!("/admin/orders/{recent}")).await;
    assert!(kept.contains(ZHAO.name));
    // Once only.
    assert_eq!(
        checkout
            .anonymise_expired_contacts(chrono::Utc::now())
            .await
            .unwrap(),
        0
    );
}

/// Every value stored for an order's contact (the sealed value and its search hashes).
async fn stored_values(app: &TestApp, no: &str) -> Vec<String> {
    let (sealed, phone_hash, name_hash): (String, String, String) = sqlx::query_as(
        "SELECT sealed, phone_hash, name_hash FROM order_contacts WHERE out_trade_no = $1",
    )
    .bind(no)
    .fetch_one(&app.db)
    .await
    .unwrap();
    vec![sealed, phone_hash, name_hash]
}

#[tokio::test]
async fn a_deleted_buyer_is_gone_from_every_table_and_the_csv_and_the_export_is_logged() {
    let app = TestApp::spawn_with(&[("CONTACT_KEY", KEY_A)]).await;
    let first = buy_as(&app, &ZHAO).await;
    let second = buy_as(&app, &ZHAO).await;
    let other = buy_as(&app, &QIAN).await;
    pay(&app, &first).await;
    let (http, csrf) = sign_in(&app).await;

    // The order's page shows the buyer (a view, logged).
    let (_, order) = page(&http, &app, &format!("/admin/orders/{second}")).await;
    assert!(order.contains(ZHAO.name) && order.contains("export-buyer"));

    // Export: every order of the buyer with the details given, no one else's.
    let export = http
        .post(app.url(&format!("/admin/orders/{second}/buyer/export")))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), 200);
    assert!(export.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let data: serde_json::Value = export.json().await.unwrap();
    let mut orders: Vec<&str> = data["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["out_trade_no"].as_str().unwrap())
        .collect();
    orders.sort();
    let mut want = vec![first.as_str(), second.as_str()];
    want.sort();
    assert_eq!(orders, want);
    for order in data["orders"].as_array().unwrap() {
        assert_eq!(order["contact"]["phone"], ZHAO.phone);
        assert_eq!(order["contact"]["name"], ZHAO.name);
        assert_eq!(order["contact"]["address"], ZHAO.address);
    }

    // The CSV carries them before the delete — also searched by phone, a search the access
    // log must not keep in plain.
    let csv = page(&http, &app, "/admin/orders.csv").await.1;
    assert!(csv.contains(ZHAO.phone) && csv.contains(QIAN.phone));
    let (_, searched) = page(&http, &app, "/admin/orders.csv?q=13912345678").await;
    assert!(searched.contains(ZHAO.phone) && !searched.contains(QIAN.phone));

    // Delete, which needs the box ticked.
    let what_was_stored = [
        stored_values(&app, &first).await,
        stored_values(&app, &second).await,
    ]
    .concat();
    let unticked = http
        .post(app.url(&format!("/admin/orders/{second}/buyer/delete")))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(unticked.status(), 400);
    assert_eq!(stored_values(&app, &second).await.len(), 3);
    let deleted = http
        .post(app.url(&format!("/admin/orders/{second}/buyer/delete")))
        .form(&[("csrf", csrf.as_str()), ("confirm", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 303);
    assert_eq!(
        deleted.headers()["location"],
        format!("/admin/orders/{second}").as_str()
    );

    // Gone from every table — neither plain nor sealed nor hashed — and from the CSV.
    for needle in what_was_stored.iter().map(String::as_str).chain([
        ZHAO.phone,
        "1234 5678",
        ZHAO.name,
        "南京东路",
    ]) {
        assert_eq!(
            columns_holding(&app, needle).await,
            Vec::<String>::new(),
            "{needle}"
        );
    }
    let csv = page(&http, &app, "/admin/orders.csv").await.1;
    assert!(!csv.contains(ZHAO.phone) && !csv.contains(ZHAO.name));
    assert!(
        csv.contains(&first) && csv.contains(&second),
        "the orders stay"
    );
    assert!(csv.contains(QIAN.phone), "another buyer stays");
    let (_, list) = page(&http, &app, &format!("/admin/orders?q={}", ZHAO.phone)).await;
    assert!(!list.contains(&first));
    // A list page that shows buyers is a view of their details too.
    let (_, list) = page(&http, &app, "/admin/orders").await;
    assert!(list.contains(QIAN.name));
    // The orders and the payment stay; their timelines say what happened, not what it was.
    assert_eq!(app.order_row(&first).await.0, "paid");
    let (_, order) = page(&http, &app, &format!("/admin/orders/{first}")).await;
    assert!(order.contains("contact_deleted") && !order.contains(ZHAO.name));
    assert!(!order.contains("export-buyer"));
    let (_, kept) = page(&http, &app, &format!("/admin/orders/{other}")).await;
    assert!(kept.contains(QIAN.name));

    // The access log: the views, the export, the delete and the CSVs, by a short session id
    // and never by phone.
    let (status, log) = page(&http, &app, "/admin/privacy").await;
    assert_eq!(status, 200);
    for action in [
        "access-view",
        "access-export",
        "access-delete",
        "access-csv",
        "access-list",
    ] {
        assert!(log.contains(action), "{action} is not logged: {log}");
    }
    assert!(log.contains(&second));
    assert!(!log.contains(ZHAO.phone));
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT session, action, subject FROM contact_access ORDER BY id")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert!(rows.iter().all(
        |(session, _, _)| session.len() == 12 && session.bytes().all(|b| b.is_ascii_hexdigit())
    ));
    let sessions: std::collections::HashSet<&str> =
        rows.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(sessions.len(), 1, "one console session did all of it");
    // It names the session (the start of its token's stored digest), not the token.
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM admin_sessions")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert!(stored.iter().any(|hash| hash.starts_with(&rows[0].0)));
    let export_subject = &rows.iter().find(|(_, a, _)| a == "export").unwrap().2;
    assert!(export_subject.starts_with(&second) && export_subject.contains("2 orders"));
}

/// Signs in to `app` and opens order `no`'s page: its status, and whether it shows the buyer.
async fn shows_buyer(app: &TestApp, no: &str) -> (u16, bool) {
    let (http, _) = sign_in(app).await;
    let (status, order) = page(&http, app, &format!("/admin/orders/{no}")).await;
    (status, order.contains(ZHAO.name))
}

#[tokio::test]
async fn contacts_sealed_under_one_key_are_read_after_rotation_and_moved_to_the_new_key() {
    let a = TestApp::spawn_with(&[("CONTACT_KEY", KEY_A)]).await;
    let no = buy_as(&a, &ZHAO).await;
    let key_of = |db: sqlx::AnyPool| async move {
        sqlx::query_scalar::<_, String>("SELECT DISTINCT key_id FROM order_contacts")
            .fetch_all(&db)
            .await
            .unwrap()
    };
    let under_a = key_of(a.db.clone()).await;
    assert_eq!(under_a.len(), 1);
    // The new key first, the old one after it: everything reads, and the shop re-seals the
    // rows under the new key by itself.
    let url = a.database_url.clone();
    let rotated = TestApp::spawn_with(&[
        ("DATABASE_URL", url.as_str()),
        ("CONTACT_KEY", &format!("{KEY_B},{KEY_A}")),
    ])
    .await;
    assert_eq!(shows_buyer(&rotated, &no).await, (200, true));
    let db = rotated.db.clone();
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while key_of(db.clone()).await == under_a {
        assert!(tokio::time::Instant::now() < until, "not re-sealed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A new order seals under the new key too.
    buy_as(&rotated, &QIAN).await;
    let now = key_of(db.clone()).await;
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now, under_a);

    // The console says the old key may go.
    let (http, _) = sign_in(&rotated).await;
    let (_, privacy) = page(&http, &rotated, "/admin/privacy").await;
    assert!(
        privacy.contains("id=\"keys-waiting\">0<") && privacy.contains("id=\"keys-done\""),
        "{privacy}"
    );
    assert!(privacy.contains("id=\"keys-current\">2<"));

    // The new key alone reads it all and finds it by phone.
    let b = TestApp::spawn_with(&[("DATABASE_URL", url.as_str()), ("CONTACT_KEY", KEY_B)]).await;
    assert_eq!(shows_buyer(&b, &no).await, (200, true));
    let (http, _) = sign_in(&b).await;
    let (_, list) = page(&http, &b, &format!("/admin/orders?q={}", ZHAO.phone)).await;
    assert!(list.contains(&no));
    // The old key alone no longer can (and says nothing of the contact).
    let old = TestApp::spawn_with(&[("DATABASE_URL", url.as_str()), ("CONTACT_KEY", KEY_A)]).await;
    let (status, shown) = shows_buyer(&old, &no).await;
    assert!(!shown);
    assert_eq!(status, 500);
    let (http, _) = sign_in(&old).await;
    let (_, privacy) = page(&http, &old, "/admin/privacy").await;
    assert!(
        privacy.contains("id=\"keys-unreadable\" class=\"alert\">2<"),
        "{privacy}"
    );
    assert!(!privacy.contains("keys-done"));
}

#[tokio::test]
async fn a_generated_key_outlives_restarts_and_gives_way_to_a_configured_one() {
    // Sandbox mode without CONTACT_KEY: a key is generated once, kept in the database.
    let first = TestApp::spawn().await;
    let no = buy_as(&first, &ZHAO).await;
    let generated = || {
        let db = first.db.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT key FROM contact_key")
                .fetch_all(&db)
                .await
                .unwrap()
        }
    };
    let key = generated().await;
    assert_eq!(key.len(), 1);
    let url = first.database_url.clone();
    let again = TestApp::spawn_with(&[("DATABASE_URL", url.as_str())]).await;
    assert_eq!(shows_buyer(&again, &no).await, (200, true));
    assert_eq!(generated().await, key, "the same key, not a new one");

    // A configured key takes over: the generated one still reads, and the rows move.
    let keyed =
        TestApp::spawn_with(&[("DATABASE_URL", url.as_str()), ("CONTACT_KEY", KEY_A)]).await;
    assert_eq!(shows_buyer(&keyed, &no).await, (200, true));
    let (http, _) = sign_in(&keyed).await;
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, privacy) = page(&http, &keyed, "/admin/privacy").await;
        if privacy.contains("id=\"keys-done\"") {
            assert!(privacy.contains("id=\"keys-current\">1<"), "{privacy}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "not re-sealed: {privacy}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_checkout_form_shows_the_privacy_notice_only_when_it_asks_for_details() {
    let app = TestApp::spawn_with(&[
        ("CONTACT_RETENTION_DAYS", "400"),
        ("SHOP_CONTACT", "客服 400-800-1234"),
    ])
    .await;
    let (status, form) = page(&app.http, &app, "/checkout?sku_id=1&num=1").await;
    assert_eq!(status, 200, "{form}");
    let notice = form
        .split("id=\"privacy-notice\">")
        .nth(1)
        .and_then(|rest| rest.split("</p>").next())
        .expect("the notice");
    assert!(notice.contains("anonymised 400 days"), "{notice}");
    assert!(
        notice.contains("ask 茶舍 Tea House (客服 400-800-1234)"),
        "{notice}"
    );
    let own = TestApp::spawn_with(&[(
        "PRIVACY_NOTICE",
        "我们只用您的地址发货。We use your address only to ship.",
    )])
    .await;
    let form = page(&own.http, &own, "/checkout?sku_id=1&num=1").await.1;
    assert!(form.contains("We use your address only to ship."));
    let none = TestApp::spawn_with(&[("CHECKOUT_FIELDS", "")]).await;
    let (_, form) = page(&none.http, &none, "/checkout?sku_id=1&num=1").await;
    assert!(!form.contains("privacy-notice"));
}
