//! Shared test helpers: a real Herald on port 0 with its own temporary database, real HTTP
//! receivers on 127.0.0.1, and polling with a deadline (never a sleep to wait for a state).

#![allow(dead_code)]

pub mod child;
pub mod pg;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use herald::Herald;
use herald::config::Config;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// A running Herald, stopped when dropped.
pub struct TestServer {
    pub base: String,
    pub token: String,
    pub client: reqwest::Client,
    pub db: std::path::PathBuf,
    pub service: herald::service::Service,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

/// The configuration every test starts from: a fresh database, loopback and http allowed,
/// and a retry schedule of milliseconds so retries are observable without long waits.
///
/// With `HERALD_TEST_BACKEND=postgres` the database is a PostgreSQL database instead, fresh
/// for each directory (`pg.rs`): a test that builds the configuration of `dir` again opens the
/// same database again, as it would the same file.
pub fn test_config(dir: &std::path::Path) -> Config {
    let db = if pg::selected() {
        std::path::PathBuf::from(pg::database_for(dir))
    } else {
        dir.join("herald.redb")
    };
    Config {
        db,
        listen: "127.0.0.1:0".parse().unwrap(),
        allow_destination: vec!["127.0.0.0/8".parse().unwrap()],
        allow_http_destinations: true,
        retry_schedule_ms: vec![20, 40, 80],
        retry_jitter_percent: 0,
        shutdown_grace_ms: 2_000,
        ..Config::default()
    }
}

pub async fn start_server() -> TestServer {
    start_server_with(|_| {}).await
}

pub async fn start_server_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    tweak(&mut config);
    let mut server = start_on(config).await;
    server._dir = Some(dir);
    server
}

