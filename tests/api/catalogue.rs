//! The merchant's catalogue: imported from CSV with the real command (`wxpay-checkout catalogue
//! import`) and from TOML at start-up (`CATALOGUE_FILE`), upserted by sku, all or nothing, and
//! sold in the shop.

use std::process::Command;

use crate::helpers::{database_url, raw_pool, TestApp};

/// `wxpay-checkout catalogue import FILE [--stock]` against `database_url`: its exit status,
/// standard output and standard error.
async fn import(database_url: &str, file: &std::path::Path, stock: bool) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wxpay-checkout"));
    command
        .args(["catalogue", "import"])
        .arg(file)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "error");
    if stock {
        command.arg("--stock");
    }
    // The shop under test may share this runtime: the command runs off it.
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A CSV catalogue of `n` products; every tenth inactive; `price_shift` yuan added to each price.
fn csv_catalogue(n: usize, price_shift: usize) -> String {
    let mut csv = String::from("sku,name,price,stock,description,active\n");
    for i in 1..=n {
        csv.push_str(&format!(
            "TEA-{i:04},\"茶 {i} 号, 250g\",{}.{:02},{},\"第 {i} 款 \"\"特级\"\"\",{}\n",
            1 + i % 500 + price_shift,
            i % 100,
            i % 50 + 1,
            if i % 10 == 0 { "false" } else { "true" }
        ));
    }
    csv
}

