//! Herald: a webhook delivery appliance in one binary.
//!
//! Crate map (imports point down):
//! - `api/` (JSON, Svix v1 compatible) and `admin/` (the HTML dashboard and tenant portal) —
//!   the two front doors
//! - `service/` — every rule, once; `delivery/` — the background queue workers, beside it
//! - `storage/` (the only redb code) and `routing/` (pure matching)
//! - `model`, `config`, `signing`, `guard` — plain types and pure functions at the ground
//!
//! [`Herald::open`] wires the parts over one database file; [`Herald::serve`] runs the API and
//! the delivery engine until a shutdown future resolves. See ARCHITECTURE.md.

#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod config;
pub mod delivery;
pub mod guard;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod routing;
pub mod service;
pub mod signing;
pub mod storage;
pub mod tls;
mod unread_body;

use std::future::Future;
use std::sync::Arc;

use axum::Router;

use crate::config::Config;
use crate::delivery::{Engine, Outbound, Waker};
use crate::service::Service;
use crate::storage::{Store, StoreError, StoreSettings};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("database {path}: {source}")]
    Store { path: String, source: StoreError },
    #[error("{0}")]
    Outbound(#[from] crate::delivery::outbound::OutboundError),
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// An opened Herald: the database, the rules over it, and the delivery engine.
pub struct Herald {
    service: Service,
    engine: Arc<Engine>,
    store: Store,
    config: Arc<Config>,
    outbound: Arc<Outbound>,
}

impl Herald {
    /// Opens (or creates) the database named in `config` and prepares every part.
    pub fn open(config: Config) -> Result<Herald, RunError> {
        let config = Arc::new(config);
        let metrics = Arc::new(metrics::Metrics::new());
        let store = Store::open(
            &config.db,
            &StoreSettings {
                writer_batch_max: config.writer_batch_max,
                writer_queue_max: config.writer_queue_max,
                metrics: metrics.clone(),
                cache_bytes: config.db_cache_bytes,
            },
        )
        .map_err(|source| RunError::Store {
            path: config.db.display().to_string(),
            source,
        })?;
        let waker = Waker::default();
        let outbound = Arc::new(Outbound::new(&config)?);
        let service = Service::new(
            store.clone(),
            config.clone(),
            waker.clone(),
            outbound.clone(),
            metrics.clone(),
        );
        let engine = Engine::new(
            store.clone(),
            config.clone(),
            waker,
            outbound.clone(),
            metrics,
        );
        Ok(Herald {
            service,
            engine,
            store,
            config,
            outbound,
        })
    }

    pub fn service(&self) -> &Service {
        &self.service
    }

    /// Closes the database without serving (for commands that only read or write it).
    pub async fn close(self) {
        self.store.close().await;
    }

    /// The HTTP application: the API under `/api`, the dashboard everywhere else.
    pub fn router(&self) -> Router {
        // The API answers what it routes; whatever it does not is the dashboard's, except
        // unknown paths under /api, which keep the API's JSON 404.
        let dashboard = admin::router(self.service.clone())
            .route("/api", axum::routing::any(no_such_api_route))
            .route("/api/{*rest}", axum::routing::any(no_such_api_route));
        api::router(self.service.clone())
            .fallback_service(dashboard)
            .layer(axum::middleware::from_fn(unread_body::close_if_unread))
    }

    /// Serves HTTP on `listener` and runs delivery until `shutdown` resolves; then stops
    /// accepting, lets attempts in flight finish (bounded by `shutdown_grace_ms`) and returns.
    pub async fn serve<L>(
        self,
        listener: L,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RunError>
    where
        L: axum::serve::Listener<Addr = std::net::SocketAddr>,
        for<'a> admin::session::ClientAddr:
            axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
    {
        if let Ok(addr) = listener.local_addr() {
            self.service.listening_on(addr);
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let engine = run_delivery(self.engine.clone(), stopped(stop_rx.clone()))?;
        // Background tasks that were running when Herald stopped carry on from their cursors.
        let service = self.service.clone();
        tokio::spawn(async move {
            if let Err(e) = service.resume_tasks().await {
                tracing::error!(error = %e, "background tasks could not be resumed");
            }
        });
        let upkeep = ops::spawn(
            self.store.clone(),
            self.config.clone(),
            self.outbound.clone(),
            stop_rx,
        );
        // Trailing slashes are trimmed before routing: Svix accepts `/api/v1/app/` too.
        let app = tower::Layer::layer(
            &tower_http::normalize_path::NormalizePathLayer::trim_trailing_slash(),
            self.router(),
        );
        let server = axum::serve(
            listener,
            // The client address feeds the dashboard's login throttle.
            axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
                admin::session::ClientAddr,
            >(app),
        )
        .with_graceful_shutdown(shutdown);
        let result = server.await;
        let _ = stop_tx.send(true);
        let _ = engine.await;
        for task in upkeep {
            let _ = task.await;
        }
        self.store.close().await;
        result.map_err(RunError::Io)
    }
}

/// Runs the delivery engine on a thread of its own with a single-threaded runtime, so the
/// scheduler, the attempts and their outbound connections stay together on one thread instead
/// of being stolen back and forth between the API's workers (a burst measured ~10 % faster
/// end to end this way). Its queue scans read on this thread too (`Store::read_here`). The
/// answer resolves when the engine has stopped.
fn run_delivery(
    engine: Arc<Engine>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<tokio::sync::oneshot::Receiver<()>, RunError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("herald-delivery")
        .build()
        .map_err(RunError::Io)?;
    let (done, stopped) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("herald-delivery".into())
        .spawn(move || {
            runtime.block_on(engine.run(shutdown));
            // Dropping `done` answers too, should the engine panic.
            let _ = done.send(());
        })
        .map_err(RunError::Io)?;
    Ok(stopped)
}

async fn no_such_api_route() -> api::error::ApiError {
    api::error::ApiError::not_found("No such route")
}

async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown requested");
}
