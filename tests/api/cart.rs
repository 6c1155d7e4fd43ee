//! The cart, the checkout form and the receipt, through the real server with a shopper's
//! cookie jar. Demo catalogue: 1 龙井 ¥128.00 (50), 3 茶杯 ¥39.00 (100), 5 茶盘 ¥259.00 (10),
//! 6 紫砂壶 ¥599.00 (5).

use crate::helpers::{buy_form, TestApp, CONTACT};

use crate::helpers::cookie_browser as browser;

async fn post(
    app: &TestApp,
    http: &reqwest::Client,
    path: &str,
    form: &[(&str, String)],
) -> reqwest::Response {
    http.post(app.url(path)).form(form).send().await.unwrap()
}

async fn add(app: &TestApp, http: &reqwest::Client, sku: i64, num: i64) {
    let added = post(
        app,
        http,
        "/cart",
        &[("sku_id", sku.to_string()), ("num", num.to_string())],
    )
    .await;
    assert_eq!(added.status(), 303);
    assert_eq!(added.headers()["location"], "/cart");
}

async fn page(app: &TestApp, http: &reqwest::Client, path: &str) -> (u16, String) {
    let response = http.get(app.url(path)).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn contact() -> Vec<(&'static str, String)> {
    CONTACT.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

/// The order number a 303 to its pay page names.
fn paying(response: &reqwest::Response) -> String {
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap();
    location.strip_prefix("/pay/").unwrap().to_owned()
}

async fn count_orders(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM orders")
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_cart_of_three_products_becomes_one_order_with_three_items() {
    let app = TestApp::spawn().await;
    let http = browser();
    let before = [app.stock(1).await, app.stock(3).await, app.stock(5).await];
    add(&app, &http, 1, 2).await;
    add(&app, &http, 3, 1).await;
    add(&app, &http, 5, 1).await;
    add(&app, &http, 1, 1).await;
    let (status, cart) = page(&app, &http, "/cart").await;
    assert_eq!(status, 200);
    assert_eq!(cart.matches("<tr class=\"line\">").count(), 3, "{cart}");
    assert!(cart.contains("¥384.00"), "3 × ¥128.00: {cart}");
    assert!(cart.contains("¥682.00"), "the total: {cart}");
    assert!(cart.contains("<span class=\"count\">5</span>"), "{cart}");
    // Change a quantity; remove a line and add it back.
    let changed = post(
        &app,
        &http,
        "/cart/update",
        &[("sku_id", "1".into()), ("num", "2".into())],
    )
    .await;
    assert_eq!(changed.status(), 303);
    post(
        &app,
        &http,
        "/cart/update",
        &[("sku_id", "5".into()), ("num", "0".into())],
    )
    .await;
    let (_, cart) = page(&app, &http, "/cart").await;
    assert_eq!(cart.matches("<tr class=\"line\">").count(), 2);
    assert!(cart.contains("¥295.00"), "{cart}");
    add(&app, &http, 5, 1).await;
    // Bad changes are refused and change nothing.
    for (path, sku, num, status) in [
        ("/cart", "1", "0", 400),
        ("/cart", "1", "98", 400),
        ("/cart", "999", "1", 404),
        ("/cart", "x", "1", 404),
        ("/cart/update", "3", "100", 400),
        ("/cart/update", "3", "-1", 400),
    ] {
        let refused = post(
            &app,
            &http,
            path,
            &[("sku_id", sku.into()), ("num", num.into())],
        )
        .await;
        assert_eq!(refused.status(), status, "{path} {sku} {num}");
    }
    let (_, cart) = page(&app, &http, "/cart").await;
    assert!(cart.contains("¥554.00"), "2 × 128 + 39 + 259: {cart}");

    let (status, form) = page(&app, &http, "/checkout").await;
    assert_eq!(status, 200);
    for field in [
        "name=\"name\"",
        "name=\"phone\"",
        "name=\"address\"",
        "¥554.00",
    ] {
        assert!(form.contains(field), "{field}: {form}");
    }
    assert!(!form.contains("name=\"email\""));
    let placed = post(&app, &http, "/checkout", &contact()).await;
    let no = paying(&placed);
    assert_eq!(app.status(&no).await["total_fee"], 55_400);
    let items: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT product_id, num, unit_price FROM order_items WHERE out_trade_no = $1
         ORDER BY product_id",
    )
    .bind(&no)
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(items, [(1, 2, 12_800), (3, 1, 3_900), (5, 1, 25_900)]);
    assert_eq!(
        [app.stock(1).await, app.stock(3).await, app.stock(5).await],
        [before[0] - 2, before[1] - 1, before[2] - 1]
    );
    let (_, pay) = page(&app, &http, &format!("/pay/{no}")).await;
    for name in [
        "西湖龙井茶 250g",
        "景德镇青花瓷茶杯",
        "手工竹编茶盘",
        "¥554.00",
    ] {
        assert!(pay.contains(name), "{name}");
    }
    // The cart was emptied by the order.
    let (_, cart) = page(&app, &http, "/cart").await;
    assert!(cart.contains("购物车是空的"), "{cart}");
    let (status, _) = page(&app, &http, "/checkout").await;
    assert_eq!(status, 303, "an empty cart has nothing to check out");
}

#[tokio::test]
async fn a_cart_reserves_all_its_stock_or_none() {
    let app = TestApp::spawn().await;
    let http = browser();
    add(&app, &http, 1, 1).await;
    add(&app, &http, 3, 2).await;
    add(&app, &http, 6, 5).await;
    // Another shopper takes one of the five pots.
    app.place_order(6, 1).await;
    let (_, cart) = page(&app, &http, "/cart").await;
    assert!(cart.contains("Only 4 left"), "{cart}");
    let stock = [app.stock(1).await, app.stock(3).await, app.stock(6).await];
    let orders = count_orders(&app).await;
    let refused = post(&app, &http, "/checkout", &contact()).await;
    assert_eq!(refused.status(), 409);
    let body = refused.text().await.unwrap();
    assert!(body.contains("href=\"/cart\""), "back to the cart: {body}");
    assert_eq!(
        [app.stock(1).await, app.stock(3).await, app.stock(6).await],
        stock,
        "nothing reserved"
    );
    assert_eq!(count_orders(&app).await, orders);
    let (_, cart) = page(&app, &http, "/cart").await;
    assert_eq!(
        cart.matches("<tr class=\"line").count(),
        3,
        "the cart is kept"
    );
    post(
        &app,
        &http,
        "/cart/update",
        &[("sku_id", "6".into()), ("num", "4".into())],
    )
    .await;
    let no = paying(&post(&app, &http, "/checkout", &contact()).await);
    assert_eq!(
        app.status(&no).await["total_fee"],
        12_800 + 7_800 + 4 * 59_900
    );
    assert_eq!(app.stock(6).await, 0);
}

#[tokio::test]
async fn the_checkout_form_says_what_is_wrong_and_keeps_what_was_typed() {
    let app = TestApp::spawn().await;
    let http = browser();
    add(&app, &http, 1, 1).await;
    let stock = app.stock(1).await;
    let typed = [
        ("name", "<b>王</b>".to_owned()),
        ("phone", "138 0013 800".to_owned()),
        ("address", " ".to_owned()),
    ];
    let refused = post(&app, &http, "/checkout", &typed).await;
    assert_eq!(refused.status(), 400);
    let body = refused.text().await.unwrap();
    assert!(
        body.contains("value=\"&#60;b&#62;王&#60;/b&#62;\""),
        "kept, escaped: {body}"
    );
    assert!(body.contains("value=\"138 0013 800\""), "{body}");
    assert!(body.contains("11-digit"), "{body}");
    assert!(body.contains("Please enter the delivery address"), "{body}");
    assert_eq!(body.matches("aria-invalid=\"true\"").count(), 2);
    assert_eq!(count_orders(&app).await, 0);
    assert_eq!(app.stock(1).await, stock);

    // The direct buy: a bare buy form is sent to the contact form for that one product.
    let bare = post(
        &app,
        &http,
        "/orders",
        &[("sku_id", "3".into()), ("num", "2".into())],
    )
    .await;
    assert_eq!(bare.status(), 303);
    assert_eq!(bare.headers()["location"], "/checkout?sku_id=3&num=2");
    let (status, form) = page(&app, &http, "/checkout?sku_id=3&num=2").await;
    assert_eq!(status, 200);
    assert!(
        form.contains("景德镇青花瓷茶杯") && form.contains("¥78.00"),
        "{form}"
    );
    assert!(!form.contains("西湖龙井茶"), "the cart is not this order");
    assert_eq!(page(&app, &http, "/checkout?sku_id=3&num=0").await.0, 400);
    assert_eq!(page(&app, &http, "/checkout?sku_id=99&num=1").await.0, 404);
    // Its problems keep the product; then it is placed, and the cart stays as it was.
    let mut direct = vec![("sku_id", "3".to_owned()), ("num", "2".to_owned())];
    direct.push(("name", "王小明".into()));
    let refused = post(&app, &http, "/checkout", &direct).await;
    assert_eq!(refused.status(), 400);
    let body = refused.text().await.unwrap();
    assert!(body.contains("name=\"sku_id\" value=\"3\"") && body.contains("value=\"王小明\""));
    let no = paying(&post(&app, &http, "/checkout", &buy_form("3", "2")).await);
    assert_eq!(app.status(&no).await["total_fee"], 7_800);
    let (_, cart) = page(&app, &http, "/cart").await;
    assert!(cart.contains("西湖龙井茶 250g"), "{cart}");
    // POST /orders with a contact checks it the same way.
    let mut bad = buy_form("3", "1");
    bad[3].1 = "12345".into();
    assert_eq!(post(&app, &http, "/orders", &bad).await.status(), 400);

    // A shop of digital goods asks for nothing; one that asks for an email checks it.
    let digital = TestApp::spawn_with(&[("CHECKOUT_FIELDS", "")]).await;
    let placed = digital.buy_bare("1", "1").await;
    paying(&placed);
    let mailing = TestApp::spawn_with(&[("CHECKOUT_FIELDS", "email,note")]).await;
    let form = [
        ("sku_id", "1".to_owned()),
        ("num", "1".to_owned()),
        ("email", "wang@example".to_owned()),
        ("note", "请下午送".to_owned()),
    ];
    let refused = post(&mailing, &http, "/orders", &form).await;
    assert_eq!(refused.status(), 400);
    let body = refused.text().await.unwrap();
    assert!(
        body.contains("not an email address") && body.contains("请下午送"),
        "{body}"
    );
}

#[tokio::test]
async fn the_receipt_opens_with_its_token_and_only_the_buyer_sees_the_link() {
    let app = TestApp::spawn().await;
    let http = browser();
    add(&app, &http, 1, 1).await;
    add(&app, &http, 3, 2).await;
    let no = paying(&post(&app, &http, "/checkout", &contact()).await);
    let code_url = app.open_pay_page(&no).await;
    app.pay_in_sandbox(&code_url).await;
    assert!(
        app.wait_for_status(&no, "paid", std::time::Duration::from_secs(10))
            .await
    );
    let success = crate::helpers::success_page(&app, &http, &no).await;
    let prefix = format!("href=\"/orders/{no}?t=");
    let at = success
        .find(&prefix)
        .expect("the buyer's success page links the receipt")
        + prefix.len();
    let token = &success[at..at + 32];
    // Anyone else who knows the order number sees no link.
    let (_, elsewhere) = page(&app, &app.http, &format!("/pay/{no}/success")).await;
    assert!(!elsewhere.contains("/orders/"), "{elsewhere}");

    // The link works in any browser (it can be bookmarked), and shows the whole order.
    let receipt = app.get(&format!("/orders/{no}?t={token}")).await;
    assert_eq!(receipt.status(), 200);
    assert_eq!(receipt.headers()["cache-control"], "no-store");
    let body = receipt.text().await.unwrap();
    for expected in [
        "西湖龙井茶 250g",
        "景德镇青花瓷茶杯",
        "¥78.00",
        "¥206.00",
        "王小明",
        "13800138000",
        "浙江省杭州市西湖区龙井路 1 号",
        "Paid, to be shipped",
    ] {
        assert!(body.contains(expected), "{expected}: {body}");
    }
    // A wrong token, none, or another order's: not found, as if there were no order.
    let mut wrong = token.to_owned();
    wrong.replace_range(0..1, if token.starts_with('0') { "1" } else { "0" });
    let other = paying(&app.buy("1", "1").await);
    let other_token: String =
        sqlx::query_scalar("SELECT receipt_token FROM orders WHERE out_trade_no = $1")
            .bind(&other)
            .fetch_one(&app.db)
            .await
            .unwrap();
    for path in [
        format!("/orders/{no}?t={wrong}"),
        format!("/orders/{no}"),
        format!("/orders/{no}?t="),
        format!("/orders/{no}?t={other_token}"),
        format!("/orders/nosuchorder?t={token}"),
    ] {
        assert_eq!(app.get(&path).await.status(), 404, "{path}");
    }
    // A pending order's receipt says so and links to its pay page.
    let pending = app
        .get(&format!("/orders/{other}?t={other_token}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(pending.contains("Awaiting payment") && pending.contains(&format!("/pay/{other}")));

    // Shipped (by the store, as the merchant's console will): carrier and tracking number.
    let store = wxpay_checkout::store::Store::connect(
        &app.database_url,
        &wxpay_checkout::rt::AppRuntime::current(),
    )
    .await
    .unwrap();
    let no_parsed = wxpay_checkout::domain::OutTradeNo::parse(&no).unwrap();
    assert!(store
        .ship_order(&no_parsed, "顺丰速运", "SF1234567890", "merchant")
        .await
        .unwrap());
    let shipped = app
        .get(&format!("/orders/{no}?t={token}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        shipped.contains("Shipped")
            && shipped.contains("顺丰速运")
            && shipped.contains("SF1234567890"),
        "{shipped}"
    );
}
