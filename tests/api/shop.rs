//! The shopper's journey against the real server and the real built-in sandbox over HTTP.

use std::time::Duration;

use crate::helpers::{buy_form, TestApp};

/// Rasterises the page's inline SVG and decodes the QR code in it.
fn decode_qr(page: &str) -> String {
    let start = page.find("<svg").expect("the page has an inline svg");
    let end = page[start..].find("</svg>").expect("the svg ends") + start + "</svg>".len();
    let svg = &page[start..end];
    let tree = resvg::usvg::Tree::from_str(svg, &resvg::usvg::Options::default()).unwrap();
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width() * 2, size.height() * 2).unwrap();
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::from_scale(2.0, 2.0),
        &mut pixmap.as_mut(),
    );
    let (w, h) = (pixmap.width() as usize, pixmap.height() as usize);
    let luma: Vec<u8> = pixmap
        .data()
        .chunks(4)
        .map(|px| {
            // Composite over white: transparent counts as light.
            let a = px[3] as u32;
            let v = (px[0] as u32 * 299 + px[1] as u32 * 587 + px[2] as u32 * 114) / 1000;
            ((v * a + 255 * (255 - a)) / 255) as u8
        })
        .collect();
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| luma[y * w + x]);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "exactly one QR code on the page");
    let (_, content) = grids[0].decode().expect("the QR code decodes");
    content
}

#[tokio::test]
async fn the_catalogue_lists_products_with_prices_in_yuan() {
    let app = TestApp::spawn().await;
    let page = app.get("/").await.text().await.unwrap();
    for shown in [
        "西湖龙井茶 250g",
        "¥128.00",
        "¥88.50",
        "action=\"/orders\"",
        "name=\"sku_id\"",
    ] {
        assert!(page.contains(shown), "catalogue lacks {shown}");
    }
    // Static assets are served from the binary.
    assert_eq!(app.get("/static/app.css").await.status(), 200);
    assert_eq!(app.get("/static/pay.js").await.status(), 200);
    assert_eq!(app.get("/static/nope.js").await.status(), 404);
}

