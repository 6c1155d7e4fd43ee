//! Builds the application from settings: the store, the listeners (the shop's, and in sandbox
//! mode the built-in sandbox's) and the background tasks; and runs it until shutdown, stopping
//! in order: stop accepting and finish requests, stop the reconciliation job (a run in progress
//! finishes while the built-in sandbox still answers), stop the sandbox, stop the order desk and
//! drain the payments channel, close the database.
//!
//! Everything that owns sockets or tasks is given the application runtime here, explicitly
//! (see [`crate::rt`]).

use std::net::{SocketAddr, TcpListener};

use actix_web::{web, App, HttpServer};
use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::checkout::gateway::v3::V3Gateway;
use crate::checkout::reconcile::Reconciler;
use crate::checkout::{Background, Checkout, Gateway, Terms};
use crate::config::{ApiVersion, Settings};
use crate::rt::AppRuntime;
use crate::sandbox::{SandboxConfig, SandboxHandle, SandboxServer};
use crate::store::Store;
use crate::web::{routes, AppState};
use crate::wxpay::{Client, ClientConfig, SecApi};

/// The shop, bound and ready to run.
pub struct Application {
    addr: SocketAddr,
    ops_addr: SocketAddr,
    ops: actix_web::dev::Server,
    api_base: Url,
    server: actix_web::dev::Server,
    sandbox: Option<SandboxServer>,
    reconciler: JoinHandle<()>,
    background: Background,
    shutdown: CancellationToken,
    store: Store,
    /// For ending the pay pages' event streams at a signal.
    checkout: Checkout,
}

/// The sandbox's configuration from the settings (`WEIXIN_*` credentials or the demo ones).
pub fn sandbox_config(settings: &Settings) -> SandboxConfig {
    let mut config = SandboxConfig::new(settings.merchant.clone());
    config.time_scale = settings.sandbox.time_scale;
    config.faults = settings.sandbox.faults;
    config.max_orders = settings.sandbox.max_orders;
    config.controls = settings.sandbox.controls;
    if let Some(secret) = &settings.phones.mp_appsecret {
        config.mp_appsecret = secret.clone();
    }
    config
}

/// Binds the sandbox's listeners (`SANDBOX_LISTEN_ADDR`, and `SANDBOX_TLS_LISTEN_ADDR` for
/// `/secapi/`) and starts it; its notify deliveries run on `rt`. Its v3 keys are made now (the
/// merchant's is also its client certificate's, one for both APIs) or, with `SANDBOX_CERT_DIR`,
/// those an earlier run left there are used again (a shop configured with them keeps working
/// across restarts).
pub fn start_sandbox(settings: &Settings, rt: &AppRuntime) -> anyhow::Result<SandboxServer> {
    use crate::sandbox::V3Keys;
    let mut config = sandbox_config(settings);
    let kept = match &settings.sandbox.cert_dir {
        Some(dir) => V3Keys::load(dir)?,
        None => None,
    };
    config.v3_keys = Some(kept.unwrap_or_else(V3Keys::shared));
    bind_sandbox(settings, config, rt)
}

fn bind_sandbox(
    settings: &Settings,
    config: SandboxConfig,
    rt: &AppRuntime,
) -> anyhow::Result<SandboxServer> {
    let listener = TcpListener::bind(settings.sandbox_listen_addr).with_context(|| {
        format!(
            "binding SANDBOX_LISTEN_ADDR {}",
            settings.sandbox_listen_addr
        )
    })?;
    let tls_listener = TcpListener::bind(settings.sandbox_tls_listen_addr).with_context(|| {
        format!(
            "binding SANDBOX_TLS_LISTEN_ADDR {}",
            settings.sandbox_tls_listen_addr
        )
    })?;
    SandboxServer::start_with_tls(listener, tls_listener, config, rt)
}

