//! Builds the application from settings: the store, the listeners and the background tasks;
//! and runs it until shutdown.

use std::net::{SocketAddr, TcpListener};

use actix_web::{web, App, HttpServer};
use anyhow::Context;

use crate::config::Settings;
use crate::store::Store;
use crate::web::routes;

/// The shop, bound and ready to run.
pub struct Application {
    addr: SocketAddr,
    server: actix_web::dev::Server,
    store: Store,
}

impl Application {
    /// Connects the store (running migrations) and binds the shop's listener. Port 0 binds a
    /// free port, which [`Application::addr`] reports.
    pub async fn build(settings: &Settings) -> anyhow::Result<Application> {
        let store = Store::connect(&settings.database_url)
            .await
            .context("opening the database (DATABASE_URL)")?;
        let listener = TcpListener::bind(settings.listen_addr)
            .with_context(|| format!("binding LISTEN_ADDR {}", settings.listen_addr))?;
        let addr = listener.local_addr()?;
        let data = web::Data::new(store.clone());
        let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(routes))
            .listen(listener)?
            .run();
        Ok(Application {
            addr,
            server,
            store,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until SIGTERM or Ctrl-C (actix stops accepting and finishes in-flight requests),
    /// then closes the database.
    pub async fn run(self) -> anyhow::Result<()> {
        self.server.await?;
        self.store.close().await;
        Ok(())
    }
}
