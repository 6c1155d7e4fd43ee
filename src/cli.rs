//! The merchant's command line, for `docker exec CONTAINER wxpay-checkout …` in an image with no
//! shell: importing the catalogue, listing orders, making a console password hash. Each command
//! works on the configured database (`DATABASE_URL`) directly, beside a running shop.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use chrono::NaiveDate;

use crate::config::Settings;
use crate::console::{all_orders, export_row, orders_csv, ListStatus, OrderFilter, EXPORT_COLUMNS};
use crate::rt::AppRuntime;
use crate::store::Store;

/// How `orders` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// The arguments of `orders`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrdersArgs {
    pub status: Option<ListStatus>,
    /// Orders placed on or after this Beijing date.
    pub since: Option<NaiveDate>,
    pub format: Format,
}

impl OrdersArgs {
    /// `[--status S] [--since DATE] [--format table|csv|json]`.
    pub fn parse(args: &[&str]) -> Result<OrdersArgs, String> {
        let mut parsed = OrdersArgs {
            status: None,
            since: None,
            format: Format::Table,
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match *flag {
                "--status" => {
                    parsed.status = Some(ListStatus::parse(value).ok_or_else(|| {
                        format!(
                            "--status is one of {}",
                            ListStatus::ALL.map(ListStatus::as_str).join(", ")
                        )
                    })?)
                }
                "--since" => {
                    parsed.since = Some(
                        NaiveDate::parse_from_str(value, "%Y-%m-%d")
                            .map_err(|_| "--since is a date like 2026-11-30".to_owned())?,
                    )
                }
                "--format" => {
                    parsed.format = match *value {
                        "table" => Format::Table,
                        "csv" => Format::Csv,
                        "json" => Format::Json,
                        _ => return Err("--format is table, csv or json".into()),
                    }
                }
                other => return Err(format!("unknown option {other:?}")),
            }
        }
        Ok(parsed)
    }
}

async fn open_store(settings: &Settings) -> Result<Store, ExitCode> {
    crate::startup::open_store(settings, &AppRuntime::current())
        .await
        .map_err(|e| {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        })
}

/// `catalogue import FILE [--stock]`: the file's products into the database, all or none; a
/// bad line is named and nothing changes.
pub async fn import_catalogue(settings: &Settings, file: &Path, restock: bool) -> ExitCode {
    let entries = match crate::catalogue::read_file(file) {
        Ok(entries) => entries,
        Err(e) => {
            eprintln!("{}: {e}; nothing was imported", file.display());
            return ExitCode::FAILURE;
        }
    };
    let store = match open_store(settings).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let result = store.import_catalogue(&entries, restock).await;
    store.close().await;
    match result {
        Ok(report) => {
            println!(
                "{}: {} products — {} added, {} updated, {} unchanged{}",
                file.display(),
                entries.len(),
                report.added,
                report.updated,
                report.unchanged,
                if restock { " (stock set)" } else { "" }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}; nothing was imported", file.display());
            ExitCode::FAILURE
        }
    }
}

/// `refund OUT_TRADE_NO [AMOUNT]`: refunds a paid order (AMOUNT in yuan; all that is left
/// without it) through WeChat Pay, as the console does: recorded, then asked for; the running
/// shop follows it until WeChat settles it. Needs the merchant's client certificate, so not in
/// built-in sandbox mode (its certificate lives in the running shop: refund from the console).
pub async fn refund(settings: &Settings, no: &str, amount: Option<&str>) -> ExitCode {
    if settings.builtin_sandbox {
        eprintln!(
            "in sandbox mode the refund certificate belongs to the running shop's built-in \
             sandbox: refund from the console (/admin/orders/{no})"
        );
        return ExitCode::FAILURE;
    }
    let amount = match amount.map(crate::catalogue::parse_price).transpose() {
        Ok(amount) => amount,
        Err(_) => {
            eprintln!("AMOUNT is yuan with at most two decimals, e.g. 12.50; nothing was refunded");
            return ExitCode::FAILURE;
        }
    };
    let (checkout, running) = match start_checkout(settings).await {
        Ok(started) => started,
        Err(e) => {
            eprintln!("{e}; nothing was refunded");
            return ExitCode::FAILURE;
        }
    };
    let result = checkout
        .refund(no, amount, "", false, "merchant (command line)")
        .await;
    running.stop().await;
    match result {
        Ok(refund) => {
            let said = match refund.state {
                crate::store::RefundState::Requested => {
                    "recorded; WeChat's answer did not come, the shop asks again with the same number"
                }
                crate::store::RefundState::Processing => "accepted by WeChat, on its way",
                crate::store::RefundState::Succeeded => "refunded",
                crate::store::RefundState::Closed => "refused by WeChat",
                crate::store::RefundState::Change => "failed into an abnormal account",
            };
            println!(
                "{} {} {}: {said}{}",
                refund.out_refund_no,
                refund.refund_fee,
                refund.state.as_str(),
                refund
                    .failure
                    .as_deref()
                    .map(|f| format!(" ({f})"))
                    .unwrap_or_default()
            );
            if refund.state == crate::store::RefundState::Closed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("{no}: {e}; nothing was refunded");
            ExitCode::FAILURE
        }
    }
}