/// The shop's terms of sale from the settings; `addr` is the shop's bound address (the default
/// notify URLs name it).
pub fn terms(settings: &Settings, addr: SocketAddr) -> Terms {
    Terms {
        shop_name: settings.shop_name.clone(),
        icp_beian: settings.footer.icp_beian.clone(),
        shop_contact: settings.footer.shop_contact.clone(),
        notify_url: settings.notify_url(addr),
        refund_notify_url: settings.refund_notify_url(addr),
        auto_refund_late_payments: settings.auto_refund_late_payments,
        spbill_create_ip: settings.spbill_create_ip(),
        order_ttl: settings.order_ttl,
        reconcile_interval: settings.reconcile_interval,
        bill_fetch_at: settings.bill_fetch_at,
        reconcile_max_attempts: settings.reconcile_max_attempts,
        pending_per_client: settings.pending_per_client,
        order_rate_per_minute: settings.order_rate_per_minute,
        checkout_fields: settings.checkout_fields.clone(),
        notify_alarm: crate::checkout::health::NotifyAlarmTerms {
            window: settings.notify_alarm_window,
            min_payments: settings.notify_alarm_min_payments,
        },
        outbox: crate::checkout::OutboxTerms {
            targets: settings.webhooks.targets.clone(),
            secret: settings.webhooks.secret.clone(),
            retry_scale: settings.webhooks.retry_scale,
            console_base: settings.public_base_url.clone(),
        },
        privacy: crate::checkout::privacy::PrivacyTerms {
            retention_days: settings.contact_retention_days,
            notice: settings.privacy_notice.clone(),
        },
        phones: crate::checkout::PhoneTerms {
            h5: settings.phones.h5,
            oauth: None,
            public_base_url: settings.public_base_url(addr),
        },
        push: crate::checkout::PushTerms::default(),
    }
}

/// The official account's OAuth for JSAPI, when `WEIXIN_MP_APPSECRET` is set; in built-in
/// sandbox mode both its hosts are the sandbox's.
pub fn oauth(
    settings: &Settings,
    sandbox: Option<&SandboxServer>,
    rt: &AppRuntime,
) -> anyhow::Result<Option<crate::wxpay::oauth::OAuth>> {
    let Some(secret) = &settings.phones.mp_appsecret else {
        return Ok(None);
    };
    let (open, api) = match sandbox.map(SandboxServer::base_url) {
        Some(base) => (base.clone(), base),
        None => (
            settings.phones.oauth_base.clone(),
            settings.phones.mp_api_base.clone(),
        ),
    };
    let oauth = crate::wxpay::oauth::OAuth::new(
        open,
        api,
        settings.merchant.appid.clone(),
        secret.clone(),
        rt,
    )
    .context("building the official account's OAuth client")?;
    Ok(Some(oauth))
}

/// The WeChat Pay client's configuration: the built-in sandbox's addresses, CA and merchant
/// certificate, or the configured base URL, `WEIXIN_CA_PEM` and client certificate files.
pub fn client_config(
    settings: &Settings,
    sandbox: Option<&SandboxServer>,
) -> anyhow::Result<ClientConfig> {
    let base = sandbox.map_or_else(|| settings.api_base.clone(), SandboxServer::base_url);
    let mut config = ClientConfig::new(base.clone(), settings.merchant.clone(), settings.sign_type);
    match sandbox.and_then(|s| Some((s.tls_base_url()?, s.credentials()?))) {
        Some((tls_base, credentials)) => {
            config.extra_root_pem = Some(credentials.ca_pem.clone());
            config.secapi = Some(SecApi {
                base_url: tls_base,
                cert: credentials.merchant.clone(),
            });
        }
        None => {
            if let Some(path) = &settings.ca_pem_file {
                let pem = std::fs::read_to_string(path)
                    .with_context(|| format!("WEIXIN_CA_PEM: cannot read {}", path.display()))?;
                config.extra_root_pem = Some(pem);
            }
            if let Some(cert) = settings.load_cert()? {
                if !cert.subject().contains(&settings.merchant.mch_id) {
                    tracing::warn!(
                        subject = cert.subject(),
                        mch_id = %settings.merchant.mch_id,
                        "the client certificate does not name WEIXIN_PARTNER: WeChat will refuse \
                         refunds made with it"
                    );
                }
                config.secapi = Some(SecApi {
                    base_url: base,
                    cert,
                });
            }
        }
    }
    Ok(config)
}

