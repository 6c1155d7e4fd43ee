//! The merchant console over HTTP: signing in, the lock-out, the session cookie, CSRF, every
//! route behind the sign-in, finding orders, shipping, the CSV export.

use crate::helpers::{buy_form, TestApp, ADMIN_PASSWORD};
use wxpay_checkout::web::admin::ROUTES;

use crate::helpers::cookie_browser as browser;

async fn login_as(
    app: &TestApp,
    http: &reqwest::Client,
    password: &str,
    client_ip: Option<&str>,
) -> reqwest::Response {
    let mut request = http
        .post(app.url("/admin/login"))
        .form(&[("password", password)]);
    if let Some(ip) = client_ip {
        request = request.header("x-forwarded-for", ip);
    }
    request.send().await.unwrap()
}

/// A signed-in console: its browser and the CSRF token its forms carry.
pub async fn sign_in(app: &TestApp) -> (reqwest::Client, String) {
    let http = browser();
    let response = login_as(app, &http, ADMIN_PASSWORD, None).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/admin");
    let page = http
        .get(app.url("/admin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    (http, csrf_of(&page))
}

/// A console page, answered 200, as the signed-in `http` sees it.
pub async fn page(app: &TestApp, http: &reqwest::Client, path: &str) -> String {
    let response = http.get(app.url(path)).send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.text().await.unwrap()
}

fn csrf_of(page: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let at = page.find(marker).expect("a form with a CSRF token") + marker.len();
    page[at..at + 32].to_owned()
}

#[tokio::test]
async fn every_console_route_needs_a_session() {
    let app = TestApp::spawn().await;
    let http = browser();
    let mut paths: Vec<(&str, String)> = ROUTES
        .iter()
        .map(|(method, path)| (*method, path.to_string()))
        .collect();
    // Paths the console does not have are behind the sign-in too.
    paths.push(("GET", "/admin/nothing-here".into()));
    paths.push(("POST", "/admin/orders".into()));
    for (method, path) in &paths {
        let request = match *method {
            "GET" => http.get(app.url(path)),
            _ => http.post(app.url(path)).form(&[("csrf", "x")]),
        };
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 303, "{method} {path}");
        assert_eq!(
            response.headers()["location"],
            "/admin/login",
            "{method} {path}"
        );
    }
    // A made-up session is no session.
    let forged = http
        .get(app.url("/admin"))
        .header("cookie", format!("admin_session={}", "ab".repeat(32)))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 303);
    // Signed in, every GET route answers.
    let (http, _) = sign_in(&app).await;
    for (method, path) in ROUTES {
        if *method == "GET" && !path.contains("2026") {
            let response = http.get(app.url(path)).send().await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
            assert_eq!(response.headers()["cache-control"], "no-store", "{path}");
        }
    }
}

#[tokio::test]
async fn a_wrong_password_gets_no_session_and_five_lock_the_client_out() {
    let app = TestApp::spawn_with(&[("TRUSTED_PROXIES", "127.0.0.1")]).await;
    let http = browser();
    let intruder = Some("203.0.113.9");
    for attempt in 1..=5 {
        let refused = login_as(&app, &http, "letmein", intruder).await;
        assert_eq!(refused.status(), 401, "attempt {attempt}");
        assert!(!refused.headers().contains_key("set-cookie"));
    }
    // Locked: even the right password is not checked now.
    let locked = login_as(&app, &http, ADMIN_PASSWORD, intruder).await;
    assert_eq!(locked.status(), 429);
    assert!(locked
        .text()
        .await
        .unwrap()
        .contains("Too many failed sign-ins"));
    assert_eq!(
        http.get(app.url("/admin")).send().await.unwrap().status(),
        303,
        "no session"
    );
    // Another client is not locked out.
    let merchant = login_as(&app, &http, ADMIN_PASSWORD, Some("198.51.100.7")).await;
    assert_eq!(merchant.status(), 303);
}

