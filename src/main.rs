//! The `wxpay-checkout` binary: parses the command and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use wxpay_checkout::cli;
use wxpay_checkout::config::Settings;
use wxpay_checkout::rt::AppRuntime;
use wxpay_checkout::startup::{self, Application};
use wxpay_checkout::telemetry;

const USAGE: &str = "usage: wxpay-checkout [COMMAND]

  serve        the shop and checkout (the default); in sandbox mode also the built-in sandbox
  sandbox      the WeChat Pay sandbox (v2 and v3) alone, on SANDBOX_LISTEN_ADDR
  healthcheck  asks the shop on OPS_LISTEN_ADDR for /healthz; exit 0 when healthy (containers)
  catalogue import FILE [--stock]
               upserts the products of a TOML or CSV file (by sku) into DATABASE_URL, all or
               none; stock is set for new products, and for existing ones with --stock
  orders [--status S] [--since DATE] [--format table|csv|json]
               the orders, newest first (S: pending, paid, shipped, refunded, closed, refund_due;
               DATE: a Beijing date like 2026-11-30)
  refund OUT_TRADE_NO [AMOUNT]
               refunds a paid order through WeChat Pay (AMOUNT in yuan; all that is left
               without it); needs the client certificate (WEIXIN_CERT_P12 or _PEM)
  bill DATE    reconciles one Beijing day (2026-11-29) against WeChat Pay's trade bill now, as
               the daily job does at BILL_FETCH_AT, and prints what differs
  backup FILE  a consistent copy of the live SQLite database, checked before it is kept
  restore FILE puts a checked backup in place of DATABASE_URL's SQLite file (the shop stopped)
  doctor       checks the credentials, clock, client certificate and notify URLs against
               WeChat Pay and explains what is wrong; exit 1 when payments or refunds would fail
  webhook-secret
               prints a new random whsec_ secret for WEBHOOK_SECRET
  admin hash-password
               reads a password (no echo) and prints the ADMIN_PASSWORD_HASH for it

Configuration comes from the environment; see README.md.";

enum Command {
    Serve,
    Sandbox,
    Healthcheck,
    ImportCatalogue { file: PathBuf, restock: bool },
    Orders(cli::OrdersArgs),
    Refund { no: String, amount: Option<String> },
    Bill { date: String },
    Backup { file: PathBuf },
    Restore { file: PathBuf },
    HashPassword,
    WebhookSecret,
    Doctor,
}

