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
#[cfg(feature = "fault-injection")]
pub mod faults;
pub mod guard;
pub mod heartbeat;
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
    /// A part Herald cannot work without died or hung (`heartbeat.rs`); restart the process.
    #[error("the {part} {state}; exiting so a supervisor restarts Herald")]
    Dead { part: &'static str, state: String },
}

/// An opened Herald: the database, the rules over it, and the delivery engine.
pub struct Herald {
    service: Service,
    engine: Arc<Engine>,
    store: Store,
    config: Arc<Config>,
    outbound: Arc<Outbound>,
    heartbeats: Arc<heartbeat::Heartbeats>,
    metrics: Arc<metrics::Metrics>,
}

impl Herald {
    /// Opens (or creates) the database named in `config` and prepares every part.
    pub fn open(config: Config) -> Result<Herald, RunError> {
        let config = Arc::new(config);
        let metrics = Arc::new(metrics::Metrics::new());
        let store = Store::open(
            &config.db,
            &StoreSettings::from_config(&config, metrics.clone()),
        )
        .map_err(|source| RunError::Store {
            path: crate::config::redact_url(&config.db.to_string_lossy()),
            source,
        })?;
        let heartbeats = metrics.heartbeats.clone();
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
            metrics.clone(),
        );
        Ok(Herald {
            service,
            engine,
            store,
            config,
            outbound,
            heartbeats,
            metrics,
        })
    }

    pub fn service(&self) -> &Service {
        &self.service
    }

    /// Checks a PostgreSQL database while nodes may serve on it (`Store::check_open`).
    pub async fn check_database(&self) -> Result<String, StoreError> {
        self.store.check_open().await
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
        // Before anything answers: a signal must never find its default action (the end of
        // the process) once the server is up.
        #[cfg(all(feature = "fault-injection", unix))]
        install_fault_signals(&self.heartbeats);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let role = self.config.role;
        let (engine, upkeep) = if role.delivers() {
            let engine = run_delivery(
                self.engine.clone(),
                self.heartbeats.clone(),
                stopped(stop_rx.clone()),
            )?;
            // Background tasks that were running when Herald stopped carry on from their
            // cursors.
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
                self.metrics.clone(),
                stop_rx,
            );
            (Some(engine), upkeep)
        } else {
            // An `api` node: delivery is the workers'; its health does not wait for a
            // scheduler it never runs.
            self.heartbeats.absent(heartbeat::Part::Scheduler);
            (None, Vec::new())
        };
        let routes = if role.serves_api() {
            self.router()
        } else {
            api::worker_router(self.service.clone())
        };
        // Trailing slashes are trimmed before routing: Svix accepts `/api/v1/app/` too.
        let app = tower::Layer::layer(
            &tower_http::normalize_path::NormalizePathLayer::trim_trailing_slash(),
            routes,
        );
        let server = axum::serve(
            listener,
            // The client address feeds the dashboard's login throttle.
            axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
                admin::session::ClientAddr,
            >(app),
        )
        .with_graceful_shutdown(shutdown);
        let result = tokio::select! {
            r = server => r.map_err(RunError::Io),
            (part, state) = watchdog(self.heartbeats.clone()) => {
                tracing::error!(part = part.name(), ?state, "a part died or hung; exiting");
                Err(RunError::Dead { part: part.name(), state: describe(state) })
            }
        };
        let _ = stop_tx.send(true);
        if result.is_ok() {
            if let Some(engine) = engine {
                let _ = engine.await;
            }
            for task in upkeep {
                let _ = task.await;
            }
            self.store.close().await;
        } else {
            // A dead or hung part may never answer: stop what can be stopped, bounded, so the
            // process exits and its supervisor starts a fresh one.
            let _ = tokio::time::timeout(EXIT_WAIT, async {
                if let Some(engine) = engine {
                    let _ = engine.await;
                }
                for task in upkeep {
                    let _ = task.await;
                }
                self.store.close().await;
            })
            .await;
        }
        result
    }
}

/// Runs the delivery engine on a thread of its own with a single-threaded runtime, so the
/// scheduler, the attempts and their outbound connections stay together on one thread instead
/// of being stolen back and forth between the API's workers (a burst measured ~10 % faster
/// end to end this way). Nothing that may take long runs on it: queue scans and loads read on
/// a blocking thread (`Store::read`), templates render on their pool. The answer resolves
/// when the engine has stopped.
fn run_delivery(
    engine: Arc<Engine>,
    heartbeats: Arc<heartbeat::Heartbeats>,
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
            let _alive = heartbeats.alive(heartbeat::Part::Scheduler);
            #[cfg(feature = "fault-injection")]
            runtime.block_on(async {
                tokio::select! {
                    _ = engine.run(shutdown) => {}
                    _ = heartbeats.killed(heartbeat::Part::Scheduler) => {
                        panic!("fault injected: the delivery thread was killed")
                    }
                }
            });
            #[cfg(not(feature = "fault-injection"))]
            runtime.block_on(engine.run(shutdown));
            // Dropping `done` answers too, should the engine panic.
            let _ = done.send(());
        })
        .map_err(RunError::Io)?;
    Ok(stopped)
}

/// How often the watchdog looks at the heartbeats.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a part found dead is left answering 503 at `/api/v1/health` before the process
/// exits, so the probe that finds it (and the operator's log) can say which part it was.
const DEAD_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
/// Bound on stopping what still runs once a part has died.
const EXIT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// With `fault-injection` (tests only), SIGUSR1 kills the writer and SIGUSR2 the delivery
/// thread. Installed at once, not when a future is first polled.
#[cfg(all(feature = "fault-injection", unix))]
fn install_fault_signals(hb: &Arc<heartbeat::Heartbeats>) {
    use tokio::signal::unix::{SignalKind, signal};
    for (kind, part) in [
        (SignalKind::user_defined1(), heartbeat::Part::Writer),
        (SignalKind::user_defined2(), heartbeat::Part::Scheduler),
    ] {
        if let Ok(mut s) = signal(kind) {
            let hb = hb.clone();
            tokio::spawn(async move {
                if s.recv().await.is_some() {
                    hb.kill(part);
                }
            });
        }
    }
}

/// Resolves with the first part that died or hung past `heartbeat::DEAD_AFTER`, once it has
/// stayed so for `DEAD_GRACE`.
async fn watchdog(hb: Arc<heartbeat::Heartbeats>) -> (heartbeat::Part, heartbeat::State) {
    let mut since: Option<std::time::Instant> = None;
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        match hb.given_up() {
            None => since = None,
            Some(found) => {
                let first = *since.get_or_insert_with(std::time::Instant::now);
                if first.elapsed() >= DEAD_GRACE {
                    return found;
                }
                tracing::error!(part = found.0.name(), state = ?found.1, "a part died or hung");
            }
        }
    }
}

fn describe(state: heartbeat::State) -> String {
    match state {
        heartbeat::State::Ok => "is running".into(),
        heartbeat::State::Stuck(age) => format!("has not run for {} s", age.as_secs()),
        heartbeat::State::Dead => "thread has stopped".into(),
    }
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

/// Resolves on SIGINT or SIGTERM. The handlers are installed by this call, not when the
/// future is first polled (axum polls it on a task of its own, possibly after the first
/// requests were answered): a signal sent once the server answers must stop it gracefully,
/// never end it by the signal's default action. Call it within the runtime.
#[cfg(unix)]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    async fn received(s: std::io::Result<Signal>) {
        match s {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    }
    let (term, int) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        tokio::select! {
            _ = received(term) => {}
            _ = received(int) => {}
        }
        tracing::info!("shutdown requested");
    }
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested");
    }
}