/// WeChat Pay by the protocol configured (`WEIXIN_API_VERSION`): v2's client as
/// [`client_config`] makes it, or v3's with the keys of `WEIXIN_MCH_PRIVATE_KEY`,
/// `WEIXIN_PAY_PUBLIC_KEY` (and the others) — in built-in sandbox mode, the sandbox's own.
pub fn gateway(
    settings: &Settings,
    sandbox: Option<&SandboxServer>,
    rt: &AppRuntime,
) -> anyhow::Result<Gateway> {
    if settings.api_version == ApiVersion::V2 {
        let client = Client::new(client_config(settings, sandbox)?, rt)
            .context("building the WeChat Pay client (WEIXIN_CA_PEM, the client certificate)")?;
        return Ok(Gateway::V2(client));
    }
    v3_gateway(settings, sandbox, rt).map(Gateway::V3)
}

/// WeChat Pay API v3 (see [`gateway`]).
pub fn v3_gateway(
    settings: &Settings,
    sandbox: Option<&SandboxServer>,
    rt: &AppRuntime,
) -> anyhow::Result<V3Gateway> {
    let credentials = match (settings.load_v3()?, sandbox) {
        (Some(credentials), _) => credentials,
        (None, Some(sandbox)) => sandbox
            .v3_credentials()
            .credentials()
            .context("the built-in sandbox's v3 keys")?,
        (None, None) => anyhow::bail!(
            "WEIXIN_API_VERSION=v3 needs WEIXIN_APIV3_KEY, WEIXIN_MCH_SERIAL, \
             WEIXIN_MCH_PRIVATE_KEY, WEIXIN_PAY_PUBLIC_KEY and WEIXIN_PAY_PUBLIC_KEY_ID"
        ),
    };
    let base = sandbox.map_or_else(|| settings.api_base.clone(), SandboxServer::base_url);
    let mut config = crate::wxpay::v3::ClientConfig::new(base, credentials);
    if let Some(path) = settings.ca_pem_file.as_ref().filter(|_| sandbox.is_none()) {
        config.extra_root_pem = Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("WEIXIN_CA_PEM: cannot read {}", path.display()))?,
        );
    }
    let client = crate::wxpay::v3::Client::new(config, rt)
        .context("building the WeChat Pay v3 client (WEIXIN_CA_PEM)")?;
    Ok(V3Gateway::new(
        client,
        settings.merchant.clone(),
        settings.sign_type,
    ))
}

/// Opens the database (`DATABASE_URL`) with the contact keys (`CONTACT_KEY`, or the one
/// generated before or now; see [`Store::use_contact_keys`]). A live shop that asks for contact
/// details and has no `CONTACT_KEY` is refused first.
pub async fn open_store(settings: &Settings, rt: &AppRuntime) -> anyhow::Result<Store> {
    settings.check_contacts()?;
    let store = Store::connect(&settings.database_url, rt)
        .await
        .context("opening the database (DATABASE_URL)")?;
    let key_id = store
        .use_contact_keys(&settings.contact_keys.0)
        .await
        .context("the contact keys (CONTACT_KEY)")?;
    if settings.contact_keys.0.is_empty() && !settings.checkout_fields.is_empty() {
        tracing::warn!(
            key_id,
            "contact details are sealed with a key generated into the database; set CONTACT_KEY \
             to keep the key apart from the data"
        );
    }
    Ok(store)
}

/// Re-seals, in the background, every contact not sealed under the current key: rows from
/// before sealing, and those of keys being rotated out (`CONTACT_KEY=new,old`). When it is
/// done the old keys may be dropped from `CONTACT_KEY`.
async fn reseal_contacts(store: Store, shutdown: CancellationToken) {
    match store.reseal_all_contacts(&shutdown).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            contacts = n,
            "contact details re-sealed under the current key"
        ),
        Err(e) => {
            tracing::error!(error = %e, "re-sealing contact details failed; it is tried again at the next start")
        }
    }
    match store.contact_key_use().await {
        Ok(usage) if usage.unreadable_rows > 0 => tracing::error!(
            contacts = usage.unreadable_rows,
            "contact details sealed under a key CONTACT_KEY does not hold cannot be read: add \
             the old key after the current one"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "counting unreadable contact details failed"),
    }
}