#[tokio::test]
async fn buy_then_the_pay_page_shows_a_qr_code_of_the_code_url_and_reuses_it() {
    let app = TestApp::spawn().await;
    let response = app.buy("1", "2").await;
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let no = location.strip_prefix("/pay/").unwrap();
    assert!(no.len() <= 32);

    let page = app.get(&location).await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("<svg"));
    assert!(page.contains("aria-label="));
    assert!(page.contains("¥256.00"), "amount in yuan");
    assert!(page.contains("西湖龙井茶 250g"));
    assert!(page.contains(no));
    assert!(page.contains("/static/pay.js"));
    assert!(
        page.contains(&format!("id=\"check-paid\" href=\"/pay/{no}\"")),
        "no-JavaScript fallback: a link that asks again"
    );
    assert!(page.contains("/scan?code_url=weixin"), "sandbox scan link");
    let code_url = app.sandbox_order(no).await["code_url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(decode_qr(&page), code_url);

    // A refresh reuses the stored code_url: no second unifiedorder.
    let again = app.get(&location).await.text().await.unwrap();
    assert_eq!(decode_qr(&again), code_url);
    assert_eq!(app.sandbox_stats().await["unifiedorder"], 1);
    // The seed route gives the same code_url, without a new unifiedorder either.
    let native: serde_json::Value = app
        .get(&format!(
            "/weixin/pay/create/native?out_trade_no={no}&total_fee=25600"
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(native["code"], 20000);
    assert_eq!(native["data"]["code_url"], code_url.as_str());
    assert_eq!(native["data"]["total_fee"], 25600);
    assert_eq!(app.sandbox_stats().await["unifiedorder"], 1);
}

#[tokio::test]
async fn paying_in_the_sandbox_shows_in_the_status_endpoint_and_the_pages() {
    let app = TestApp::spawn().await;
    let no = app.place_order(2, 1).await;
    assert_eq!(app.status(&no).await["trade_state"], "NOTPAY");
    let code_url = app.open_pay_page(&no).await;
    let receipt = app.pay_in_sandbox(&code_url).await;
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = app.status(&no).await;
        if status["trade_state"] == "SUCCESS" || tokio::time::Instant::now() > until {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status["trade_state"], "SUCCESS");
    assert_eq!(status["transaction_id"], receipt["transaction_id"]);
    assert_eq!(status["total_fee"], 8850);
    assert_eq!(status["time_end"].as_str().unwrap().len(), 14);
    // The pay page now leads to the success page.
    let page = app.get(&format!("/pay/{no}")).await;
    assert_eq!(page.status(), 303);
    assert_eq!(
        page.headers()["location"],
        format!("/pay/{no}/success").as_str()
    );
    let success = app
        .get(&format!("/pay/{no}/success"))
        .await
        .text()
        .await
        .unwrap();
    assert!(success.contains(receipt["transaction_id"].as_str().unwrap()));
    assert!(success.contains("¥88.50"));
}

#[tokio::test]
async fn the_status_endpoint_finds_a_payment_whose_notify_was_lost() {
    let app = TestApp::spawn().await;
    app.set_faults(serde_json::json!({ "drop_notify": 1.0 }))
        .await;
    let no = app.place_order(3, 1).await;
    let code_url = app.open_pay_page(&no).await;
    app.pay_in_sandbox(&code_url).await;
    // The first poll asks WeChat (orderquery) and confirms through the payments channel.
    let status = app.status(&no).await;
    assert_eq!(status["trade_state"], "SUCCESS", "{status}");
    let (state, tid, pay_time) = app.order_row(&no).await;
    assert_eq!(state, "paid");
    assert_eq!(tid.unwrap().len(), 28);
    assert!(pay_time.is_some());
}

#[tokio::test]
async fn polls_are_throttled_and_share_one_query() {
    let app = TestApp::spawn().await;
    let no = app.place_order(1, 1).await;
    app.open_pay_page(&no).await;
    let polls: Vec<_> = (0..20).map(|_| app.status(&no)).collect();
    for status in futures_util::future::join_all(polls).await {
        assert_eq!(status["trade_state"], "NOTPAY");
    }
    for _ in 0..5 {
        app.status(&no).await;
    }
    assert_eq!(app.sandbox_stats().await["orderquery"], 1);
}

#[tokio::test]
async fn two_hundred_buyers_of_fifty_units_make_exactly_fifty_orders() {
    let app = TestApp::spawn().await;
    sqlx::query("UPDATE products SET stock = 50 WHERE id = 1")
        .execute(&app.db)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let http = app.http.clone();
        let url = app.url("/orders");
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .form(&buy_form("1", "1"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut created = 0;
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            303 => created += 1,
            409 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((created, refused), (50, 150));
    assert_eq!(app.stock(1).await, 0);
    let orders: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(orders, 50);
}

#[tokio::test]
async fn bad_input_gets_a_clear_page_and_reserves_nothing() {
    let app = TestApp::spawn().await;
    let before = app.stock(6).await;
    for (sku, num, status) in [
        ("999", "1", 404),
        ("abc", "1", 404),
        ("", "1", 404),
        ("6", "0", 400),
        ("6", "-1", 400),
        ("6", "100", 400),
        ("6", "99999999999999999999", 400),
        ("6", "1.5", 400),
        ("6", "abc", 400),
        ("6", "", 400),
        ("6", &(before + 1).to_string(), 409),
    ] {
        let response = app.buy(sku, num).await;
        assert_eq!(response.status(), status, "sku_id={sku} num={num}");
        let page = response.text().await.unwrap();
        assert!(page.contains("<h1>"), "an HTML page for {sku}/{num}");
    }
    assert_eq!(app.stock(6).await, before);
    let orders: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(orders, 0);
    // Unknown and malformed order numbers.
    assert_eq!(app.get("/pay/nosuchorder").await.status(), 404);
    assert_eq!(app.get("/pay/bad%20number").await.status(), 404);
    let unknown = app
        .get("/weixin/pay/status/query?out_trade_no=nosuchorder")
        .await;
    assert_eq!(unknown.status(), 404);
    let body: serde_json::Value = unknown.json().await.unwrap();
    assert_eq!(
        (body["flag"].as_bool(), body["code"].as_i64()),
        (Some(false), Some(20001))
    );
}

#[tokio::test]
async fn a_total_fee_that_disagrees_with_the_order_is_refused() {
    let app = TestApp::spawn().await;
    let no = app.place_order(3, 2).await;
    for bad in ["1", "7799", "abc"] {
        let response = app
            .get(&format!(
                "/weixin/pay/create/native?out_trade_no={no}&total_fee={bad}"
            ))
            .await;
        assert_eq!(response.status(), 400);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["flag"], false);
    }
    assert_eq!(
        app.sandbox_stats().await["unifiedorder"],
        0,
        "nothing sent to WeChat"
    );
}

#[tokio::test]
async fn wechat_trouble_gives_a_try_again_page_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let no = app.place_order(1, 1).await;
    for faults in [
        serde_json::json!({ "system_error": 1.0 }),
        serde_json::json!({ "http_5xx": 1.0 }),
    ] {
        app.set_faults(faults).await;
        let page = app.get(&format!("/pay/{no}")).await;
        assert_eq!(page.status(), 503);
        let text = page.text().await.unwrap();
        assert!(text.contains(&format!("/pay/{no}")), "a way to try again");
        let code_url: Option<String> =
            sqlx::query_scalar("SELECT code_url FROM orders WHERE out_trade_no = $1")
                .bind(&no)
                .fetch_one(&app.db)
                .await
                .unwrap();
        assert_eq!(code_url, None);
    }
    app.set_faults(serde_json::json!({})).await;
    assert_eq!(app.get(&format!("/pay/{no}")).await.status(), 200);
}

#[tokio::test]
async fn orderpaid_on_unifiedorder_is_treated_as_paid() {
    let app = TestApp::spawn().await;
    app.set_faults(serde_json::json!({ "drop_notify": 1.0 }))
        .await;
    let no = app.place_order(2, 1).await;
    let code_url = app.open_pay_page(&no).await;
    app.pay_in_sandbox(&code_url).await;
    // The shop lost its record of the prepay (a crash between unifiedorder and storing it):
    // the next visit calls unifiedorder again, which answers ORDERPAID.
    sqlx::query(
        "UPDATE orders SET prepay_id = NULL, code_url = NULL, code_url_expires_at = NULL,
                           sign_type = NULL WHERE out_trade_no = $1",
    )
    .bind(&no)
    .execute(&app.db)
    .await
    .unwrap();
    // The running shop may serve its cached copy of the order for up to 3 s first.
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    let page = loop {
        let page = app.get(&format!("/pay/{no}")).await;
        if page.status() != 200 || tokio::time::Instant::now() > until {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(page.status(), 303);
    assert_eq!(
        page.headers()["location"],
        format!("/pay/{no}/success").as_str()
    );
    assert_eq!(app.order_row(&no).await.0, "paid");
}

#[tokio::test]
async fn fifty_concurrent_first_visits_make_one_unifiedorder() {
    let app = TestApp::spawn().await;
    let no = app.place_order(1, 1).await;
    // WeChat answers slowly, so every visit arrives while the first unifiedorder is in flight.
    app.set_faults(serde_json::json!({ "latency_ms": 300 }))
        .await;
    let visits = (0..50).map(|i| {
        let path = if i % 2 == 0 {
            format!("/pay/{no}")
        } else {
            format!("/weixin/pay/create/native?out_trade_no={no}")
        };
        let app = &app;
        async move { app.get(&path).await.status().as_u16() }
    });
    let statuses = futures_util::future::join_all(visits).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(app.sandbox_stats().await["unifiedorder"], 1);
}

#[tokio::test]
async fn visits_in_an_orders_last_seconds_make_no_new_unifiedorder() {
    let app = TestApp::spawn().await;
    let no = app.place_order(1, 1).await;
    app.open_pay_page(&no).await;
    // The order's last seconds: its prepay lives as long as it does, as the shop stores it.
    let end = chrono::Utc::now().timestamp() + 6;
    sqlx::query(
        "UPDATE orders SET expires_at = $1, code_url_expires_at = $1 WHERE out_trade_no = $2",
    )
    .bind(end)
    .bind(&no)
    .execute(&app.db)
    .await
    .unwrap();
    // Visit until the order is over, as a shopper refreshing the page would.
    let mut seen_last_seconds = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let page = app.get(&format!("/pay/{no}")).await;
        if page.status() == 303 {
            break;
        }
        assert_eq!(page.status(), 200);
        let page = page.text().await.unwrap();
        seen_last_seconds |= page.contains("<time id=\"countdown\">00:0");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the order never ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        seen_last_seconds,
        "the page showed the order's last seconds"
    );
    assert_eq!(app.sandbox_stats().await["unifiedorder"], 1);
}

#[tokio::test]
async fn the_shops_name_filing_number_and_contact_are_on_every_page_and_first_in_wechats_body() {
    let app = TestApp::spawn_with(&[
        ("SHOP_NAME", "龙井茶庄"),
        ("ICP_BEIAN", "浙ICP备12345678号-1"),
        ("SHOP_CONTACT", "0571-8888 8888 <周一至周五>"),
    ])
    .await;
    let no = app.place_order(1, 1).await;
    for path in [
        "/".to_string(),
        "/cart".to_string(),
        format!("/pay/{no}"),
        // An error page too.
        "/pay/no-such-order".to_string(),
    ] {
        let page = app.get(&path).await.text().await.unwrap();
        assert!(
            page.contains("<a href=\"/\" class=\"brand\">龙井茶庄</a>"),
            "{path}: {page}"
        );
        // MIIT's rule: the filing number at the foot of the page, linked to its system.
        assert!(
            page.contains(
                "<a id=\"icp-beian\" href=\"https://beian.miit.gov.cn/\" target=\"_blank\" \
                 rel=\"noopener\">浙ICP备12345678号-1</a>"
            ),
            "{path}: {page}"
        );
        assert!(
            page.contains("客服 Customer service: 0571-8888 8888 &#60;周一至周五&#62;"),
            "{path}: the contact, escaped: {page}"
        );
    }
    // Beside the amount, whom the shopper pays; under the code, why a phone cannot scan it.
    let pay = app.get(&format!("/pay/{no}")).await.text().await.unwrap();
    assert!(pay.contains("收款方 Payee: 龙井茶庄"), "{pay}");
    assert!(pay.contains("id=\"scan-hint\""), "{pay}");
    // Without the variables the footer carries neither.
    let plain = TestApp::spawn().await;
    let page = plain.get("/").await.text().await.unwrap();
    assert!(!page.contains("icp-beian") && !page.contains("shop-contact"));
    let body: String = sqlx::query_scalar("SELECT body FROM orders WHERE out_trade_no = $1")
        .bind(&no)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(body, "龙井茶庄-西湖龙井茶 250g x1");
}

#[tokio::test]
async fn a_live_shop_starts_with_no_demo_products() {
    let dir = tempfile::TempDir::new().unwrap();
    let url = crate::helpers::database_url(&dir).await;
    let settings = crate::helpers::settings(
        &dir,
        &[
            ("DATABASE_URL", url.as_str()),
            ("WEIXIN_APPID", "wx1234567890abcdef"),
            ("WEIXIN_PARTNER", "1234567890"),
            ("WEIXIN_PARTNERKEY", "Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0Lm"),
            ("WEIXIN_API_BASE", "http://127.0.0.1:9/"),
            ("SHOP_NAME", "龙井茶庄"),
            ("AUTO_REFUND_LATE_PAYMENTS", "false"),
            // A live shop that asks for contact details seals them with a key of its own.
            (
                "CONTACT_KEY",
                "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            ),
        ],
    );
    let app = wxpay_checkout::startup::Application::build(&settings)
        .await
        .unwrap();
    let addr = app.addr();
    tokio::spawn(app.run());
    let db = crate::helpers::raw_pool(&url).await;
    let products: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM products")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(products, 0);
    let page = reqwest::get(format!("http://{addr}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("西湖龙井茶"));
}
