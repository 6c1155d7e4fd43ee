//! The `wxpay-checkout` binary: parses the command and hands over to the library.

use std::process::ExitCode;

use wxpay_checkout::config::Settings;
use wxpay_checkout::startup::Application;
use wxpay_checkout::telemetry;

const USAGE: &str =
    "usage: wxpay-checkout [serve]\n\nConfiguration comes from the environment; see README.md.";

#[tokio::main]
async fn main() -> ExitCode {
    let command = std::env::args().nth(1);
    match command.as_deref() {
        None | Some("serve") => {}
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("unknown command {other:?}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(settings.log_format);
    match serve(settings).await {
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
        api_base = %settings.api_base,
        "wxpay-checkout listening"
    );
    app.run().await
}
