//! The fault suite of the real binary: 20 `kill -9` at random moments (seeded; the seed is
//! printed) while several clients post messages and a flaky receiver answers 500s, answers
//! after the attempt timeout, or closes the connection without answering.
//!
//! It proves, for the file Herald keeps:
//! - after every kill, `herald check` finds it clean;
//! - every message answered 202 reached the receiver with a 2xx at least once (the receiver
//!   counts a message only when it answered 2xx to it);
//! - after a graceful stop nothing is pending: `herald check` shows no queue entry, and every
//!   delivery of every stored message (acknowledged or not) is `success` — not parked, not
//!   failed, not waiting without a queue entry — read back by a server on that file whose
//!   receiver holds every request, so that reading cannot change what it reads;
//! - a backup taken with `herald backup --url` during the load opens with `herald check`, and a
//!   server started on it delivers every delivery that was pending in it.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::eventually;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_herald");
const KILLS: usize = 20;
/// The backup is taken right after this restart, while the clients keep posting.
const BACKUP_AFTER_KILL: usize = 9;
const CLIENTS: usize = 6;
/// Each client's pause between two messages: a steady load a debug build on two cores can
/// deliver within the test's time.
const CLIENT_PAUSE: Duration = Duration::from_millis(12);
/// The server's per-attempt timeout; the receiver's slow answers come after it.
const ATTEMPT_TIMEOUT_MS: u64 = 300;
/// Short delays, and many of them: a delivery fails for good only after 17 failed attempts
/// in a row (0.45^17, about 1e-6, per delivery at the receiver's failure rate).
const RETRY_SCHEDULE_MS: &str =
    "[50,100,200,400,800,1000,1000,1000,1000,1000,1000,1000,1000,1000,1000,1000]";
/// Bounds on each wait for a state.
const DRAIN_WITHIN: Duration = Duration::from_secs(90);
const PAGE: usize = 250;
/// Bound on the pages of one listing.
const PAGES_MAX: usize = 1_000;

// ---------------------------------------------------------------------------------------------
// The flaky receiver

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Random 500s, answers after the attempt timeout, dropped connections, and successes.
    Flaky,
    /// Answers nothing until the mode changes, then answers 200: nothing can succeed or fail
    /// meanwhile, so a server's state can be read without changing it.
    Hold,
    /// Always 200.
    Reliable,
}

#[derive(Default)]
struct Outcomes {
    requests: AtomicU64,
    ok: AtomicU64,
    status_500: AtomicU64,
    slow: AtomicU64,
    dropped: AtomicU64,
    unparsed: AtomicU64,
}

struct FlakyState {
    mode: tokio::sync::watch::Sender<Mode>,
    rng: Mutex<StdRng>,
    /// Every 2xx answer: (epoch, endpoint path, seq).
    successes: Mutex<Vec<(u32, String, u64)>>,
    epoch: std::sync::atomic::AtomicU32,
    outcomes: Outcomes,
}

/// A webhook receiver on 127.0.0.1 speaking HTTP/1.1 by hand, so that it can close a
/// connection without answering.
struct FlakyReceiver {
    addr: SocketAddr,
    state: Arc<FlakyState>,
    accept: tokio::task::JoinHandle<()>,
}

