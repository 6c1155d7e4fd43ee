//! Backups and restore, with the real binary beside a running shop: a backup taken while orders
//! pour in restores to a sound database holding every order committed before it began;
//! scheduled backups rotate; restore refuses a live database and a bad file.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::admin::sign_in;
use crate::helpers::{on_postgres, wait_until, TestApp};

/// Runs the binary with `args` against `database_url`: exit code, stdout, stderr.
async fn run(database_url: &str, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wxpay-checkout"));
    command
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "error");
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn orders_in(url: &str) -> Vec<String> {
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(integrity, "ok");
    let orders = sqlx::query_scalar("SELECT out_trade_no FROM orders")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    orders
}

#[tokio::test]
async fn a_backup_taken_under_load_restores_every_order_committed_before_it() {
    if on_postgres() {
        return; // backups are SQLite's; PostgreSQL has pg_dump
    }
    let app = Arc::new(TestApp::spawn().await);
    sqlx::query("UPDATE products SET stock = 100000")
        .execute(&app.db)
        .await
        .unwrap();
    // 50 orders a second, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (app, stop) = (app.clone(), stop.clone());
        tokio::spawn(async move {
            let mut placed = 0;
            while !stop.load(Ordering::Relaxed) {
                app.place_order(1, 1).await;
                placed += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            placed
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let committed: Vec<String> = sqlx::query_scalar("SELECT out_trade_no FROM orders")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert!(committed.len() >= 10, "the load is running");
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("copy.db");
    let (code, out, err) = run(&app.database_url, &["backup", file.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("integrity ok"), "{out}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    assert!(load.await.unwrap() > committed.len());

    // Restored into a new place, it holds every order committed before it began.
    let restored = format!("sqlite://{}/restored/shop.db", dir.path().display());
    let (code, out, err) = run(&restored, &["restore", file.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("restored"), "{out}");
    let held = orders_in(&restored).await;
    let missing: Vec<&String> = committed.iter().filter(|no| !held.contains(no)).collect();
    assert!(missing.is_empty(), "{missing:?}");

    // The live shop's database is not to be overwritten; nor is anything by a bad file.
    let (code, _, err) = run(&app.database_url, &["restore", file.to_str().unwrap()]).await;
    assert_eq!(code, 1);
    assert!(err.contains("in use by a running shop"), "{err}");
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, b"not a database at all, just bytes ".repeat(200)).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    let torn = dir.path().join("torn.db");
    std::fs::write(&torn, &bytes[..bytes.len() / 2]).unwrap();
    for bad in [&garbage, &torn] {
        let before = std::fs::read(dir.path().join("restored/shop.db")).unwrap();
        let (code, _, err) = run(&restored, &["restore", bad.to_str().unwrap()]).await;
        assert_eq!(code, 1, "{}", bad.display());
        assert!(err.contains("nothing was restored"), "{err}");
        assert_eq!(
            std::fs::read(dir.path().join("restored/shop.db")).unwrap(),
            before
        );
    }
    // And PostgreSQL is pointed to its own tools.
    let (code, _, err) = run(
        "postgres://nobody@127.0.0.1:9/none",
        &["restore", file.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("pg_dump"), "{err}");
}

#[tokio::test]
async fn scheduled_backups_rotate_and_the_dashboard_shows_the_last() {
    if on_postgres() {
        return;
    }
    let dir = tempfile::TempDir::new().unwrap();
    let folder = dir.path().join("backups");
    let app = TestApp::spawn_with(&[
        ("BACKUP_DIR", folder.to_str().unwrap()),
        ("BACKUP_EVERY", "1s"),
        ("BACKUP_KEEP", "2"),
    ])
    .await;
    // Something not a backup, which pruning must leave alone.
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("notes.txt"), "mine").unwrap();
    let mut made = 0;
    for _ in 0..100 {
        made = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM backups")
            .fetch_one(&app.db)
            .await
            .unwrap();
        if made >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(made >= 4, "{made} backups in 10 s");
    let names = || {
        let mut names: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            // A backup being written (`.….partial`) is not one yet.
            .filter(|name| !name.starts_with('.'))
            .collect();
        names.sort();
        names
    };
    assert!(
        wait_until(Duration::from_secs(5), || names().len() == 3).await,
        "{:?}",
        names()
    );
    let listed = names();
    assert_eq!(listed[2], "notes.txt");
    for name in &listed[..2] {
        assert!(
            name.starts_with("checkout-") && name.ends_with(".db"),
            "{name}"
        );
        orders_in(&format!("sqlite://{}", folder.join(name).display())).await;
    }
    let (http, _) = sign_in(&app).await;
    let dashboard = http
        .get(app.url("/admin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        dashboard.contains("id=\"backup-age\">0 min<"),
        "{dashboard}"
    );
    let metrics = app.ops_get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("backup_last_success_timestamp_seconds"),
        "{metrics}"
    );
}