impl Application {
    /// Connects the store (running migrations, importing `CATALOGUE_FILE`, seeding the demo
    /// catalogue into an empty one in sandbox mode),
    /// starts the built-in sandbox in sandbox mode, the payments consumer, and binds the shop's
    /// listener. Port 0 binds a free port; [`Application::addr`] and
    /// [`Application::api_base`] report what was bound.
    pub async fn build(settings: &Settings) -> anyhow::Result<Application> {
        // The one place the application runtime is captured; everything below gets it.
        settings.check_refunds()?;
        let rt = AppRuntime::current();
        let store = open_store(settings, &rt).await?;
        if let Some(file) = &settings.catalogue_file {
            let entries = crate::catalogue::read_file(file)
                .with_context(|| format!("CATALOGUE_FILE {}", file.display()))?;
            let report = store
                .import_catalogue(&entries, false)
                .await
                .with_context(|| format!("importing CATALOGUE_FILE {}", file.display()))?;
            tracing::info!(
                file = %file.display(),
                added = report.added,
                updated = report.updated,
                unchanged = report.unchanged,
                "catalogue imported"
            );
        }
        // The demo teas are the sandbox's, and only for an empty shop; a live shop sells only
        // its own catalogue.
        if settings.mode == crate::config::Mode::Sandbox {
            let seeded = store.seed_catalogue(&crate::catalogue::demo()).await?;
            if seeded > 0 {
                tracing::info!(products = seeded, "demo catalogue created");
            }
        }
        let listener = TcpListener::bind(settings.listen_addr)
            .with_context(|| format!("binding LISTEN_ADDR {}", settings.listen_addr))?;
        let addr = listener.local_addr()?;
        let sandbox = if settings.builtin_sandbox {
            tracing::warn!(
                "sandbox mode: no WeChat Pay credentials, payments are simulated by the built-in \
                 sandbox; set WEIXIN_APPID, WEIXIN_PARTNER and WEIXIN_PARTNERKEY to take money"
            );
            // The built-in sandbox notifies only this shop.
            let mut config = sandbox_config(settings);
            config.notify_only = Some(settings.notify_url(addr));
            config.refund_notify_only = Some(settings.refund_notify_url(addr));
            Some(bind_sandbox(settings, config, &rt)?)
        } else {
            None
        };
        let api_base = sandbox
            .as_ref()
            .map_or_else(|| settings.api_base.clone(), SandboxServer::base_url);
        let wechat = gateway(settings, sandbox.as_ref(), &rt)?;

        let shutdown = CancellationToken::new();
        let mut terms = terms(settings, addr);
        terms.phones.oauth = oauth(settings, sandbox.as_ref(), &rt)?;
        if let Some(after) = terms
            .unpaid_close_after()
            .filter(|a| *a < settings.order_ttl)
        {
            tracing::info!(
                closes_unpaid_after_secs = after.as_secs(),
                order_ttl_secs = settings.order_ttl.as_secs(),
                "the reconciliation job closes unpaid orders before ORDER_TTL_SECS; set \
                 RECONCILE_INTERVAL_SECS × RECONCILE_MAX_ATTEMPTS ≥ ORDER_TTL_SECS to give \
                 shoppers the whole time (the pay page counts down to the earlier)"
            );
        }
        store.write_events(!terms.outbox.targets.is_empty());
        let (checkout, background) = Checkout::start(store.clone(), wechat, terms, &rt, &shutdown);
        let reconciler = rt.spawn(Reconciler::new(checkout.clone()).run(shutdown.child_token()));
        rt.spawn(checkout.clone().run_outbox(shutdown.child_token()));
        rt.spawn(checkout.clone().run_retention(shutdown.child_token()));
        rt.spawn(reseal_contacts(store.clone(), shutdown.child_token()));
        rt.spawn(checkout.clone().run_notify_health(shutdown.child_token()));
        rt.spawn(checkout.clone().run_push(shutdown.child_token()));
        if let Some(schedule) = &settings.backups {
            if settings.database_url.starts_with("sqlite:") {
                let schedule = crate::store::backup::Schedule {
                    dir: schedule.dir.clone(),
                    every: schedule.every,
                    keep: schedule.keep,
                };
                rt.spawn(store.clone().run_backups(schedule, shutdown.child_token()));
            } else {
                tracing::warn!(
                    "BACKUP_DIR is for SQLite databases; back PostgreSQL up with pg_dump or \
                     point-in-time recovery"
                );
            }
        }
        let sandbox_base = sandbox.as_ref().map(SandboxServer::base_url);
        let console =
            crate::console::Console::start(store.clone(), settings.admin_password_hash.as_deref())
                .await
                .context("the merchant console (ADMIN_PASSWORD_HASH)")?;
        let checkout_handle = checkout.clone();
        let state = web::Data::new(AppState::new(
            checkout,
            console,
            sandbox_base,
            &settings.public_base_url(addr),
            settings.trusted_proxies.clone(),
        ));
        crate::telemetry::metrics();
        let state_for_ops = state.clone();
        let body_timeout = settings.request_body_timeout;
        let workers = std::thread::available_parallelism().map_or(2, usize::from);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap(crate::web::security_headers())
                .wrap_fn(crate::web::error::render_error_pages)
                .wrap_fn(crate::web::ops::count_request)
                .wrap_fn(move |req, service| {
                    use actix_web::dev::Service;
                    service.call(crate::web::limits::with_body_deadline(req, body_timeout))
                })
                .configure(routes)
        })
        .workers(workers)
        .max_connections(crate::web::limits::max_connections_per_worker(workers))
        .client_request_timeout(std::time::Duration::from_secs(5))
        // Signals are handled in `run`: the pay pages' event streams end first, so they never
        // hold the shutdown up.
        .disable_signals()
        .listen(listener)?
        .run();
        let ops_listener = TcpListener::bind(settings.ops_listen_addr)
            .with_context(|| format!("binding OPS_LISTEN_ADDR {}", settings.ops_listen_addr))?;
        let ops_addr = ops_listener.local_addr()?;
        let ops_state = state_for_ops;
        let ops = HttpServer::new(move || {
            App::new()
                .app_data(ops_state.clone())
                .configure(crate::web::ops_routes)
        })
        .workers(1)
        // The shop's server handles the signals and stops this one after it.
        .disable_signals()
        .listen(ops_listener)?
        .run();
        Ok(Application {
            addr,
            ops_addr,
            ops,
            api_base,
            server,
            sandbox,
            reconciler,
            background,
            shutdown,
            store,
            checkout: checkout_handle,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `/healthz` and `/metrics` are served.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops_addr
    }

    /// The WeChat Pay base URL in use: the built-in sandbox's, in sandbox mode.
    pub fn api_base(&self) -> &Url {
        &self.api_base
    }

    /// Serves until SIGTERM or Ctrl-C (actix stops accepting and finishes in-flight requests),
    /// then stops the reconciliation job, the sandbox and the order desk, drains the payments
    /// channel and closes the database.
    pub async fn run(self) -> anyhow::Result<()> {
        let sandbox_handle: Option<SandboxHandle> =
            self.sandbox.as_ref().map(SandboxServer::handle);
        let sandbox_task = self.sandbox.map(|sandbox| tokio::spawn(sandbox.run()));
        let ops_handle = self.ops.handle();
        let ops_task = tokio::spawn(self.ops);
        let server_handle = self.server.handle();
        let checkout = self.checkout.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            checkout.close_event_streams();
            server_handle.stop(true).await;
        });
        let served = self.server.await;
        ops_handle.stop(true).await;
        ops_task.await??;
        self.shutdown.cancel();
        // A reconciliation run in progress finishes while the built-in sandbox still answers.
        self.reconciler.await?;
        if let Some(handle) = sandbox_handle {
            handle.stop().await;
        }
        if let Some(task) = sandbox_task {
            task.await??;
        }
        self.background.stopped().await?;
        self.store.close().await;
        Ok(served?)
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