impl FlakyReceiver {
    async fn start(seed: u64) -> FlakyReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(FlakyState {
            mode: tokio::sync::watch::Sender::new(Mode::Flaky),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            successes: Mutex::default(),
            epoch: Default::default(),
            outcomes: Outcomes::default(),
        });
        let st = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve_connection(sock, st.clone()));
            }
        });
        FlakyReceiver {
            addr,
            state,
            accept,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    fn set_mode(&self, mode: Mode) {
        self.state.mode.send_replace(mode);
    }

    /// Successes from now on are counted in a new epoch.
    fn next_epoch(&self) -> u32 {
        self.state.epoch.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Distinct (endpoint path, seq) answered 2xx in `epoch`, and the number of 2xx answers.
    fn delivered(&self, epoch: u32) -> (HashSet<(String, u64)>, usize) {
        let all = self.state.successes.lock().unwrap();
        let mut set = HashSet::new();
        let mut answers = 0;
        for (e, path, seq) in all.iter() {
            if *e == epoch {
                set.insert((path.clone(), *seq));
                answers += 1;
            }
        }
        (set, answers)
    }

    fn requests(&self) -> u64 {
        self.state.outcomes.requests.load(Ordering::SeqCst)
    }
}

impl Drop for FlakyReceiver {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

enum Answer {
    Ok,
    /// 200 after a short delay, well inside the attempt timeout.
    OkLate(Duration),
    Status500,
    /// 500 after the attempt timeout has passed: the server has given up by then.
    Slow(Duration),
    /// Close the connection without a word.
    Drop,
}

/// Longest request head the receiver reads.
const HEAD_MAX: usize = 64 * 1024;
/// Largest request body the receiver reads.
const BODY_MAX: usize = 1024 * 1024;

async fn serve_connection(mut sock: tokio::net::TcpStream, st: Arc<FlakyState>) {
    let mut buf: Vec<u8> = Vec::new();
    // Requests on one keep-alive connection; each ends the loop or the next read does.
    loop {
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            if buf.len() > HEAD_MAX || !read_more(&mut sock, &mut buf).await {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let path = head
            .split(' ')
            .nth(1)
            .unwrap_or("")
            .trim_start_matches('/')
            .to_string();
        let mut length = 0usize;
        let mut close = false;
        for line in head.split("\r\n").skip(1) {
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(usize::MAX);
                }
                if k.eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close") {
                    close = true;
                }
            }
        }
        if length > BODY_MAX {
            st.outcomes.unparsed.fetch_add(1, Ordering::SeqCst);
            return;
        }
        let total = head_end + 4 + length;
        while buf.len() < total {
            if !read_more(&mut sock, &mut buf).await {
                return;
            }
        }
        let body: Vec<u8> = buf.drain(..total).skip(head_end + 4).collect();
        st.outcomes.requests.fetch_add(1, Ordering::SeqCst);
        let Some(seq) = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["seq"].as_u64())
        else {
            st.outcomes.unparsed.fetch_add(1, Ordering::SeqCst);
            return;
        };
        let mode = *st.mode.borrow();
        let answer = match mode {
            Mode::Reliable => Answer::Ok,
            Mode::Hold => {
                let mut rx = st.mode.subscribe();
                let _ = rx.wait_for(|m| *m != Mode::Hold).await;
                Answer::Ok
            }
            Mode::Flaky => {
                let mut rng = st.rng.lock().unwrap();
                let roll: f64 = rng.r#gen();
                if roll < 0.55 {
                    Answer::Ok
                } else if roll < 0.65 {
                    Answer::OkLate(Duration::from_millis(rng.gen_range(5..60)))
                } else if roll < 0.80 {
                    Answer::Status500
                } else if roll < 0.90 {
                    Answer::Slow(Duration::from_millis(
                        ATTEMPT_TIMEOUT_MS + rng.gen_range(150..500),
                    ))
                } else {
                    Answer::Drop
                }
            }
        };
        let status = match answer {
            Answer::Ok => 200,
            Answer::OkLate(d) => {
                tokio::time::sleep(d).await;
                200
            }
            Answer::Status500 => {
                st.outcomes.status_500.fetch_add(1, Ordering::SeqCst);
                500
            }
            Answer::Slow(d) => {
                st.outcomes.slow.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(d).await;
                500
            }
            Answer::Drop => {
                st.outcomes.dropped.fetch_add(1, Ordering::SeqCst);
                return;
            }
        };
        if status == 200 {
            // Counted when the receiver decides to answer 2xx: if the answer is lost on the
            // way, the server retries and the message arrives again (a duplicate, not a loss).
            st.outcomes.ok.fetch_add(1, Ordering::SeqCst);
            let epoch = st.epoch.load(Ordering::SeqCst);
            st.successes.lock().unwrap().push((epoch, path, seq));
        }
        let reason = if status == 200 {
            "OK"
        } else {
            "Internal Server Error"
        };
        let response = format!("HTTP/1.1 {status} {reason}\r\ncontent-length: 2\r\n\r\nok");
        if sock.write_all(response.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

async fn read_more(sock: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match sock.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The real binary

struct Herald {
    child: Child,
    port: u16,
}

impl Herald {
    /// Starts `herald serve` on `db`; its stderr is appended to `log`.
    fn start(db: &Path, port: u16, log: &Path, request_timeout_ms: u64) -> Herald {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = common::child::serve_command(db, port)
            .env("HERALD_REQUEST_TIMEOUT_MS", request_timeout_ms.to_string())
            .env("HERALD_RETRY_SCHEDULE_MS", RETRY_SCHEDULE_MS)
            .stderr(Stdio::from(log))
            .spawn()
            .expect("herald starts");
        Herald { child, port }
    }

    fn kill9(&mut self) {
        self.child.kill().unwrap(); // SIGKILL on Unix
        self.child.wait().unwrap();
    }

    /// SIGTERM: a graceful stop.
    fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "herald did not stop cleanly: {exit}");
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1", self.port)
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        // Never leave a server behind when the test fails half-way.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `herald check PATH`: must succeed; answers its report and the `queued` count.
fn check(db: &Path) -> (String, u64) {
    let out = Command::new(BIN).arg("check").arg(db).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "herald check {} failed:\n{text}",
        db.display()
    );
    assert!(text.trim_end().ends_with("ok"), "herald check:\n{text}");
    let queued = text
        .lines()
        .find_map(|l| l.strip_prefix("queued"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no queued line in:\n{text}"));
    (text, queued)
}

fn count_of(report: &str, table: &str) -> u64 {
    report
        .lines()
        .find_map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next() == Some(table)).then(|| parts.next()?.parse().ok())?
        })
        .unwrap_or(0)
}

async fn wait_healthy(client: &reqwest::Client, port: u16) {
    eventually(Duration::from_secs(30), || async {
        client
            .get(format!("http://127.0.0.1:{port}/api/v1/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
}

use common::child::free_port;

// ---------------------------------------------------------------------------------------------
// Reading a server's state through the API

struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn get(&self, path: &str) -> Value {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert!(status.is_success(), "GET {path}: {status} {body}");
        body
    }

    /// Every item of a list, following `iterator` until `done`.
    async fn list_all(&self, path: &str) -> Vec<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut iterator: Option<String> = None;
        for _ in 0..PAGES_MAX {
            let page = match &iterator {
                None => self.get(&format!("{path}{sep}limit={PAGE}")).await,
                Some(it) => {
                    self.get(&format!("{path}{sep}limit={PAGE}&iterator={it}"))
                        .await
                }
            };
            items.extend(page["data"].as_array().unwrap().iter().cloned());
            if page["done"] == true {
                return items;
            }
            iterator = Some(page["iterator"].as_str().unwrap().to_string());
        }
        panic!("{path}: more than {PAGES_MAX} pages");
    }

    /// Every message of the app: id -> seq.
    async fn messages(&self, app: &str) -> HashMap<String, u64> {
        self.list_all(&format!("/app/{app}/msg"))
            .await
            .iter()
            .map(|m| {
                (
                    m["id"].as_str().unwrap().to_string(),
                    m["payload"]["seq"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    /// Ids of the messages whose delivery to `endpoint` succeeded.
    async fn succeeded(&self, app: &str, endpoint: &str) -> HashSet<String> {
        self.list_all(&format!(
            "/app/{app}/endpoint/{endpoint}/msg?status=0&with_content=false"
        ))
        .await
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
    }

    /// For every message, the status of its delivery to each endpoint (read one message at
    /// a time: every delivery, attempted or not).
    async fn destinations(
        &self,
        app: &str,
        messages: &HashMap<String, u64>,
    ) -> Vec<(u64, String, u64)> {
        let results: Vec<Vec<(u64, String, u64)>> = futures::stream::iter(messages.iter())
            .map(|(id, seq)| async move {
                self.list_all(&format!("/app/{app}/msg/{id}/endpoint"))
                    .await
                    .iter()
                    .map(|d| {
                        (
                            *seq,
                            d["id"].as_str().unwrap().to_string(),
                            d["status"].as_u64().unwrap(),
                        )
                    })
                    .collect()
            })
            .buffer_unordered(8)
            .collect()
            .await;
        results.into_iter().flatten().collect()
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_with_a_flaky_receiver_loses_nothing_acknowledged() {
    let started = Instant::now();
    let seed: u64 = std::env::var("HERALD_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().r#gen());
    println!("fault seed {seed} (rerun with HERALD_FAULT_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.redb");
    let log = dir.path().join("herald.log");
    let out = Command::new(BIN)
        .args(["token", "create", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();

    let receiver = FlakyReceiver::start(seed ^ 0x5eed).await;
    let port = free_port();
    let mut herald = Herald::start(&db, port, &log, ATTEMPT_TIMEOUT_MS);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    wait_healthy(&client, port).await;
    let api = Api {
        client: client.clone(),
        base: herald.base(),
        token: token.clone(),
    };
    let post = |path: &str, body: Value| {
        client
            .post(format!("{}{path}", herald.base()))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let r = post(
        "/event-type",
        json!({"name": "load.tick", "description": ""}),
    )
    .await
    .unwrap();
    assert!(r.status().is_success());
    let r = post("/app", json!({"name": "Load", "uid": "load"}))
        .await
        .unwrap();
    assert!(r.status().is_success());
    // Two endpoints on the receiver: every message is owed to each.
    let mut endpoints: BTreeMap<String, String> = BTreeMap::new(); // id -> receiver path
    for path in ["a", "b"] {
        let r = post(
            "/app/load/endpoint",
            json!({"url": receiver.url(path), "uid": format!("ep-{path}")}),
        )
        .await
        .unwrap();
        assert!(r.status().is_success());
        let ep: Value = r.json().await.unwrap();
        endpoints.insert(ep["id"].as_str().unwrap().to_string(), path.to_string());
    }

    // Clients post numbered messages; a number counts once Herald answered 202 for it.
    let acked: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let refused = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (acked, refused, next, stop) =
            (acked.clone(), refused.clone(), next.clone(), stop.clone());
        let (base, token) = (herald.base(), token.clone());
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            // Bounded: the kill schedule ends long before this many messages.
            for _ in 0..50_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let seq = next.fetch_add(1, Ordering::SeqCst);
                let r = client
                    .post(format!("{base}/app/load/msg"))
                    .bearer_auth(&token)
                    .json(&json!({"eventType": "load.tick", "payload": {"seq": seq, "pad": "x".repeat(200)}}))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED => {
                        acked.lock().unwrap().insert(seq);
                        tokio::time::sleep(CLIENT_PAUSE).await;
                    }
                    // Refused, reset, or answered otherwise while Herald dies or starts:
                    // not acknowledged, so not owed.
                    _ => {
                        refused.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }

    // 20 kills at random moments; `herald check` after each; a backup half-way.
    let backup = dir.path().join("backup.redb");
    let mut backup_report = None;
    for kill in 1..=KILLS {
        let wait = Duration::from_millis(rng.gen_range(50..1_500));
        tokio::time::sleep(wait).await; // a random moment under load, not a wait for a state
        herald.kill9();
        let (report, queued) = check(&db);
        println!(
            "kill {kill:>2} after {wait:>6.0?}: acknowledged so far {:>5}, messages {:>5}, queued {queued:>4}: check ok",
            acked.lock().unwrap().len(),
            count_of(&report, "messages"),
        );
        herald = Herald::start(&db, port, &log, ATTEMPT_TIMEOUT_MS);
        wait_healthy(&client, port).await;
        if kill == BACKUP_AFTER_KILL {
            let (url, token, out) = (
                format!("http://127.0.0.1:{port}"),
                token.clone(),
                backup.clone(),
            );
            let result = tokio::task::spawn_blocking(move || {
                Command::new(BIN)
                    .args(["backup", "--url", &url, "--token", &token])
                    .arg(&out)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap();
            let text = String::from_utf8_lossy(&result.stdout).into_owned()
                + &String::from_utf8_lossy(&result.stderr);
            assert!(
                result.status.success(),
                "herald backup --url failed:\n{text}"
            );
            let (report, queued) = check(&backup);
            println!(
                "backup after kill {kill}, under load: messages {}, deliveries {}, queued {queued}: check ok",
                count_of(&report, "messages"),
                count_of(&report, "deliveries")
            );
            backup_report = Some((report, queued));
        }
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let load_ended = started.elapsed();
    let acked = acked.lock().unwrap().clone();
    println!(
        "load ended after {load_ended:.1?}: {} acknowledged, {} not acknowledged (refused or cut off)",
        acked.len(),
        refused.load(Ordering::SeqCst)
    );

    // Every acknowledged message reaches each endpoint.
    let owed: HashSet<(String, u64)> = acked
        .iter()
        .flat_map(|seq| endpoints.values().map(move |p| (p.clone(), *seq)))
        .collect();
    let drained = Instant::now();
    eventually(DRAIN_WITHIN, || async {
        owed.is_subset(&receiver.delivered(0).0)
    })
    .await;
    // And every stored message, acknowledged or not, is delivered: Herald settles.
    let messages = api.messages("load").await;
    eventually(DRAIN_WITHIN, || async {
        for id in endpoints.keys() {
            let ok = api.succeeded("load", id).await;
            if !messages.keys().all(|m| ok.contains(m)) {
                return false;
            }
        }
        true
    })
    .await;
    println!("drained in {:.1?}", drained.elapsed());
    let (delivered, answers) = receiver.delivered(0);
    let missing = owed.difference(&delivered).count();
    let o = &receiver.state.outcomes;
    println!(
        "kills {KILLS}; acknowledged {}; stored {} ({} not acknowledged); delivered {} (message, endpoint) pairs with {answers} 2xx answers: {} duplicates; missing {missing}",
        acked.len(),
        messages.len(),
        messages.values().filter(|s| !acked.contains(s)).count(),
        delivered.len(),
        answers - delivered.len(),
    );
    println!(
        "receiver: {} requests: {} ok, {} 500, {} answered after the timeout, {} dropped",
        o.requests.load(Ordering::SeqCst),
        o.ok.load(Ordering::SeqCst),
        o.status_500.load(Ordering::SeqCst),
        o.slow.load(Ordering::SeqCst),
        o.dropped.load(Ordering::SeqCst),
    );
    assert_eq!(
        o.unparsed.load(Ordering::SeqCst),
        0,
        "requests the receiver could not read"
    );
    assert_eq!(missing, 0, "acknowledged messages missing at the receiver");
    assert!(
        acked.len() >= 500,
        "too little load to prove anything: {}",
        acked.len()
    );

    // A graceful stop leaves nothing pending: no queue entry...
    herald.terminate();
    let (report, queued) = check(&db);
    println!("after a graceful stop:\n{report}");
    assert_eq!(queued, 0, "queue entries left after a graceful stop");
    // ...and no delivery in any state but success. Read by a server on the same file whose
    // receiver holds every request: any delivery still pending would reach it.
    receiver.set_mode(Mode::Hold);
    let requests_before = receiver.requests();
    let mut herald = Herald::start(&db, port, &log, 60_000);
    wait_healthy(&client, port).await;
    let stored = api.messages("load").await;
    assert_eq!(stored.len(), messages.len());
    let statuses = api.destinations("load", &stored).await;
    let mut by_status: BTreeMap<u64, usize> = BTreeMap::new();
    for (_, _, status) in &statuses {
        *by_status.entry(*status).or_default() += 1;
    }
    println!(
        "deliveries after the graceful stop by status (0 success, 1 pending, 2 fail, 3 sending, 4 canceled): {by_status:?}"
    );
    assert_eq!(
        statuses.len(),
        stored.len() * endpoints.len(),
        "every message has one delivery per endpoint"
    );
    assert!(
        statuses
            .iter()
            .all(|(_, ep, status)| *status == 0 && endpoints.contains_key(ep)),
        "deliveries not succeeded: {:?}",
        statuses
            .iter()
            .filter(|d| d.2 != 0)
            .take(20)
            .collect::<Vec<_>>()
    );
    for id in endpoints.keys() {
        let ep = api.get(&format!("/app/load/endpoint/{id}")).await;
        assert_eq!(ep["disabled"], false, "{ep}");
    }
    assert_eq!(
        receiver.requests(),
        requests_before,
        "a server on the stopped file still had something to deliver"
    );
    herald.terminate();
    check(&db);

    // The backup taken under load: a server on it delivers what was pending in it.
    let (backup_report, backup_queued) = backup_report.expect("the backup was taken");
    let restored_db = dir.path().join("restored.redb");
    std::fs::copy(&backup, &restored_db).unwrap();
    let epoch = receiver.next_epoch();
    let restored_port = free_port();
    let mut restored = Herald::start(&restored_db, restored_port, &log, 60_000);
    wait_healthy(&client, restored_port).await;
    let restored_api = Api {
        client: client.clone(),
        base: restored.base(),
        token: token.clone(),
    };
    let in_backup = restored_api.messages("load").await;
    assert_eq!(in_backup.len() as u64, count_of(&backup_report, "messages"));
    let statuses = restored_api.destinations("load", &in_backup).await;
    let pending: HashSet<(String, u64)> = statuses
        .iter()
        .filter(|(_, _, status)| *status != 0)
        .map(|(seq, ep, _)| (endpoints[ep].clone(), *seq))
        .collect();
    assert!(
        statuses.iter().all(|(_, _, s)| matches!(s, 0 | 1 | 3)),
        "deliveries in the backup neither succeeded nor pending: {:?}",
        statuses
            .iter()
            .filter(|d| !matches!(d.2, 0 | 1 | 3))
            .take(20)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        pending.len() as u64,
        backup_queued,
        "pending deliveries in the backup and its queue entries differ"
    );
    assert!(
        !pending.is_empty(),
        "the backup caught nothing pending; nothing to prove"
    );
    receiver.set_mode(Mode::Reliable);
    eventually(DRAIN_WITHIN, || async {
        pending.is_subset(&receiver.delivered(epoch).0)
    })
    .await;
    eventually(DRAIN_WITHIN, || async {
        for id in endpoints.keys() {
            let ok = restored_api.succeeded("load", id).await;
            if !in_backup.keys().all(|m| ok.contains(m)) {
                return false;
            }
        }
        true
    })
    .await;
    restored.terminate();
    let (_, queued) = check(&restored_db);
    assert_eq!(queued, 0);
    println!(
        "backup: {} messages, {} deliveries pending in it, all {} delivered by a server started on it",
        in_backup.len(),
        pending.len(),
        pending.len()
    );

    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !log_text.contains("panicked"),
        "herald panicked:\n{}",
        log_text
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!("fault suite took {:.1?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// Silent death: a dead writer or delivery thread is seen by health and ends the process

/// Kills one part of a running server through its test-only hook (`fault-injection`: SIGUSR1
/// kills the writer thread, SIGUSR2 the delivery thread), then expects `/api/v1/health` to
/// answer 503 naming it, and the process to exit non-zero by itself.
async fn a_dead_part_is_named_and_ends_the_process(signal: &str, code: &str) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.redb");
    let log = dir.path().join("herald.log");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let (mut herald, port) = start_own(&db, &log, &client).await;
    let metrics = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for part in ["writer", "scheduler"] {
        assert!(
            metrics.contains(&format!("herald_heartbeat_age_seconds{{part=\"{part}\"}}")),
            "{metrics}"
        );
    }
    let status = Command::new("kill")
        .args([signal, &herald.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let named = Arc::new(Mutex::new(None));
    eventually(Duration::from_secs(10), || {
        let (client, named) = (client.clone(), named.clone());
        async move {
            let Ok(r) = client
                .get(format!("http://127.0.0.1:{port}/api/v1/health"))
                .send()
                .await
            else {
                return false;
            };
            let status = r.status();
            let body: Value = r.json().await.unwrap_or_default();
            if status == reqwest::StatusCode::SERVICE_UNAVAILABLE && body["code"] == code {
                *named.lock().unwrap() = Some(body);
                return true;
            }
            false
        }
    })
    .await;
    println!("health: {}", named.lock().unwrap().as_ref().unwrap());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = herald.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "herald still runs 15 s after its {code} part died"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        !exit.success() && exit.code().is_some(),
        "herald must exit non-zero (not by a signal): {exit}"
    );
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(log_text.contains("supervisor restarts"), "{log_text}");
    // Restarted, it serves and is healthy again.
    let mut herald = Herald::start(&db, port, &log, ATTEMPT_TIMEOUT_MS);
    wait_healthy(&client, port).await;
    herald.terminate();
}

/// Starts Herald on a free port, and makes sure the server answering there is this one: the
/// port was free when chosen, but a process of another test running beside this one may take
/// it before Herald binds it, and health alone would then be answered by that one.
async fn start_own(db: &Path, log: &Path, client: &reqwest::Client) -> (Herald, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut herald = Herald::start(db, port, log, ATTEMPT_TIMEOUT_MS);
        wait_healthy(client, port).await;
        let token_file = format!("{}.admin-token", db.display());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && herald.child.try_wait().unwrap().is_none() {
            // This server's own admin token opens its API; another's would answer 401.
            if let Ok(token) = std::fs::read_to_string(&token_file) {
                let answer = client
                    .get(format!("http://127.0.0.1:{port}/api/v1/app"))
                    .bearer_auth(token.trim())
                    .send()
                    .await;
                if answer.is_ok_and(|r| r.status().is_success()) {
                    return (herald, port);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(herald);
    }
    panic!("Herald did not start on a port of its own in five tries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_writer_fails_health_and_exits_non_zero() {
    a_dead_part_is_named_and_ends_the_process("-USR1", "writer_stuck").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_delivery_thread_fails_health_and_exits_non_zero() {
    a_dead_part_is_named_and_ends_the_process("-USR2", "scheduler_stuck").await;
}

// ---------------------------------------------------------------------------------------------
// kill -9 while endpoints are enabled, verified and deleted

const CHURN_KILLS: usize = 20;

use common::child::to_mend;

/// One endpoint the churn made, with the receiver that holds its verification code.
struct Churned {
    app: String,
    id: String,
    receiver: common::Receiver,
}

/// Changes endpoints at random until `stop`: creates unverified ones (their deliveries
/// park), verifies them, disables and enables them, deletes them or their applications.
/// Failures are expected (the server is killed under it) and ignored.
async fn churn(base: String, token: String, seed: u64, stop: Arc<AtomicBool>) -> u64 {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut made: Vec<Churned> = Vec::new();
    let mut changes = 0;
    let mut k = 0u64;
    while !stop.load(Ordering::SeqCst) {
        k += 1;
        let roll = rng.gen_range(0..10);
        let ok = if made.len() < 3 || roll < 3 {
            // A new endpoint waiting for its verification, in "load" or in an app of its own.
            let app = if rng.gen_bool(0.5) {
                "load".to_string()
            } else {
                format!("churn-{seed}-{k}")
            };
            if app != "load" {
                let _ = client
                    .post(format!("{base}/app"))
                    .bearer_auth(&token)
                    .json(&json!({"name": app, "uid": app}))
                    .send()
                    .await;
            }
            let receiver = common::Receiver::start().await;
            match client
                .post(format!("{base}/app/{app}/endpoint"))
                .bearer_auth(&token)
                .json(&json!({"url": receiver.url(), "verify": true}))
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => {
                    let ep: Value = r.json().await.unwrap_or_default();
                    if let Some(id) = ep["id"].as_str() {
                        made.push(Churned {
                            app,
                            id: id.to_string(),
                            receiver,
                        });
                    }
                    true
                }
                _ => false,
            }
        } else {
            let i = rng.gen_range(0..made.len());
            let (app, id) = (made[i].app.clone(), made[i].id.clone());
            let request = match roll {
                3..=5 => {
                    let code = made[i]
                        .receiver
                        .received()
                        .iter()
                        .find_map(|r| r.json()["verificationCode"].as_str().map(String::from));
                    let Some(code) = code else { continue };
                    client
                        .post(format!("{base}/app/{app}/endpoint/{id}/verify"))
                        .json(&json!({"code": code}))
                }
                6 | 7 => client
                    .patch(format!("{base}/app/{app}/endpoint/{id}"))
                    .json(&json!({"disabled": rng.gen_bool(0.5)})),
                8 => {
                    made.swap_remove(i);
                    client.delete(format!("{base}/app/{app}/endpoint/{id}"))
                }
                _ if app != "load" => {
                    made.retain(|c| c.app != app);
                    client.delete(format!("{base}/app/{app}"))
                }
                _ => continue,
            };
            matches!(request.bearer_auth(&token).send().await, Ok(r) if r.status().is_success())
        };
        changes += u64::from(ok);
        tokio::time::sleep(Duration::from_millis(rng.gen_range(5..40))).await;
    }
    changes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_while_endpoints_change_loses_nothing_and_strands_nothing() {
    let started = Instant::now();
    let seed: u64 = std::env::var("HERALD_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().r#gen());
    println!("fault seed {seed} (rerun with HERALD_FAULT_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.redb");
    let log = dir.path().join("herald.log");
    let out = Command::new(BIN)
        .args(["token", "create", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let receiver = FlakyReceiver::start(seed).await;
    receiver.set_mode(Mode::Reliable);
    let port = free_port();
    let mut herald = Herald::start(&db, port, &log, ATTEMPT_TIMEOUT_MS);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    wait_healthy(&client, port).await;
    let base = herald.base();
    let post = |path: &str, body: Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let r = post(
        "/event-type",
        json!({"name": "load.tick", "description": ""}),
    )
    .await
    .unwrap();
    assert!(r.status().is_success());
    let r = post("/app", json!({"name": "Load", "uid": "load"}))
        .await
        .unwrap();
    assert!(r.status().is_success());
    // The endpoint that stays: every acknowledged message is owed to it.
    let r = post("/app/load/endpoint", json!({"url": receiver.url("keep")}))
        .await
        .unwrap();
    assert!(r.status().is_success());

    let acked: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (acked, next, stop) = (acked.clone(), next.clone(), stop.clone());
        let (base, token) = (base.clone(), token.clone());
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            while !stop.load(Ordering::SeqCst) {
                let seq = next.fetch_add(1, Ordering::SeqCst);
                let r = client
                    .post(format!("{base}/app/load/msg"))
                    .bearer_auth(&token)
                    .json(&json!({"eventType": "load.tick", "payload": {"seq": seq}}))
                    .send()
                    .await;
                if matches!(&r, Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED) {
                    acked.lock().unwrap().insert(seq);
                    tokio::time::sleep(CLIENT_PAUSE).await;
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    let churner = tokio::spawn(churn(base.clone(), token.clone(), seed, stop.clone()));

    let mut stranded_seen = (0, 0);
    for kill in 1..=CHURN_KILLS {
        let wait = Duration::from_millis(rng.gen_range(100..1_200));
        tokio::time::sleep(wait).await; // a random moment under churn, not a wait for a state
        herald.kill9();
        let (report, _) = check(&db);
        let strays = to_mend(&report);
        stranded_seen = (stranded_seen.0 + strays.0, stranded_seen.1 + strays.1);
        println!("kill {kill:>2} after {wait:>6.0?}: check ok, to mend {strays:?}");
        herald = Herald::start(&db, port, &log, ATTEMPT_TIMEOUT_MS);
        wait_healthy(&client, port).await;
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let changes = churner.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    println!(
        "{} acknowledged, {changes} endpoint changes made; to mend seen at the kills: {stranded_seen:?}",
        acked.len()
    );
    assert!(
        changes >= 20,
        "too little churn to prove anything: {changes}"
    );

    // Nothing acknowledged is lost.
    eventually(DRAIN_WITHIN, || async {
        let delivered = receiver.delivered(0).0;
        acked
            .iter()
            .all(|s| delivered.contains(&("keep".to_string(), *s)))
    })
    .await;
    // A start with nothing changing after it: its repair pass leaves nothing to mend.
    herald.terminate();
    let mut herald = Herald::start(&db, port, &log, ATTEMPT_TIMEOUT_MS);
    wait_healthy(&client, port).await;
    eventually(DRAIN_WITHIN, || async {
        let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
        else {
            return false;
        };
        r.text()
            .await
            .is_ok_and(|t| t.contains("herald_repair_passes_total 1"))
    })
    .await;
    herald.terminate();
    let (report, _) = check(&db);
    assert_eq!(to_mend(&report), (0, 0), "{report}");
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !log_text.contains("panicked"),
        "herald panicked:\n{log_text}"
    );
    println!("churn fault suite took {:.1?}", started.elapsed());
}