/// Starts Herald on an existing configuration (e.g. to reopen a database).
pub async fn start_on(config: Config) -> TestServer {
    let db = config.db.clone();
    let herald = Herald::open(config).expect("herald opens");
    let service = herald.service().clone();
    let token = service.create_token("test", None).await.unwrap().text;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        herald
            .serve(listener, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    TestServer {
        base: format!("http://{addr}/api/v1"),
        token,
        client: reqwest::Client::new(),
        db,
        service,
        stop: Some(stop),
        task: Some(task),
        _dir: None,
    }
}

impl TestServer {
    /// Stops the server gracefully and waits until it has released the database.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
        self._dir.take()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The value of one sample of /metrics (`name` with its labels, as exported), if present.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let root = self.base.trim_end_matches("/api/v1");
        let text = reqwest::get(format!("{root}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .map(|v| v.trim().parse().unwrap())
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
        let text = resp.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.request(reqwest::Method::GET, path, None, Some(&self.token))
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(reqwest::Method::POST, path, Some(body), Some(&self.token))
            .await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.request(reqwest::Method::DELETE, path, None, Some(&self.token))
            .await
    }

    /// Sends raw bytes as a POST body (for malformed-input tests).
    pub async fn post_raw(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let resp = self
            .client
            .post(self.url(path))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Creates an event type, an application and an endpoint pointing at `url`; answers the
    /// application id and endpoint id.
    pub async fn setup(&self, event_type: &str, url: &str) -> (String, String) {
        let (s, _) = self
            .post(
                "/event-type",
                json!({"name": event_type, "description": "test"}),
            )
            .await;
        assert!(s == StatusCode::CREATED || s == StatusCode::CONFLICT, "{s}");
        let (s, app) = self.post("/app", json!({"name": "Test app"})).await;
        assert_eq!(s, StatusCode::CREATED, "{app}");
        let app_id = app["id"].as_str().unwrap().to_string();
        let (s, ep) = self
            .post(
                &format!("/app/{app_id}/endpoint"),
                json!({"url": url, "eventTypes": [event_type]}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{ep}");
        (app_id, ep["id"].as_str().unwrap().to_string())
    }

    pub async fn send(&self, app: &str, event_type: &str, payload: Value) -> Value {
        let (s, msg) = self
            .post(
                &format!("/app/{app}/msg"),
                json!({"eventType": event_type, "payload": payload}),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{msg}");
        msg
    }
}

/// One request a receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When the request reached the receiver (before any delay it was told to add).
    pub at: std::time::Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// How a receiver answers: a queue of statuses used in order, then `then` for the rest.
#[derive(Clone)]
pub struct Behaviour {
    pub script: Vec<u16>,
    pub then: u16,
    pub delay: Duration,
    pub extra_headers: Vec<(String, String)>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            script: Vec::new(),
            then: 200,
            delay: Duration::ZERO,
            extra_headers: Vec::new(),
        }
    }
}

#[derive(Clone, Default)]
struct ReceiverState {
    received: Arc<Mutex<Vec<Received>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    calls: Arc<Mutex<usize>>,
}

/// A real HTTP receiver on 127.0.0.1 that records every request.
pub struct Receiver {
    pub addr: SocketAddr,
    state: ReceiverState,
    stop: Option<oneshot::Sender<()>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Receiver::start_with(Behaviour::default()).await
    }

    pub async fn start_with(behaviour: Behaviour) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Receiver::on(listener, behaviour).await
    }

    /// A receiver behind any listener (e.g. a TLS one); answers 200.
    pub async fn on_listener<L>(listener: L) -> Receiver
    where
        L: axum::serve::Listener<Addr = SocketAddr>,
    {
        let addr = listener.local_addr().unwrap();
        let state = ReceiverState {
            behaviour: Arc::new(Mutex::new(Behaviour::default())),
            ..Default::default()
        };
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(state.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Receiver {
            addr,
            state,
            stop: Some(stop),
        }
    }

    pub async fn on(listener: tokio::net::TcpListener, behaviour: Behaviour) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let state = ReceiverState {
            behaviour: Arc::new(Mutex::new(behaviour)),
            ..Default::default()
        };
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(state.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Receiver {
            addr,
            state,
            stop: Some(stop),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.state.received.lock().unwrap().len()
    }

    /// Requests that reached the receiver, those still being answered (delayed) included.
    pub fn calls(&self) -> usize {
        *self.state.calls.lock().unwrap()
    }

    pub fn set_behaviour(&self, b: Behaviour) {
        *self.state.behaviour.lock().unwrap() = b;
    }

    /// Waits until at least `n` requests arrived, or panics at the deadline.
    pub async fn wait_for(&self, n: usize, deadline: Duration) -> Vec<Received> {
        eventually(deadline, || async { self.count() >= n }).await;
        self.received()
    }

    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn receive(
    State(state): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let behaviour = state.behaviour.lock().unwrap().clone();
    let at = std::time::Instant::now();
    let call = {
        let mut calls = state.calls.lock().unwrap();
        *calls += 1;
        *calls - 1
    };
    if !behaviour.delay.is_zero() {
        tokio::time::sleep(behaviour.delay).await;
    }
    state
        .received
        .lock()
        .unwrap()
        .push(Received { headers, body, at });
    let status = behaviour
        .script
        .get(call)
        .copied()
        .unwrap_or(behaviour.then);
    let mut response = (
        StatusCode::from_u16(status).unwrap(),
        format!("answer {call}"),
    )
        .into_response();
    for (k, v) in behaviour.extra_headers {
        response.headers_mut().insert(
            axum::http::HeaderName::try_from(k).unwrap(),
            axum::http::HeaderValue::try_from(v).unwrap(),
        );
    }
    response
}

/// Writes back what is dirty in the page cache (`sync`), before a test measures latency: a
/// build or an earlier test leaves gigabytes of it, and an fsync queued behind their writeback
/// measures the disk, not Herald (herald-bench does the same before each run).
pub fn write_back_page_cache() {
    let _ = std::process::Command::new("sync").status();
}

/// Polls `condition` every few milliseconds until it holds; panics at the deadline.
pub async fn eventually<F, Fut>(deadline: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    loop {
        if condition().await {
            return;
        }
        if start.elapsed() > deadline {
            panic!("condition not met within {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Verifies a Standard Webhooks signature as a receiver would, independently of Herald's
/// signing module: HMAC-SHA256 over "{id}.{timestamp}.{body}" with the base64 secret.
pub fn verify_signature(secret: &str, r: &Received) -> bool {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(
        format!(
            "{}.{}.",
            r.header("webhook-id"),
            r.header("webhook-timestamp")
        )
        .as_bytes(),
    );
    mac.update(&r.body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    r.header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}

/// Every line Herald logs in this test process (debug and up), captured from the first call
/// on. One subscriber serves the whole process and tests run in parallel: look for text only
/// your test produces (its server's port, a value it made up).
pub fn logs() -> String {
    static CAPTURED: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    let buffer = CAPTURED.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = LogSink(buffer.clone());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("herald=debug"))
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .try_init();
        buffer
    });
    String::from_utf8_lossy(&buffer.lock().unwrap()).into_owned()
}

#[derive(Clone)]
struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sets one setting by its `herald.toml` name, as an operator would write it; a name the
/// build does not know fails the test.
pub fn set(config: &mut Config, name: &str, value: Value) {
    let mut all = serde_json::to_value(&*config).unwrap();
    all[name] = value;
    *config = serde_json::from_value(all).unwrap_or_else(|e| panic!("setting {name}: {e}"));
}

/// A loopback URL where every attempt fails at once: it answers 500 to every request. (A
/// receiver that refuses or drops connections would pause its endpoint after a few attempts,
/// see `delivery/pacing.rs`; these tests want every delivery attempted.) The port stays held
/// for the test process, so nothing else can take it.
pub fn dead_url() -> String {
    use std::io::{BufRead, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(&conn);
                // One request per connection: its head, then as much body as it announced.
                let mut length = 0usize;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    let header = line.trim_end().to_ascii_lowercase();
                    if header.is_empty() {
                        break;
                    }
                    if let Some(v) = header.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let _ = (&conn).write_all(
                    b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\nconnection: close\r\n\r\ngone",
                );
            });
        }
    });
    format!("http://127.0.0.1:{port}/gone")
}

/// The nearest rank percentile of sorted `values` (`p` in 0..=100).
pub fn percentile<T: Copy>(sorted: &[T], p: usize) -> T {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}
