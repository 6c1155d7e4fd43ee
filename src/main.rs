//! The `wxpay-checkout` binary: parses the command and hands over to the library.

use std::process::ExitCode;

use wxpay_checkout::config::Settings;
use wxpay_checkout::rt::AppRuntime;
use wxpay_checkout::startup::{self, Application};
use wxpay_checkout::telemetry;

const USAGE: &str = "usage: wxpay-checkout [serve | sandbox | healthcheck]

  serve        the shop and checkout (the default); in sandbox mode also the built-in sandbox
  sandbox      the WeChat Pay v2 sandbox alone, on SANDBOX_LISTEN_ADDR
  healthcheck  asks the shop on OPS_LISTEN_ADDR for /healthz; exit 0 when healthy (containers)

Configuration comes from the environment; see README.md.";

enum Command {
    Serve,
    Sandbox,
    Healthcheck,
}

#[tokio::main]
async fn main() -> ExitCode {
    let command = match std::env::args().nth(1).as_deref() {
        None | Some("serve") => Command::Serve,
        Some("sandbox") => Command::Sandbox,
        Some("healthcheck") => Command::Healthcheck,
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("unknown command {other:?}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Command::Healthcheck = command {
        return healthcheck(&settings).await;
    }
    if let Err(e) = settings.check_exposure(matches!(command, Command::Serve)) {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    telemetry::init(settings.log_format);
    let result = match command {
        Command::Serve => serve(settings).await,
        Command::Sandbox => sandbox(settings).await,
        Command::Healthcheck => unreachable!("handled above"),
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
    tracing::info!(
        addr = %app.addr(),
        mode = ?settings.mode,
        api_base = %app.api_base(),
        "wxpay-checkout listening"
    );
    app.run().await
}

async fn sandbox(settings: Settings) -> anyhow::Result<()> {
    let server = startup::start_sandbox(&settings, &AppRuntime::current())?;
    tracing::info!(
        base_url = %server.base_url(),
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