/// `doctor`: examines the credentials, the clock, the client certificate and the notify URLs
/// against WeChat Pay (see [`crate::checkout::doctor`]) and prints each finding with WeChat's own
/// text. Exit 1 when something would stop payments or refunds. Needs no database.
pub async fn doctor(settings: &Settings) -> ExitCode {
    use crate::checkout::doctor::{self, Verdict};
    let rt = AppRuntime::current();
    let terms = crate::startup::terms(settings, settings.listen_addr);
    if settings.api_version == crate::config::ApiVersion::V3 {
        let examination = match crate::startup::v3_gateway(settings, None, &rt) {
            Ok(gateway) => {
                doctor::examine_v3(
                    gateway.client(),
                    &terms.notify_url,
                    &terms.refund_notify_url,
                )
                .await
            }
            Err(e) => {
                println!("[FAIL] {e:#}");
                if settings.builtin_sandbox {
                    println!(
                        "       - sandbox mode: the built-in sandbox's v3 keys live inside the \
                         running shop; run the standalone sandbox (`wxpay-checkout sandbox` with \
                         SANDBOX_CERT_DIR) to examine v3 from here"
                    );
                }
                return ExitCode::FAILURE;
            }
        };
        return print_examination(&examination, settings, "API v3");
    }
    let (config, unreadable) = match crate::startup::client_config(settings, None) {
        Ok(config) => (config, None),
        Err(e) => (
            crate::wxpay::ClientConfig::new(
                settings.api_base.clone(),
                settings.merchant.clone(),
                settings.sign_type,
            ),
            Some(doctor::unreadable_certificate(&format!("{e:#}"))),
        ),
    };
    let client = match crate::wxpay::Client::new(config, &rt) {
        Ok(client) => client,
        Err(e) => {
            println!("[FAIL] cannot make an HTTPS client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut examination =
        doctor::examine(&client, &terms.notify_url, &terms.refund_notify_url).await;
    let mut phones = terms.phones.clone();
    phones.oauth = crate::startup::oauth(settings, None, &rt).ok().flatten();
    examination
        .findings
        .extend(doctor::phones(&phones, settings.builtin_sandbox).await);
    if let Some(finding) = unreadable {
        examination.findings.retain(|f| f.check != "certificate");
        examination.push_front(finding);
    } else if settings.builtin_sandbox {
        for finding in &mut examination.findings {
            if finding.check == "certificate" {
                *finding = doctor::sandbox_certificate();
            }
            if finding.check == "credentials" && finding.verdict == Verdict::Fail {
                finding.advice.push(
                    "sandbox mode: the built-in sandbox runs inside the shop — start \
                     `wxpay-checkout` and run the doctor beside it",
                );
            }
        }
    }
    let api = format!("API v2 {}", settings.sign_type.as_str());
    print_examination(&examination, settings, &api)
}

/// Prints the doctor's findings; exit 1 when one would stop payments or refunds.
fn print_examination(
    examination: &crate::checkout::doctor::Examination,
    settings: &Settings,
    api: &str,
) -> ExitCode {
    use crate::checkout::doctor::Verdict;
    let mode = if settings.builtin_sandbox {
        " (sandbox mode: the running shop's built-in sandbox; payments are simulated)"
    } else {
        ""
    };
    println!(
        "WeChat Pay at {}{mode}\nmch_id {}, appid {}, {api}\n",
        examination.api_base, examination.mch_id, examination.appid,
    );
    for finding in &examination.findings {
        let mark = match finding.verdict {
            Verdict::Ok => "[ OK ]",
            Verdict::Warn => "[WARN]",
            Verdict::Fail => "[FAIL]",
        };
        println!("{mark} {}: {}", finding.title, finding.said);
        if let Some(raw) = &finding.raw {
            println!("       answer: {raw}");
        }
        for advice in &finding.advice {
            println!("       - {advice}");
        }
    }
    let failed = examination
        .findings
        .iter()
        .filter(|f| f.verdict == Verdict::Fail)
        .count();
    if failed > 0 {
        println!("\n{failed} problem(s) would stop payments or refunds.");
        ExitCode::FAILURE
    } else {
        println!("\nNothing found that would stop payments.");
        ExitCode::SUCCESS
    }
}

/// The checkout service over the configured database and WeChat Pay, for one command.
async fn start_checkout(
    settings: &Settings,
) -> Result<(crate::checkout::Checkout, Running), String> {
    let rt = AppRuntime::current();
    let client = crate::startup::gateway(settings, None, &rt).map_err(|e| format!("{e:#}"))?;
    let store = crate::startup::open_store(settings, &rt)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let terms = crate::startup::terms(settings, settings.listen_addr);
    // As the shop does: what this command changes is delivered by the running shop.
    store.write_events(!terms.outbox.targets.is_empty());
    let (checkout, background) =
        crate::checkout::Checkout::start(store.clone(), client, terms, &rt, &shutdown);
    Ok((
        checkout,
        Running {
            store,
            shutdown,
            background,
        },
    ))
}

/// A command's checkout service, to stop once the command is done.
struct Running {
    store: Store,
    shutdown: tokio_util::sync::CancellationToken,
    background: crate::checkout::Background,
}

impl Running {
    /// Lets the background tasks finish what they hold (payments recorded, orders written).
    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.background.stopped().await;
        self.store.close().await;
    }
}

/// `bill DATE`: reconciles one Beijing day (`2026-11-29` or `20261129`) against WeChat's
/// trade bill now — again, if it was — as the daily job does, and prints what it found. Exit 0
/// once the day is reconciled (with discrepancies or without), 1 when it could not be (the job
/// tries again later).
pub async fn bill(settings: &Settings, date: &str) -> ExitCode {
    let day = NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .ok()
        .or_else(|| crate::wxpay::bill::parse_bill_date(date));
    let Some(day) = day else {
        eprintln!("DATE is a Beijing date like 2026-11-29");
        return ExitCode::FAILURE;
    };
    let (checkout, running) = match start_checkout(settings).await {
        Ok(started) => started,
        Err(e) => {
            eprintln!("{e}; nothing was reconciled");
            return ExitCode::FAILURE;
        }
    };
    let result = match checkout.reconcile_bill_day(day).await {
        Ok(done) => checkout.bill_day(done.day).await,
        Err(e) => Err(e),
    };
    running.stop().await;
    let (day, discrepancies) = match result {
        Ok(Some(found)) => found,
        Ok(None) => {
            eprintln!("{day}: no record of the run");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("{day}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", crate::console::bill_headline(&day));
    for d in &discrepancies {
        let _ = writeln!(out, "  {}", crate::console::discrepancy_line(d));
    }
    if day.finished_at.is_none() && day.last_error.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `backup FILE`: a consistent, checked copy of the live SQLite database at FILE, taken beside
/// the running shop.
pub async fn backup(settings: &Settings, file: &Path) -> ExitCode {
    let store = match open_store(settings).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let result = store.backup_to(file).await;
    store.close().await;
    match result {
        Ok(report) => {
            println!(
                "{}: {} bytes, the database as it was at {} (checked: integrity ok)",
                report.path.display(),
                report.bytes,
                crate::console::beijing_display(report.taken_at)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}; no backup was kept");
            ExitCode::FAILURE
        }
    }
}

/// `restore FILE`: puts a checked backup in place of the configured SQLite database; refused
/// while a shop (or a command) has it open.
pub async fn restore(settings: &Settings, file: &Path) -> ExitCode {
    match crate::store::backup::restore(&settings.database_url, file).await {
        Ok(database) => {
            println!(
                "{} restored from {} (checked: integrity ok); start the shop",
                database.display(),
                file.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}; nothing was restored");
            ExitCode::FAILURE
        }
    }
}

/// `orders`: the orders matching the arguments, newest first, to standard output.
pub async fn orders(settings: &Settings, args: &OrdersArgs) -> ExitCode {
    let store = match open_store(settings).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let filter = OrderFilter {
        status: args.status,
        from: args
            .since
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc() - chrono::Duration::hours(8)),
        ..Default::default()
    };
    let listed = all_orders(&store, &filter).await;
    store.close().await;
    let orders = match listed {
        Ok(orders) => orders,
        Err(e) => {
            eprintln!("reading the orders: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = match args.format {
        Format::Csv => match orders_csv(&orders, false) {
            Ok(bytes) => bytes,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        },
        Format::Json => {
            let rows: Vec<serde_json::Value> = orders
                .iter()
                .map(|o| {
                    serde_json::json!({
                        "out_trade_no": o.out_trade_no.as_str(),
                        "created_at": o.created_at.to_rfc3339(),
                        "status": o.status.as_str(),
                        "total_fee": o.total_fee.0,
                        "transaction_id": o.transaction_id,
                        "pay_time": o.pay_time.map(|t| t.to_rfc3339()),
                        "name": o.name,
                        "phone": o.phone,
                        "goods": o.body,
                    })
                })
                .collect();
            let mut text = serde_json::to_string_pretty(&rows).unwrap_or_default();
            text.push('\n');
            text.into_bytes()
        }
        Format::Table => table(&orders).into_bytes(),
    };
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(&out)
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Orders as an aligned table (goods cut to fit a terminal), with a count and total.
fn table(orders: &[crate::console::OrderSummary]) -> String {
    let shown = [0, 1, 2, 3, 6, 7, 8];
    let rows: Vec<Vec<String>> = orders
        .iter()
        .map(|o| {
            let row = export_row(o);
            shown
                .iter()
                .map(|&i| {
                    let cell = &row[i];
                    if i == 8 && cell.chars().count() > 30 {
                        format!("{}…", cell.chars().take(29).collect::<String>())
                    } else {
                        cell.clone()
                    }
                })
                .collect()
        })
        .collect();
    let headers: Vec<String> = shown
        .iter()
        .map(|&i| EXPORT_COLUMNS[i].to_owned())
        .collect();
    // Chinese characters take two columns of a terminal.
    let width = |s: &str| {
        s.chars()
            .map(|c| if c.is_ascii() { 1 } else { 2 })
            .sum::<usize>()
    };
    let widths: Vec<usize> = (0..headers.len())
        .map(|c| {
            rows.iter()
                .map(|r| width(&r[c]))
                .chain([width(&headers[c])])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let mut out = cells
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell}{}", " ".repeat(w - width(cell))))
            .collect::<Vec<_>>()
            .join("  ");
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let mut text = line(&headers);
    for row in &rows {
        text.push_str(&line(row));
    }
    let total: i64 = orders.iter().map(|o| o.total_fee.0).sum();
    text.push_str(&format!(
        "{} orders, {}\n",
        orders.len(),
        crate::domain::Fen(total)
    ));
    text
}

/// `admin hash-password`: reads a password (without echo on a terminal; twice there, to catch
/// a typo) and prints its argon2 PHC string for `ADMIN_PASSWORD_HASH`.
pub fn hash_password() -> ExitCode {
    use std::io::IsTerminal;
    let terminal = std::io::stdin().is_terminal();
    let read = |prompt: &str| -> std::io::Result<String> {
        if terminal {
            rpassword::prompt_password(prompt)
        } else {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            Ok(line.trim_end_matches(['\r', '\n']).to_owned())
        }
    };
    let password = match read("Console password: ") {
        Ok(password) => password,
        Err(e) => {
            eprintln!("reading the password: {e}");
            return ExitCode::FAILURE;
        }
    };
    if password.chars().count() < 10 {
        eprintln!("a console password needs at least 10 characters");
        return ExitCode::FAILURE;
    }
    if terminal && read("Again: ").ok().as_deref() != Some(password.as_str()) {
        eprintln!("the two passwords differ");
        return ExitCode::FAILURE;
    }
    match crate::console::hash_password(&password) {
        Ok(phc) => {
            println!("{phc}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