#[tokio::test]
async fn the_session_cookie_is_http_only_strict_and_secure_on_https() {
    let app = TestApp::spawn().await;
    let response = login_as(&app, &browser(), ADMIN_PASSWORD, None).await;
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    for attribute in [
        "admin_session=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/admin",
        "Max-Age=",
    ] {
        assert!(cookie.contains(attribute), "{attribute}: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    let https = TestApp::spawn_with(&[("PUBLIC_BASE_URL", "https://shop.example.com")]).await;
    let response = https
        .http
        .post(https.url("/admin/login"))
        .form(&[("password", ADMIN_PASSWORD)])
        .send()
        .await
        .unwrap();
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("Secure"), "{cookie}");

    // Signing out ends the session on the server, not only in the browser.
    let (http, csrf) = sign_in(&app).await;
    let token = {
        let response = login_as(&app, &http, ADMIN_PASSWORD, None).await;
        let cookie = response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .to_owned();
        cookie["admin_session=".len()..cookie.find(';').unwrap()].to_owned()
    };
    let page = http
        .get(app.url("/admin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let out = http
        .post(app.url("/admin/logout"))
        .form(&[("csrf", csrf_of(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    let replayed = app
        .http
        .get(app.url("/admin"))
        .header("cookie", format!("admin_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 303, "a signed-out token is dead");
    let _ = csrf;
}

#[tokio::test]
async fn a_form_without_its_csrf_token_is_refused() {
    let app = TestApp::spawn().await;
    let (http, csrf) = sign_in(&app).await;
    let change = |form: Vec<(&'static str, String)>| {
        http.post(app.url("/admin/products/LJ-250"))
            .form(&form)
            .send()
    };
    let price = |csrf: Option<&str>| {
        let mut form = vec![
            ("price", "99.90".to_owned()),
            ("stock", "7".to_owned()),
            ("active", "1".to_owned()),
        ];
        if let Some(csrf) = csrf {
            form.push(("csrf", csrf.to_owned()));
        }
        form
    };
    assert_eq!(change(price(None)).await.unwrap().status(), 403);
    assert_eq!(
        change(price(Some(&"0".repeat(32)))).await.unwrap().status(),
        403
    );
    let foreign = http
        .post(app.url("/admin/products/LJ-250"))
        .header("sec-fetch-site", "cross-site")
        .form(&price(Some(&csrf)))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    let row: (i64, i64) =
        sqlx::query_as("SELECT price_fen, stock FROM products WHERE sku = 'LJ-250'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(row, (12_800, 50), "nothing changed");
    // With the token: changed; a bad price is refused with the import's rule.
    assert_eq!(change(price(Some(&csrf))).await.unwrap().status(), 303);
    let row: (i64, i64) =
        sqlx::query_as("SELECT price_fen, stock FROM products WHERE sku = 'LJ-250'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(row, (9_990, 7));
    let mut bad = price(Some(&csrf));
    bad[0].1 = "9.999".into();
    assert_eq!(change(bad).await.unwrap().status(), 400);
}

#[tokio::test]
async fn filters_and_search_find_the_right_orders_and_pages_do_not_repeat() {
    let app = TestApp::spawn().await;
    // One paid order for 王小明, one pending for 李四, and 55 more pending.
    let paid = app.place_order(1, 1).await;
    let code_url = app.open_pay_page(&paid).await;
    app.pay_in_sandbox(&code_url).await;
    assert!(
        app.wait_for_status(&paid, "paid", std::time::Duration::from_secs(10))
            .await
    );
    let tid: String =
        sqlx::query_scalar("SELECT transaction_id FROM orders WHERE out_trade_no = $1")
            .bind(&paid)
            .fetch_one(&app.db)
            .await
            .unwrap();
    let mut other = buy_form("3", "1");
    other[2].1 = "李四".into();
    other[3].1 = "139 1234 5678".into();
    let li = app
        .http
        .post(app.url("/orders"))
        .form(&other)
        .send()
        .await
        .unwrap();
    let li = li.headers()["location"].to_str().unwrap()["/pay/".len()..].to_owned();
    for _ in 0..55 {
        app.place_order(3, 1).await;
    }
    let (http, _) = sign_in(&app).await;
    let list = |query: String| {
        let http = http.clone();
        let url = app.url(&format!("/admin/orders?{query}"));
        async move {
            let page = http.get(url).send().await.unwrap();
            assert_eq!(page.status(), 200);
            page.text().await.unwrap()
        }
    };
    let rows = |page: &str| page.matches("class=\"order-row").count();
    let has = |page: &str, no: &str| page.contains(&format!(">{no}</a>"));

    let page = list("status=paid".into()).await;
    assert_eq!(rows(&page), 1);
    assert!(has(&page, &paid));
    for query in [&paid, &tid] {
        let page = list(format!("q={query}")).await;
        assert_eq!(rows(&page), 1, "{query}");
        assert!(has(&page, &paid), "{query}");
    }
    // 56 orders are 王小明's, with his phone typed as he would: a full page, none of 李四's.
    for query in ["王小明", "+86%20138%200013%208000"] {
        let page = list(format!("q={query}")).await;
        assert_eq!(rows(&page), 50, "{query}");
        assert!(!has(&page, &li), "{query}");
    }
    let page = list("q=13912345678".into()).await;
    assert_eq!(rows(&page), 1);
    assert!(has(&page, &li));
    assert_eq!(rows(&list("q=nobody".into()).await), 0);
    assert_eq!(rows(&list("status=refund_due".into()).await), 0);
    let today = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(
        rows(&list(format!("from={today}&to={today}&status=paid")).await),
        1
    );
    assert_eq!(rows(&list("from=2020-01-01&to=2020-01-02".into()).await), 0);
    let bad = http
        .get(app.url("/admin/orders?status=lost"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // 57 pending: a page of 50, then the rest, no order twice.
    let first = list("status=pending".into()).await;
    assert_eq!(rows(&first), 50);
    let marker = "id=\"next-page\"";
    assert!(first.contains(marker));
    let href = first[..first.find(marker).unwrap()]
        .rsplit("href=\"")
        .next()
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&#38;", "&");
    let second = http
        .get(app.url(&href))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(rows(&second), 6);
    assert!(!second.contains(marker));
    let numbers = |page: &str| -> Vec<String> {
        page.split("<a href=\"/admin/orders/")
            .skip(1)
            .map(|s| s.split('"').next().unwrap().to_owned())
            .collect()
    };
    let mut all = numbers(&first);
    all.extend(numbers(&second));
    let unique: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!(unique.len(), 56);
}

#[tokio::test]
async fn shipping_shows_on_the_receipt_and_the_timeline_and_the_csv_adds_up() {
    let app = TestApp::spawn().await;
    let shopper = browser();
    let placed = shopper
        .post(app.url("/orders"))
        .form(&buy_form("1", "2"))
        .send()
        .await
        .unwrap();
    let no = placed.headers()["location"].to_str().unwrap()["/pay/".len()..].to_owned();
    let code_url = app.open_pay_page(&no).await;
    app.pay_in_sandbox(&code_url).await;
    assert!(
        app.wait_for_status(&no, "paid", std::time::Duration::from_secs(10))
            .await
    );
    let unpaid = app.place_order(3, 1).await;
    let (http, csrf) = sign_in(&app).await;
    let ship = |no: &str, carrier: &str| {
        http.post(app.url(&format!("/admin/orders/{no}/ship")))
            .form(&[
                ("csrf", csrf.as_str()),
                ("carrier", carrier),
                ("tracking_no", "SF1234567890"),
            ])
            .send()
    };
    assert_eq!(ship(&unpaid, "顺丰速运").await.unwrap().status(), 409);
    assert_eq!(ship(&no, "").await.unwrap().status(), 400);
    let shipped = ship(&no, "顺丰速运").await.unwrap();
    assert_eq!(shipped.status(), 303);
    assert_eq!(ship(&no, "顺丰速运").await.unwrap().status(), 409, "once");

    let page = http
        .get(app.url(&format!("/admin/orders/{no}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for kind in [
        "event-created",
        "event-prepay",
        "event-notify",
        "event-paid",
        "event-shipped",
    ] {
        assert!(page.contains(kind), "{kind}: {page}");
    }
    assert!(page.contains("merchant (console, 127.0.0.1)"), "{page}");
    assert!(page.contains("王小明") && page.contains("13800138000"));

    let success = crate::helpers::success_page(&app, &shopper, &no).await;
    let at = success.find("/orders/").unwrap();
    let link = success[at..].split('"').next().unwrap().to_owned();
    let receipt = app.get(&link).await.text().await.unwrap();
    assert!(
        receipt.contains("顺丰速运") && receipt.contains("SF1234567890"),
        "{receipt}"
    );

    // The CSV: a BOM, then every order, amounts in yuan that add up to the orders' total.
    let csv = http.get(app.url("/admin/orders.csv")).send().await.unwrap();
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let bytes = csv.bytes().await.unwrap();
    assert!(bytes.starts_with("\u{feff}".as_bytes()));
    let mut reader = csv::Reader::from_reader(&bytes[3..]);
    let headers = reader.headers().unwrap().clone();
    let amount = headers.iter().position(|h| h == "amount_yuan").unwrap();
    let mut fen = 0i64;
    let mut count = 0;
    for record in reader.records() {
        let record = record.unwrap();
        let (yuan, cents) = record[amount].split_once('.').unwrap();
        fen += yuan.parse::<i64>().unwrap() * 100 + cents.parse::<i64>().unwrap();
        count += 1;
    }
    let (orders, total): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), CAST(SUM(total_fee) AS BIGINT) FROM orders")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!((count, fen), (orders, total));
}

#[tokio::test]
async fn without_a_configured_hash_a_password_is_made_logged_once_and_kept() {
    use crate::crash::{free_port, start_shop_with};
    let dir = tempfile::TempDir::new().unwrap();
    let database_url = crate::helpers::database_url(&dir).await;
    let port = free_port();
    let log_of = |shop: &crate::crash::Shop| {
        std::fs::read_to_string(shop.1.as_ref().unwrap().path()).unwrap()
    };
    let sign_in_with = |password: String| async move {
        crate::helpers::no_redirects()
            .post(format!("http://127.0.0.1:{port}/admin/login"))
            .form(&[("password", password)])
            .send()
            .await
            .unwrap()
            .status()
    };
    let mut shop = start_shop_with(&database_url, port, &[]).await;
    let log = log_of(&shop);
    let marker = "password=";
    let at = log
        .find(marker)
        .expect("the generated password is in the log")
        + marker.len();
    let password: String = log[at..].chars().take(20).collect();
    assert!(log.contains("merchant console password generated"), "{log}");
    assert_eq!(sign_in_with(password.clone()).await, 303);
    assert_eq!(sign_in_with("wrong".into()).await, 401);
    shop.kill();

    // Restarted: the same password, and not printed again.
    let shop = start_shop_with(&database_url, port, &[]).await;
    assert!(!log_of(&shop).contains("password"), "printed once only");
    assert_eq!(sign_in_with(password).await, 303);
}