async fn prices(db: &sqlx::AnyPool) -> (i64, i64) {
    sqlx::query_as("SELECT COUNT(*), CAST(COALESCE(SUM(price_fen), 0) AS BIGINT) FROM products")
        .fetch_one(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_thousand_product_csv_imports_whole_and_a_bad_line_changes_nothing() {
    let dir = tempfile::TempDir::new().unwrap();
    let url = database_url(&dir).await;
    let file = dir.path().join("catalogue.csv");
    std::fs::write(&file, csv_catalogue(1_000, 0)).unwrap();
    let (ok, out, err) = import(&url, &file, false).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("1000 products — 1000 added, 0 updated, 0 unchanged"),
        "{out}"
    );
    // The shop runs on it (and the next import runs beside the shop, as a merchant's would).
    let app = TestApp::spawn_with(&[("DATABASE_URL", url.as_str())]).await;
    let before = prices(&app.db).await;
    assert_eq!(before.0, 1_000);

    // The same products dearer, but line 500 has a price with three decimals: refused whole.
    let mut lines: Vec<String> = csv_catalogue(1_000, 1).lines().map(String::from).collect();
    lines[499] = "TEA-0499,\"茶 499 号\",12.345,1,,true".into();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let (ok, out, err) = import(&url, &file, false).await;
    assert!(!ok, "{out}");
    assert!(err.contains("line 500"), "names the line: {err}");
    assert!(
        err.contains("12.345") && err.contains("nothing was imported"),
        "{err}"
    );
    assert_eq!(prices(&app.db).await, before, "nothing changed");

    // The shop sells the 900 active ones, names and descriptions as written.
    let page = app.get("/").await.text().await.unwrap();
    assert_eq!(page.matches("<li class=\"product\">").count(), 900);
    assert!(page.contains("茶 1 号, 250g") && page.contains("特级"));
    assert!(
        !page.contains("茶 10 号, 250g"),
        "inactive products are hidden"
    );
    assert!(
        !page.contains("西湖龙井茶"),
        "no demo products in a shop with a catalogue"
    );
}

#[tokio::test]
async fn a_re_import_updates_names_and_prices_but_stock_only_when_asked() {
    let dir = tempfile::TempDir::new().unwrap();
    let url = database_url(&dir).await;
    let file = dir.path().join("goods.csv");
    std::fs::write(
        &file,
        "sku,name,price,stock\nLJ,龙井 250g,128.00,10\nPE,普洱 357g,88.5,5\n",
    )
    .unwrap();
    let (ok, _, err) = import(&url, &file, false).await;
    assert!(ok, "{err}");
    let app = TestApp::spawn_with(&[("DATABASE_URL", url.as_str())]).await;
    let lj: i64 = sqlx::query_scalar("SELECT id FROM products WHERE sku = 'LJ'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let pe: i64 = sqlx::query_scalar("SELECT id FROM products WHERE sku = 'PE'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let no = app.place_order(lj, 2).await;
    assert_eq!(app.stock(lj).await, 8);

    // Renamed and repriced, with a stock figure: the stock stays what sales left.
    std::fs::write(
        &file,
        "sku,name,price,stock,active\nLJ,明前龙井 250g,138.00,100,true\nPE,普洱 357g,88.50,5,false\n",
    )
    .unwrap();
    let (ok, out, err) = import(&url, &file, false).await;
    assert!(ok, "{err}");
    assert!(out.contains("0 added, 2 updated, 0 unchanged"), "{out}");
    let page = app.get("/").await.text().await.unwrap();
    assert!(
        page.contains("明前龙井 250g") && page.contains("¥138.00"),
        "{page}"
    );
    assert!(!page.contains("普洱"), "deactivated: hidden");
    assert_eq!(app.stock(lj).await, 8);
    // The order placed before keeps its price and its name, and is still served.
    let pay = app.get(&format!("/pay/{no}")).await;
    assert_eq!(pay.status(), 200);
    let pay = pay.text().await.unwrap();
    assert!(
        pay.contains("龙井 250g") && pay.contains("¥256.00"),
        "{pay}"
    );
    // A deactivated product cannot be bought or put in a cart.
    assert_eq!(app.buy(&pe.to_string(), "1").await.status(), 404);

    let (ok, out, err) = import(&url, &file, true).await;
    assert!(ok, "{err}");
    assert!(out.contains("(stock set)"), "{out}");
    assert_eq!(app.stock(lj).await, 100);
}

#[tokio::test]
async fn a_toml_catalogue_file_is_imported_at_start_up() {
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("catalogue.toml");
    std::fs::write(
        &file,
        r#"
[[product]]
sku = "DJ-100"
name = "大红袍 100g"
price = "66.60"
stock = 12
description = "武夷岩茶"

[[product]]
sku = "BC-50"
name = "白毫银针 50g"
price = 98.5
stock = 3
active = false
"#,
    )
    .unwrap();
    let path = file.display().to_string();
    let app = TestApp::spawn_with(&[("CATALOGUE_FILE", path.as_str())]).await;
    let page = app.get("/").await.text().await.unwrap();
    assert_eq!(page.matches("<li class=\"product\">").count(), 1);
    assert!(page.contains("大红袍 100g") && page.contains("¥66.60") && page.contains("武夷岩茶"));
    assert!(!page.contains("白毫银针"), "inactive");
    assert!(
        !page.contains("西湖龙井茶"),
        "the demo goes only into an empty shop"
    );

    // A bad line stops start-up, naming the file and the line.
    std::fs::write(
        &file,
        "[[product]]\nsku = \"A\"\nname = \"a\"\nprice = \"1\"\n\n[[product]]\nsku = \"B\"\nname = \"b\"\nprice = \"-3\"\n",
    )
    .unwrap();
    let dir2 = tempfile::TempDir::new().unwrap();
    let url = database_url(&dir2).await;
    let settings = crate::helpers::settings(
        &dir2,
        &[
            ("DATABASE_URL", url.as_str()),
            ("CATALOGUE_FILE", path.as_str()),
        ],
    );
    let err = match wxpay_checkout::startup::Application::build(&settings).await {
        Ok(_) => panic!("a bad catalogue must stop start-up"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("CATALOGUE_FILE") && err.contains("line 6"),
        "{err}"
    );
    let db = raw_pool(&url).await;
    assert_eq!(prices(&db).await.0, 0, "nothing imported, nothing seeded");
}