/// The command the arguments name.
fn command(args: &[String]) -> Result<Option<Command>, String> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Ok(Some(match args.as_slice() {
        [] | ["serve"] => Command::Serve,
        ["sandbox"] => Command::Sandbox,
        ["healthcheck"] => Command::Healthcheck,
        ["catalogue", "import", rest @ ..] => {
            let restock = rest.contains(&"--stock");
            let files: Vec<&&str> = rest.iter().filter(|a| **a != "--stock").collect();
            match files.as_slice() {
                [file] if !file.starts_with("--") => Command::ImportCatalogue {
                    file: PathBuf::from(file),
                    restock,
                },
                _ => return Err("catalogue import takes one FILE and optionally --stock".into()),
            }
        }
        ["orders", rest @ ..] => Command::Orders(cli::OrdersArgs::parse(rest)?),
        ["refund", no] => Command::Refund {
            no: (*no).to_owned(),
            amount: None,
        },
        ["refund", no, amount] => Command::Refund {
            no: (*no).to_owned(),
            amount: Some((*amount).to_owned()),
        },
        ["refund", ..] => return Err("refund takes OUT_TRADE_NO and optionally AMOUNT".into()),
        ["bill", date] => Command::Bill {
            date: (*date).to_owned(),
        },
        ["bill", ..] => return Err("bill takes one DATE, like 2026-11-29".into()),
        ["backup", file] => Command::Backup {
            file: PathBuf::from(file),
        },
        ["restore", file] => Command::Restore {
            file: PathBuf::from(file),
        },
        ["backup" | "restore", ..] => return Err("backup and restore take one FILE".into()),
        ["admin", "hash-password"] => Command::HashPassword,
        ["webhook-secret"] => Command::WebhookSecret,
        ["doctor"] => Command::Doctor,
        ["-h" | "--help" | "help"] => return Ok(None),
        other => return Err(format!("unknown command {:?}", other.join(" "))),
    }))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match command(&args) {
        Ok(Some(command)) => command,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::HashPassword => return cli::hash_password(),
        Command::WebhookSecret => {
            // Asked for on the merchant's terminal: printed there, never logged.
            println!("{}", wxpay_checkout::webhooks::Secret::generate());
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) if matches!(command, Command::Doctor) => {
            // The doctor's first finding: a setting the shop would refuse to start with.
            println!("[FAIL] 配置 Configuration: {e}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Doctor => {
            if let Err(e) = settings.check_contacts() {
                // As above: the shop would refuse to start without CONTACT_KEY.
                println!("[FAIL] 配置 Configuration: {e}");
                return ExitCode::FAILURE;
            }
            return cli::doctor(&settings).await;
        }
        Command::Healthcheck => return healthcheck(&settings).await,
        Command::ImportCatalogue { file, restock } => {
            return cli::import_catalogue(&settings, &file, restock).await
        }
        Command::Orders(args) => return cli::orders(&settings, &args).await,
        Command::Refund { no, amount } => {
            return cli::refund(&settings, &no, amount.as_deref()).await
        }
        Command::Bill { date } => return cli::bill(&settings, &date).await,
        Command::Backup { file } => return cli::backup(&settings, &file).await,
        Command::Restore { file } => return cli::restore(&settings, &file).await,
        Command::Serve | Command::Sandbox => {}
        Command::HashPassword | Command::WebhookSecret => unreachable!("handled above"),
    }
    let serving = matches!(command, Command::Serve);
    if let Err(e) = settings.check_exposure(serving).and_then(|()| {
        if serving {
            settings
                .check_refunds()
                .and_then(|()| settings.check_contacts())
        } else {
            Ok(())
        }
    }) {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    telemetry::init(settings.log_format);
    let result = match command {
        Command::Serve => serve(settings).await,
        Command::Sandbox => sandbox(settings).await,
        Command::Healthcheck
        | Command::Doctor
        | Command::ImportCatalogue { .. }
        | Command::Orders(_)
        | Command::Refund { .. }
        | Command::Bill { .. }
        | Command::Backup { .. }
        | Command::Restore { .. }
        | Command::HashPassword
        | Command::WebhookSecret => unreachable!("handled above"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(&settings).await?;
    let shop = settings.public_base_url(app.addr());
    tracing::info!(
        shop = %shop,
        console = %shop.join("admin").map_or_else(|_| String::new(), |u| u.to_string()),
        mode = ?settings.mode,
        api_base = %app.api_base(),
        "wxpay-checkout listening: open the shop, or the merchant console"
    );
    app.run().await
}

async fn sandbox(settings: Settings) -> anyhow::Result<()> {
    let server = startup::start_sandbox(&settings, &AppRuntime::current())?;
    let tls_base_url = server
        .tls_base_url()
        .map(|u| u.to_string())
        .unwrap_or_default();
    match (&settings.sandbox.cert_dir, server.credentials()) {
        (Some(dir), Some(credentials)) => {
            credentials.write_to(dir, &settings.merchant.mch_id)?;
            // The v3 keys: the same apiclient_key.pem, WeChat Pay's public key and the ids (kept
            // across restarts, see startup::start_sandbox).
            let v3 = server.v3_credentials();
            server.v3_keys().write_to(dir, &v3.apiv3_key)?;
            tracing::info!(
                dir = %dir.display(),
                "merchant certificate written: WEIXIN_CERT_P12={}/apiclient_cert.p12 \
                 WEIXIN_CA_PEM={}/sandbox_ca.pem WEIXIN_API_BASE={tls_base_url}",
                dir.display(),
                dir.display(),
            );
            tracing::info!(
                dir = %dir.display(),
                serial_no = %v3.serial_no,
                pay_public_key_id = %v3.pay_key_id,
                "v3 keys written: apiclient_key.pem, pub_key.pem, and wechatpay_v3.env (serial, \
                 public key id, APIv3 key); v3 is served at {}",
                server.base_url()
            );
        }
        _ => tracing::info!(
            "set SANDBOX_CERT_DIR to have the merchant's client certificate written, for refunds \
             over {tls_base_url}"
        ),
    }
    tracing::info!(
        base_url = %server.base_url(),
        tls_base_url,
        appid = %settings.merchant.appid,
        mch_id = %settings.merchant.mch_id,
        "WeChat Pay sandbox listening"
    );
    let handle = server.handle();
    let run = tokio::spawn(server.run());
    startup::shutdown_signal().await;
    handle.stop().await;
    run.await??;
    Ok(())
}

async fn healthcheck(settings: &Settings) -> ExitCode {
    // The shop's own operations address: the check runs beside the server.
    let url = format!(
        "http://{}/healthz",
        wxpay_checkout::config::reachable(settings.ops_listen_addr)
    );
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build();
    let healthy = match client {
        Ok(client) => matches!(client.get(&url).send().await, Ok(r) if r.status().is_success()),
        Err(_) => false,
    };
    if healthy {
        ExitCode::SUCCESS
    } else {
        eprintln!("unhealthy: {url}");
        ExitCode::FAILURE
    }
}
