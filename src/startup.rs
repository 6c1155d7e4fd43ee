//! Builds the application from settings: the store, the listeners (the shop's, and in sandbox
//! mode the built-in sandbox's) and the background tasks; and runs it until shutdown, stopping
//! in order: stop accepting and finish requests, stop the sandbox, stop the reconciliation job,
//! drain the payments channel, close the database.

use std::net::{SocketAddr, TcpListener};

use actix_web::{web, App, HttpServer};
use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::config::Settings;
use crate::payments;
use crate::payments::reconcile::{Reconciler, MIN_CLOSE_AGE};
use crate::sandbox::{SandboxConfig, SandboxHandle, SandboxServer};
use crate::store::Store;
use crate::web::{routes, AppState, Checkout};
use crate::wxpay::{Client, ClientConfig};

/// The shop, bound and ready to run.
pub struct Application {
    addr: SocketAddr,
    api_base: Url,
    server: actix_web::dev::Server,
    sandbox: Option<SandboxServer>,
    consumer: JoinHandle<()>,
    reconciler: JoinHandle<()>,
    shutdown: CancellationToken,
    store: Store,
}

/// The sandbox's configuration from the settings (`WEIXIN_*` credentials or the demo ones).
pub fn sandbox_config(settings: &Settings) -> SandboxConfig {
    let mut config = SandboxConfig::new(settings.merchant.clone());
    config.time_scale = settings.sandbox.time_scale;
    config.faults = settings.sandbox.faults;
    config.max_orders = settings.sandbox.max_orders;
    config
}

/// Binds the sandbox's listener (`SANDBOX_LISTEN_ADDR`) and starts it.
pub fn start_sandbox(settings: &Settings) -> anyhow::Result<SandboxServer> {
    let listener = TcpListener::bind(settings.sandbox_listen_addr).with_context(|| {
        format!(
            "binding SANDBOX_LISTEN_ADDR {}",
            settings.sandbox_listen_addr
        )
    })?;
    SandboxServer::start(listener, sandbox_config(settings))
}

impl Application {
    /// Connects the store (running migrations, seeding the demo catalogue into an empty one),
    /// starts the built-in sandbox in sandbox mode, the payments consumer, and binds the shop's
    /// listener. Port 0 binds a free port; [`Application::addr`] and
    /// [`Application::api_base`] report what was bound.
    pub async fn build(settings: &Settings) -> anyhow::Result<Application> {
        let store = Store::connect(&settings.database_url)
            .await
            .context("opening the database (DATABASE_URL)")?;
        let seeded = store.seed_demo_catalogue().await?;
        if seeded > 0 {
            tracing::info!(products = seeded, "demo catalogue created");
        }
        let sandbox = if settings.builtin_sandbox {
            Some(start_sandbox(settings)?)
        } else {
            None
        };
        let api_base = sandbox
            .as_ref()
            .map_or_else(|| settings.api_base.clone(), SandboxServer::base_url);
        let wechat = Client::new(ClientConfig::new(
            api_base.clone(),
            settings.merchant.clone(),
            settings.sign_type,
        ))
        .context("building the WeChat Pay client")?;

        let listener = TcpListener::bind(settings.listen_addr)
            .with_context(|| format!("binding LISTEN_ADDR {}", settings.listen_addr))?;
        let addr = listener.local_addr()?;

        let shutdown = CancellationToken::new();
        let (payments, consumer) = payments::channel(store.clone());
        let reconciler = Reconciler::new(
            store.clone(),
            wechat.clone(),
            payments.clone(),
            settings.reconcile_interval,
            settings.reconcile_max_attempts,
        );
        let consumer = tokio::spawn(consumer.run(shutdown.child_token()));
        let reconciler = tokio::spawn(reconciler.run(shutdown.child_token()));
        let checkout = Checkout {
            merchant: settings.merchant.clone(),
            notify_url: settings.notify_url(addr),
            spbill_create_ip: settings.spbill_create_ip(),
            sandbox_base: sandbox.as_ref().map(SandboxServer::base_url),
            order_ttl: settings.order_ttl,
            unpaid_close_after: (settings.reconcile_interval * settings.reconcile_max_attempts)
                .max(MIN_CLOSE_AGE.to_std().expect("a positive duration")),
        };
        if checkout.unpaid_close_after < settings.order_ttl {
            tracing::info!(
                closes_unpaid_after_secs = checkout.unpaid_close_after.as_secs(),
                order_ttl_secs = settings.order_ttl.as_secs(),
                "the reconciliation job closes unpaid orders before ORDER_TTL_SECS; set \
                 RECONCILE_INTERVAL_SECS × RECONCILE_MAX_ATTEMPTS ≥ ORDER_TTL_SECS to give \
                 shoppers the whole time (the pay page counts down to the earlier)"
            );
        }
        let state = web::Data::new(AppState::new(store.clone(), wechat, payments, checkout));
        crate::telemetry::metrics();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap_fn(crate::web::ops::count_request)
                .configure(routes)
        })
        .listen(listener)?
        .run();
        Ok(Application {
            addr,
            api_base,
            server,
            sandbox,
            consumer,
            reconciler,
            shutdown,
            store,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The WeChat Pay base URL in use: the built-in sandbox's, in sandbox mode.
    pub fn api_base(&self) -> &Url {
        &self.api_base
    }

    /// Serves until SIGTERM or Ctrl-C (actix stops accepting and finishes in-flight requests),
    /// then stops the sandbox, drains the payments channel and closes the database.
    pub async fn run(self) -> anyhow::Result<()> {
        let sandbox_handle: Option<SandboxHandle> =
            self.sandbox.as_ref().map(SandboxServer::handle);
        let sandbox_task = self.sandbox.map(|sandbox| tokio::spawn(sandbox.run()));
        let served = self.server.await;
        if let Some(handle) = sandbox_handle {
            handle.stop().await;
        }
        if let Some(task) = sandbox_task {
            task.await??;
        }
        self.shutdown.cancel();
        self.reconciler.await?;
        self.consumer.await?;
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
