//! `herald-bench`: measures Herald, or any Svix v1 compatible server, from the outside.
//!
//! It speaks only the public Svix v1 HTTP API to the server under test and runs its own webhook
//! receiver on 127.0.0.1 (it records each arrival's time and `webhook-id`, and answers 200).
//! Scenarios (issue 4):
//! - `burst`: N messages from C keep-alive connections: accepted messages/s (first create to
//!   last 202), end-to-end deliveries/s (first create to last unique arrival), missing and
//!   duplicate deliveries, database file bytes per delivered message.
//! - `rate`: an open loop at R messages/s for D seconds: create-to-receipt latency, matched by
//!   `webhook-id` (the message id the 202 answered).
//! - `backlog`: M deliveries left pending while the receiver refuses connections, then Herald
//!   restarted with the receiver back: peak RSS, first delivery after process start, drain
//!   rate, and a burst on the filled database compared with the empty one.
//! - `noisy`: noisy neighbours. 20 endpoints, one per application, share `--rate` messages/s
//!   for `--noisy-secs`: 15 answer at once, 2 hang (until Herald's request timeout), 2 answer
//!   500 and 1 answers 429 with `Retry-After`. Reports the healthy endpoints' create-to-receipt
//!   p50/p99 beside a clean run of the same 15 alone (same rate each), the attempts the bad
//!   receivers saw (and any made to the 429 one before its `Retry-After` had passed), and
//!   Herald's peak memory.
//!
//! `burst`, `rate` and `noisy` start their own Herald on a temporary database unless `--url` and
//! `--token` name a running server; `backlog` always starts its own (`--herald-bin`), because
//! it must stop and restart it.
//!
//! Owns: load generation, the receiver, timing and the report. Must never: read or write the
//! server's database (it only measures the file's size, and the `/proc` counters of a Herald it
//! started), send traffic off this machine, or loop without a bound in count and time.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use clap::{Parser, ValueEnum};
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio::task::JoinSet;

/// The same allocator as `herald` (Cargo.toml says why): the tool shares the CPU with the
/// server it measures, so its own cost matters.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The event type every benchmark message carries.
const EVENT_TYPE: &str = "bench.event";
/// The receiver's only route.
const HOOK_PATH: &str = "/hook";
/// How long a started Herald may take to answer its health check (a restart over a large
/// backlog included) before the run fails.
const STARTUP_MAX: Duration = Duration::from_secs(120);
/// How long a Herald may take to exit after SIGTERM before it is killed.
const STOP_GRACE_MAX: Duration = Duration::from_secs(60);
/// Polling period while waiting for arrivals, a health check or an exit.
const POLL: Duration = Duration::from_millis(2);
/// Waiting for deliveries ends when none arrived for this long: what is still out is missing.
/// Longer than the first retry of Svix's schedule (5 s), so one failed attempt is not "missing".
const ARRIVAL_IDLE_MAX: Duration = Duration::from_secs(30);
/// Requests of the open-loop scenario outstanding at once. When a server is slower than the
/// offered rate the schedule slips instead of memory growing; the slip is reported.
const RATE_OUTSTANDING_MAX: usize = 10_000;
/// Retry schedule of the backlog scenario: every retry one second later, many times, so a
/// delivery that was tried while the receiver refused is due again at once after the restart
/// and none exhausts its attempts during the build-up.
const BACKLOG_RETRY_DELAY_MS: u64 = 1_000;
const BACKLOG_RETRY_DELAYS: usize = 30;
/// Deliveries the first Herald of the backlog scenario may attempt at once while the backlog
/// builds. One, so the receiver being down costs a trickle of failed attempts rather than a
/// storm that would compete with ingest; the restarted Herald runs with the normal setting.
const BACKLOG_BUILD_IN_FLIGHT: usize = 1;
/// The noisy scenario's endpoints: healthy ones, then the bad ones (hanging, 500, 429).
const NOISY_HEALTHY: usize = 15;
const NOISY_HANGING: usize = 2;
const NOISY_FAILING: usize = 2;
const NOISY_LIMITED: usize = 1;
/// The `Retry-After` the noisy scenario's 429 receiver asks for, in seconds.
const NOISY_RETRY_AFTER_S: u64 = 5;
/// How long a hanging receiver holds a request: longer than any request timeout, so the
/// sender's timeout ends it.
const HANG_FOR: Duration = Duration::from_secs(120);
/// Period of the RSS sampling during the drain (VmHWM gives the exact peak; samples give the
/// RSS at the first delivery and at the end).
const RSS_SAMPLE: Duration = Duration::from_millis(50);
/// `/proc/<pid>/stat` counts CPU time in USER_HZ ticks, fixed at 100 by the Linux ABI.
const CLOCK_TICKS_PER_S: f64 = 100.0;
/// Bounds on the load the command line may ask for.
const CONNECTIONS_MAX: usize = 4_096;
const MESSAGES_MAX: usize = 50_000_000;
/// Smallest payload: the numbered head and the tail of the JSON object take 53 bytes.
const PAYLOAD_BYTES_MIN: usize = 64;
const RUNS_MAX: usize = 20;
const THREADS_MAX: usize = 64;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "herald-bench",
    about = "Benchmarks Herald (or any Svix v1 compatible server) through its HTTP API"
)]
struct Args {
    /// Scenarios to run, comma-separated, in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "burst,rate,backlog"
    )]
    scenario: Vec<Scenario>,
    /// A running server for `burst` and `rate` (e.g. http://127.0.0.1:8080); default: start
    /// `--herald-bin` on a temporary database for each run.
    #[arg(long, requires = "token")]
    url: Option<String>,
    /// Bearer token for `--url`.
    #[arg(long, requires = "url")]
    token: Option<String>,
    /// The Herald binary to start. HERALD_* variables of this environment reach it.
    #[arg(long, default_value = "target/release/herald")]
    herald_bin: PathBuf,
    /// burst: messages to create.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// burst and backlog: concurrent keep-alive connections creating messages.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Size of each message payload (a JSON object), in bytes.
    #[arg(long, default_value_t = 170)]
    payload_bytes: usize,
    /// rate: messages per second offered.
    #[arg(long, default_value_t = 1_000)]
    rate: u32,
    /// rate: how long to offer them, in seconds.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// noisy: how long each of its two runs (clean, then noisy) offers messages, in seconds.
    #[arg(long, default_value_t = 30)]
    noisy_secs: u64,
    /// noisy: also print, per second of each run, the healthy deliveries' create and
    /// create-to-receipt p99 and max (on stderr), to see when a slow tail happens.
    #[arg(long)]
    timeline: bool,
    /// backlog: pending deliveries to build up before the restart.
    #[arg(long, default_value_t = 1_000_000)]
    backlog_messages: usize,
    /// Longest time one scenario run may take, in seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
    /// Runs of each scenario; the table shows every run and the median.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Where temporary databases and Herald logs go (default: the system temp directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the temporary databases and logs.
    #[arg(long)]
    keep: bool,
    /// A PostgreSQL server (e.g. postgres://postgres@127.0.0.1:5432): each burst or rate run's
    /// Herald gets a fresh database on it, made and dropped by this tool. Default: a redb file
    /// in the run's directory.
    #[arg(long)]
    postgres: Option<String>,
    /// burst and rate with --postgres: Herald nodes started on the run's database; the load's
    /// connections are spread over them, round robin.
    #[arg(long, default_value_t = 1, requires = "postgres")]
    nodes: usize,
    /// Before each run: flush the page cache's dirty pages (`sync`) and wait this long, so a
    /// run does not measure the write-back and discards of the run before it (the second of two
    /// identical back-to-back bursts measured 5-12 % slower without it).
    #[arg(long, default_value_t = 1_000)]
    settle_ms: u64,
    /// Send an `idempotency-key` with every create, as the official Svix SDKs do with every POST
    /// (`auto_` and a random id) unless the caller passes one.
    #[arg(long)]
    idempotency_keys: bool,
    /// Threads of this tool (client and receiver). One by default: on a small machine every
    /// thread of the tool takes CPU from the server under test, and one suffices for the
    /// default load.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Burst,
    Rate,
    Backlog,
    Noisy,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Burst => "burst",
            Scenario::Rate => "rate",
            Scenario::Backlog => "backlog",
            Scenario::Noisy => "noisy",
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    check_args(&args)?;
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(run(args))
}

fn check_args(args: &Args) -> anyhow::Result<()> {
    if !(1..=CONNECTIONS_MAX).contains(&args.connections) {
        bail!("--connections must be 1..={CONNECTIONS_MAX}");
    }
    for (name, n) in [
        ("--messages", args.messages),
        ("--backlog-messages", args.backlog_messages),
    ] {
        if !(1..=MESSAGES_MAX).contains(&n) {
            bail!("{name} must be 1..={MESSAGES_MAX}");
        }
    }
    if args.payload_bytes < PAYLOAD_BYTES_MIN {
        bail!("--payload-bytes must be at least {PAYLOAD_BYTES_MIN}");
    }
    if args.rate == 0 || args.duration_secs == 0 || args.noisy_secs == 0 {
        bail!("--rate, --duration-secs and --noisy-secs must be at least 1");
    }
    if (args.rate as u64).saturating_mul(args.noisy_secs) > MESSAGES_MAX as u64 {
        bail!("--rate x --noisy-secs must be at most {MESSAGES_MAX}");
    }
    if (args.rate as u64).saturating_mul(args.duration_secs) > MESSAGES_MAX as u64 {
        bail!("--rate x --duration-secs must be at most {MESSAGES_MAX}");
    }
    if !(1..=THREADS_MAX).contains(&args.threads) {
        bail!("--threads must be 1..={THREADS_MAX}");
    }
    if !(1..=RUNS_MAX).contains(&args.runs) {
        bail!("--runs must be 1..={RUNS_MAX}");
    }
    if let Some(url) = &args.url {
        let parsed = url::Url::parse(url).context("--url")?;
        let loopback = match parsed.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        if !loopback {
            // The receiver listens on 127.0.0.1, so the server must run on this machine anyway.
            bail!("--url must be a loopback address: all traffic stays on this machine");
        }
    }
    Ok(())
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut results: Vec<(Scenario, Vec<Vec<Metric>>)> =
        args.scenario.iter().map(|s| (*s, Vec::new())).collect();
    for run in 1..=args.runs {
        for (scenario, runs) in results.iter_mut() {
            eprintln!("herald-bench: {} run {run}/{}", scenario.name(), args.runs);
            settle(args.settle_ms).await;
            let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
            let metrics = match scenario {
                Scenario::Burst => burst(&args, run, deadline).await,
                Scenario::Rate => rate(&args, run, deadline).await,
                Scenario::Backlog => backlog(&args, run, deadline).await,
                Scenario::Noisy => noisy(&args, run, deadline).await,
            }
            .with_context(|| format!("{} run {run}", scenario.name()))?;
            runs.push(metrics);
        }
    }
    add_ratios(&mut results);
    let machine = Machine::read();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report_json(&args, &machine, &results))?
        );
    } else {
        print!("{}", report_table(&args, &machine, &results));
    }
    Ok(())
}

/// Lets the disk catch up with what earlier runs wrote and deleted before the next one starts.
async fn settle(ms: u64) {
    if ms == 0 {
        return;
    }
    // `sync` waits for the write-back (blocking is fine: nothing else runs between runs);
    // without the command the pause alone remains.
    let _ = std::process::Command::new("sync").status();
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

// ---- scenarios --------------------------------------------------------------------------------

/// The server a burst or rate run talks to: one it started (stopped at the end), or `--url`.
struct Target {
    api: Api,
    herald: Option<HeraldProcess>,
    /// Nodes after the first (`--nodes`), stopped with it.
    others: Vec<HeraldProcess>,
    /// The run's PostgreSQL database (`--postgres`), dropped after the nodes stop.
    _pg: Option<BenchDb>,
    _dir: Option<WorkDir>,
}

async fn target(args: &Args, label: &str, deadline: Instant) -> anyhow::Result<Target> {
    match (&args.url, &args.token) {
        (Some(url), Some(token)) => Ok(Target {
            api: Api::new(url, token, args)?,
            herald: None,
            others: Vec::new(),
            _pg: None,
            _dir: None,
        }),
        _ => {
            let dir = WorkDir::create(args, label)?;
            let pg = match &args.postgres {
                Some(server) => Some(BenchDb::create(server, label).await?),
                None => None,
            };
            let db = match &pg {
                Some(pg) => PathBuf::from(&pg.url),
                None => dir.path.join("herald.redb"),
            };
            let herald = HeraldProcess::start_on(args, &dir.path, &db, 0, &[], deadline).await?;
            let mut others = Vec::new();
            for node in 1..args.nodes.max(1) {
                let mut other =
                    HeraldProcess::start_on(args, &dir.path, &db, node, &[], deadline).await?;
                other.token = herald.token.clone();
                others.push(other);
            }
            let mut api = Api::new(&herald.base, &herald.token, args)?;
            for other in &others {
                api.spread_to(&other.base)?;
            }
            Ok(Target {
                api,
                herald: Some(herald),
                others,
                _pg: pg,
                _dir: Some(dir),
            })
        }
    }
}

async fn burst(args: &Args, run: usize, deadline: Instant) -> anyhow::Result<Vec<Metric>> {
    let target = target(args, &format!("burst-{run}"), deadline).await?;
    let receiver = Receiver::start(Receiver::reserve()?)?;
    let app = target
        .api
        .setup(&format!("herald-bench burst {run}"), &receiver.url())
        .await?;
    let cpu = CpuMeter::start(target.herald.as_ref().map(|h| h.child.id()));
    let load = Load {
        count: args.messages,
        connections: args.connections,
        payload_bytes: args.payload_bytes,
    };
    let posted = post_closed_loop(&target.api, &app, &load, deadline).await;
    receiver
        .state
        .await_arrivals(posted.sent.len(), deadline)
        .await;
    let cpu = cpu.finish(posted.sent.len());
    let matched = receiver.state.match_sent(&posted.sent);
    posted.warn("burst");

    let mut m = Vec::new();
    push_burst_metrics(&mut m, "", &posted, &matched, &cpu);
    // The file is measured after a graceful stop, so every attempt is committed in it.
    for other in target.others {
        other.stop().await?;
    }
    let db_bytes = match target.herald {
        Some(herald) if args.postgres.is_none() => {
            let db = herald.db.clone();
            herald.stop().await?;
            std::fs::metadata(&db).ok().map(|md| md.len())
        }
        Some(herald) => {
            herald.stop().await?;
            None
        }
        None => None,
    };
    m.push(
        Metric::new(
            "db_bytes_per_msg",
            "database file per delivered message",
            "B",
            db_bytes
                .filter(|_| matched.delivered > 0)
                .map(|b| b as f64 / matched.delivered as f64),
        )
        .target(Goal::AtMost(1024.0)),
    );
    receiver.stop();
    Ok(m)
}

/// The metrics of one closed-loop burst; `prefix` names a variant (the filled-database burst).
fn push_burst_metrics(
    m: &mut Vec<Metric>,
    prefix: &'static str,
    p: &Posted,
    r: &Matched,
    cpu: &CpuUse,
) {
    let filled = !prefix.is_empty();
    let key = |k: &str| format!("{prefix}{k}");
    let label = |l: &str| {
        if filled {
            format!("filled db: {l}")
        } else {
            l.to_string()
        }
    };
    let accepted_rate = match (p.first_start, p.last_ack()) {
        (Some(a), Some(b)) => rate_per_s(p.sent.len(), b - a),
        _ => None,
    };
    let e2e_rate = match (p.first_start, r.last_arrival) {
        (Some(a), Some(b)) if b > a => rate_per_s(r.delivered, b - a),
        _ => None,
    };
    let mut accepted = Metric::new(
        &key("accepted_per_s"),
        &label("accepted (first create to last 202)"),
        "msg/s",
        accepted_rate,
    );
    let mut e2e = Metric::new(
        &key("delivered_per_s"),
        &label("end-to-end (first create to last arrival)"),
        "msg/s",
        e2e_rate,
    );
    if !filled {
        accepted = accepted.target(Goal::AtLeast(20_000.0));
        e2e = e2e.target(Goal::AtLeast(12_000.0));
    }
    m.push(Metric::count(
        &key("accepted"),
        &label("messages accepted"),
        p.sent.len(),
    ));
    m.push(
        Metric::count(&key("failed"), &label("creates failed"), p.failed).target(Goal::AtMost(0.0)),
    );
    m.push(accepted);
    m.push(e2e);
    m.push(
        Metric::count(&key("missing"), &label("missing deliveries"), r.missing)
            .target(Goal::AtMost(0.0)),
    );
    m.push(Metric::count(
        &key("duplicates"),
        &label("duplicate deliveries"),
        r.duplicates,
    ));
    let acks: Vec<Duration> = p.sent.iter().map(|s| s.acked - s.started).collect();
    let acks = Percentiles::of(acks);
    m.push(Metric::new(
        &key("create_p50_ms"),
        &label("create (202) latency p50"),
        "ms",
        acks.ms(0.50),
    ));
    m.push(Metric::new(
        &key("create_p99_ms"),
        &label("create (202) latency p99"),
        "ms",
        acks.ms(0.99),
    ));
    m.push(Metric::new(
        &key("herald_cpu_us_per_msg"),
        &label("Herald CPU per message"),
        "µs",
        cpu.herald_us_per_msg,
    ));
    m.push(Metric::new(
        &key("bench_cpu_us_per_msg"),
        &label("bench CPU per message (client+receiver)"),
        "µs",
        cpu.bench_us_per_msg,
    ));
    // A VM's speed drifts by a third between runs, and the two CPU figures above move together
    // with it (the tool does the same work per message whatever server it drives), so their
    // ratio is the figure to compare builds by across sessions. Not across kinds of machine:
    // it was ~2.95 on an AMD EPYC VM and ~3.8 on an Intel Xeon VM for the same build.
    m.push(Metric::new(
        &key("herald_cpu_per_bench_cpu"),
        &label("Herald CPU / bench CPU (same machine kind)"),
        "x",
        cpu.herald_us_per_msg
            .zip(cpu.bench_us_per_msg)
            .filter(|(_, b)| *b > 0.0)
            .map(|(h, b)| h / b),
    ));
    m.push(Metric::new(
        &key("other_cpu_cores"),
        &label("CPU used by others (kernel, other processes)"),
        "cores",
        cpu.other_cores,
    ));
}

async fn rate(args: &Args, run: usize, deadline: Instant) -> anyhow::Result<Vec<Metric>> {
    let target = target(args, &format!("rate-{run}"), deadline).await?;
    let receiver = Receiver::start(Receiver::reserve()?)?;
    let app = target
        .api
        .setup(&format!("herald-bench rate {run}"), &receiver.url())
        .await?;
    let total = args.rate as usize * args.duration_secs as usize;
    let (posted, slip) = post_open_loop(
        &target.api,
        std::slice::from_ref(&app),
        args.rate,
        total,
        args.payload_bytes,
        deadline,
    )
    .await;
    receiver
        .state
        .await_arrivals(posted.sent.len(), deadline)
        .await;
    let matched = receiver.state.match_sent(&posted.sent);
    posted.warn("rate");
    let offered_for = Duration::from_secs(args.duration_secs);
    let mut m = vec![
        Metric::count("offered", "messages offered", total),
        Metric::count("accepted", "messages accepted", posted.sent.len()),
        Metric::count("failed", "creates failed", posted.failed).target(Goal::AtMost(0.0)),
        Metric::new(
            "achieved_per_s",
            "achieved rate",
            "msg/s",
            rate_per_s(posted.sent.len(), offered_for),
        ),
        Metric::new(
            "schedule_slip_ms",
            "worst lag behind the schedule",
            "ms",
            Some(ms(slip)),
        ),
    ];
    let latency = Percentiles::of(matched.latencies.clone());
    for (key, label, q) in [
        ("latency_p50_ms", "create-to-receipt p50", 0.50),
        ("latency_p95_ms", "create-to-receipt p95", 0.95),
        ("latency_p99_ms", "create-to-receipt p99", 0.99),
        ("latency_max_ms", "create-to-receipt max", 1.0),
    ] {
        let mut metric = Metric::new(key, label, "ms", latency.ms(q));
        if key == "latency_p99_ms" {
            metric = metric.target(Goal::AtMost(5.0));
        }
        m.push(metric);
    }
    let acks = Percentiles::of(posted.sent.iter().map(|s| s.acked - s.started).collect());
    m.push(Metric::new(
        "create_p50_ms",
        "create (202) latency p50",
        "ms",
        acks.ms(0.50),
    ));
    m.push(Metric::new(
        "create_p99_ms",
        "create (202) latency p99",
        "ms",
        acks.ms(0.99),
    ));
    m.push(
        Metric::count("missing", "missing deliveries", matched.missing).target(Goal::AtMost(0.0)),
    );
    m.push(Metric::count(
        "duplicates",
        "duplicate deliveries",
        matched.duplicates,
    ));
    for other in target.others {
        other.stop().await?;
    }
    if let Some(herald) = target.herald {
        herald.stop().await?;
    }
    receiver.stop();
    Ok(m)
}

/// One run of the noisy scenario: the healthy endpoints alone (`with_bad` false) or with the
/// bad ones.
struct NoisyRun {
    accepted: usize,
    failed: usize,
    missing: usize,
    /// Create-to-receipt of every message to a healthy endpoint.
    healthy: Percentiles,
    /// Requests the hanging, failing (500) and rate-limited (429) receivers saw.
    hanging_attempts: usize,
    failing_attempts: usize,
    limited_attempts: usize,
    /// Requests to the 429 receiver less than its `Retry-After` after the one before.
    limited_early: usize,
    limited_min_gap: Option<Duration>,
    peak_rss_kb: Option<u64>,
}

async fn noisy_run(
    args: &Args,
    label: &str,
    with_bad: bool,
    deadline: Instant,
) -> anyhow::Result<NoisyRun> {
    let target = target(args, label, deadline).await?;
    let mut kinds = vec![Answer::Ok; NOISY_HEALTHY];
    if with_bad {
        kinds.extend([Answer::Hang; NOISY_HANGING]);
        kinds.extend([Answer::Status(500); NOISY_FAILING]);
        kinds.extend([Answer::TooMany(NOISY_RETRY_AFTER_S); NOISY_LIMITED]);
    }
    let all = NOISY_HEALTHY + NOISY_HANGING + NOISY_FAILING + NOISY_LIMITED;
    // Every endpoint gets the same share of `--rate` in both runs.
    let per_endpoint = (args.rate as f64 / all as f64).max(1.0 / kinds.len() as f64);
    let mut receivers = Vec::new();
    let mut apps = Vec::new();
    for (i, kind) in kinds.iter().enumerate() {
        let receiver = Receiver::start_answering(Receiver::reserve()?, *kind)?;
        apps.push(
            target
                .api
                .setup(
                    &format!("herald-bench {label} {i} {kind:?}"),
                    &receiver.url(),
                )
                .await?,
        );
        receivers.push(receiver);
    }
    let rate = (per_endpoint * kinds.len() as f64).round().max(1.0) as u32;
    let total = rate as usize * args.noisy_secs as usize;
    let (posted, _slip) = post_open_loop(
        &target.api,
        &apps,
        rate,
        total,
        args.payload_bytes,
        deadline,
    )
    .await;
    posted.warn(label);
    let (accepted, failed) = (posted.sent.len(), posted.failed);
    let mut by_target: Vec<Vec<Sent>> = kinds.iter().map(|_| Vec::new()).collect();
    for sent in posted.sent {
        by_target[sent.target].push(sent);
    }
    let mut latencies = Vec::new();
    let mut missing = 0;
    for (receiver, sent) in receivers.iter().zip(&by_target).take(NOISY_HEALTHY) {
        receiver.state.await_arrivals(sent.len(), deadline).await;
        let matched = receiver.state.match_sent(sent);
        missing += matched.missing;
        latencies.extend(matched.latencies);
    }
    if args.timeline {
        print_timeline(
            label,
            &receivers[..NOISY_HEALTHY],
            &by_target[..NOISY_HEALTHY],
        );
    }
    let peak_rss_kb = target
        .herald
        .as_ref()
        .and_then(|h| h.memory())
        .map(|m| m.hwm_kb);
    let requests = |range: std::ops::Range<usize>| -> usize {
        receivers[range.clone()]
            .iter()
            .map(|r| r.state.times.lock().expect("not poisoned").len())
            .sum()
    };
    let hanging = NOISY_HEALTHY..NOISY_HEALTHY + NOISY_HANGING;
    let (mut limited_early, mut limited_min_gap) = (0, None);
    let (hanging_attempts, failing_attempts, limited_attempts) = if with_bad {
        let failing = hanging.end..hanging.end + NOISY_FAILING;
        let limited = failing.end..failing.end + NOISY_LIMITED;
        let retry_after = Duration::from_secs(NOISY_RETRY_AFTER_S);
        for r in &receivers[limited.clone()] {
            let times = r.state.times.lock().expect("not poisoned");
            for pair in times.windows(2) {
                let gap = pair[1] - pair[0];
                limited_min_gap = Some(limited_min_gap.map_or(gap, |g: Duration| g.min(gap)));
                if gap < retry_after {
                    limited_early += 1;
                }
            }
        }
        (requests(hanging), requests(failing), requests(limited))
    } else {
        (0, 0, 0)
    };
    for other in target.others {
        other.stop().await?;
    }
    if let Some(herald) = target.herald {
        herald.stop().await?;
    }
    for r in receivers {
        r.stop();
    }
    Ok(NoisyRun {
        accepted,
        failed,
        missing,
        healthy: Percentiles::of(latencies),
        hanging_attempts,
        failing_attempts,
        limited_attempts,
        limited_early,
        limited_min_gap,
        peak_rss_kb,
    })
}

/// Per second of a run (by create time): the healthy deliveries' create time and
/// create-to-receipt, p99 and max, in milliseconds.
fn print_timeline(label: &str, receivers: &[Receiver], sent: &[Vec<Sent>]) {
    let Some(start) = sent.iter().flatten().map(|s| s.started).min() else {
        return;
    };
    let mut seconds: Vec<(Vec<Duration>, Vec<Duration>)> = Vec::new();
    for (receiver, sent) in receivers.iter().zip(sent) {
        let map = receiver.state.by_id.lock().expect("not poisoned");
        for s in sent {
            let second = s.started.duration_since(start).as_secs() as usize;
            if seconds.len() <= second {
                seconds.resize_with(second + 1, Default::default);
            }
            seconds[second].0.push(s.acked.duration_since(s.started));
            if let Some(a) = map.get(&s.id) {
                seconds[second]
                    .1
                    .push(a.first.saturating_duration_since(s.started));
            }
        }
    }
    eprintln!("{label}: second  n  create p99/max ms  receipt p99/max ms");
    for (i, (create, receipt)) in seconds.into_iter().enumerate() {
        let (n, c, r) = (
            create.len(),
            Percentiles::of(create),
            Percentiles::of(receipt),
        );
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        eprintln!(
            "{label}: {i:>3} {n:>5}  {:>7}/{:<7}  {:>7}/{:<7}",
            f(c.ms(0.99)),
            f(c.ms(1.0)),
            f(r.ms(0.99)),
            f(r.ms(1.0))
        );
    }
}

/// Noisy neighbours: the healthy endpoints' latency alone and beside bad ones.
async fn noisy(args: &Args, run: usize, deadline: Instant) -> anyhow::Result<Vec<Metric>> {
    let clean = noisy_run(args, &format!("noisy-{run}-clean"), false, deadline).await?;
    settle(args.settle_ms).await;
    let noisy = noisy_run(args, &format!("noisy-{run}-noisy"), true, deadline).await?;
    let ratio = match (noisy.healthy.ms(0.99), clean.healthy.ms(0.99)) {
        (Some(n), Some(c)) if c > 0.0 => Some(n / c),
        _ => None,
    };
    Ok(vec![
        Metric::count("clean_accepted", "clean: messages accepted", clean.accepted),
        Metric::new(
            "clean_p50_ms",
            "clean: healthy create-to-receipt p50",
            "ms",
            clean.healthy.ms(0.50),
        ),
        Metric::new(
            "clean_p99_ms",
            "clean: healthy create-to-receipt p99",
            "ms",
            clean.healthy.ms(0.99),
        ),
        Metric::count("noisy_accepted", "noisy: messages accepted", noisy.accepted),
        Metric::count(
            "failed",
            "creates failed (both runs)",
            clean.failed + noisy.failed,
        )
        .target(Goal::AtMost(0.0)),
        Metric::new(
            "noisy_p50_ms",
            "noisy: healthy create-to-receipt p50",
            "ms",
            noisy.healthy.ms(0.50),
        ),
        Metric::new(
            "noisy_p99_ms",
            "noisy: healthy create-to-receipt p99",
            "ms",
            noisy.healthy.ms(0.99),
        )
        .target(Goal::AtMost(10.0)),
        Metric::new(
            "noisy_max_ms",
            "noisy: healthy create-to-receipt max",
            "ms",
            noisy.healthy.ms(1.0),
        ),
        Metric::new("p99_ratio", "noisy p99 / clean p99", "x", ratio).target(Goal::AtMost(2.0)),
        Metric::count(
            "missing",
            "healthy deliveries missing (both runs)",
            clean.missing + noisy.missing,
        )
        .target(Goal::AtMost(0.0)),
        Metric::count(
            "hanging_attempts",
            "attempts to the 2 hanging endpoints",
            noisy.hanging_attempts,
        ),
        Metric::count(
            "failing_attempts",
            "attempts to the 2 endpoints answering 500",
            noisy.failing_attempts,
        ),
        Metric::count(
            "limited_attempts",
            "attempts to the endpoint answering 429",
            noisy.limited_attempts,
        ),
        Metric::count(
            "limited_early",
            "429 endpoint attempted before its Retry-After",
            noisy.limited_early,
        )
        .target(Goal::AtMost(0.0)),
        Metric::new(
            "limited_min_gap_ms",
            "429 endpoint: shortest gap between attempts",
            "ms",
            noisy.limited_min_gap.map(ms),
        ),
        Metric::new(
            "clean_peak_rss_mib",
            "clean: Herald peak RSS",
            "MiB",
            clean.peak_rss_kb.map(|kb| kb as f64 / 1024.0),
        ),
        Metric::new(
            "noisy_peak_rss_mib",
            "noisy: Herald peak RSS",
            "MiB",
            noisy.peak_rss_kb.map(|kb| kb as f64 / 1024.0),
        ),
    ])
}

/// Builds a backlog of pending deliveries while the receiver refuses connections, restarts
/// Herald with the receiver back, and measures the restart and the drain.
///
/// How the backlog is made pending, honestly: the endpoint points at a port that is bound but
/// not listening, so every attempt fails at once with "connection refused". The first Herald
/// runs with one delivery in flight (`BACKLOG_BUILD_IN_FLIGHT`) and a retry schedule of many
/// one-second delays, so the few deliveries it does try are rescheduled a second later, and
/// the rest keep their first due time. It is then stopped (SIGTERM, a graceful stop), the
/// receiver starts listening on that same port, and Herald is started again with the normal
/// number of deliveries in flight: every delivery of the backlog is due at that moment.
async fn backlog(args: &Args, run: usize, deadline: Instant) -> anyhow::Result<Vec<Metric>> {
    let dir = WorkDir::create(args, &format!("backlog-{run}"))?;
    let schedule = format!(
        "[{}]",
        vec![BACKLOG_RETRY_DELAY_MS.to_string(); BACKLOG_RETRY_DELAYS].join(",")
    );
    let retry_env = ("HERALD_RETRY_SCHEDULE_MS".to_string(), schedule);
    let build_env = [
        retry_env.clone(),
        (
            "HERALD_DELIVERIES_IN_FLIGHT_MAX".to_string(),
            BACKLOG_BUILD_IN_FLIGHT.to_string(),
        ),
        // The refusing receiver must not pause the endpoint: a pause would move the backlog's
        // due times past the restart, and the drain would measure the pause.
        (
            "HERALD_ENDPOINT_FAILURES_TO_PAUSE".to_string(),
            "0".to_string(),
        ),
    ];
    let socket = Receiver::reserve()?;
    let hook_url = format!("http://{}{HOOK_PATH}", socket.local_addr()?);

    // 1. Build the backlog: the receiver's port refuses connections.
    let first = HeraldProcess::start(args, &dir.path, &build_env, deadline).await?;
    let api = Api::new(&first.base, &first.token, args)?;
    let app = api
        .setup(&format!("herald-bench backlog {run}"), &hook_url)
        .await?;
    let load = Load {
        count: args.backlog_messages,
        connections: args.connections,
        payload_bytes: args.payload_bytes,
    };
    let built = post_closed_loop(&api, &app, &load, deadline).await;
    built.warn("backlog build");
    let build_rate = match (built.first_start, built.last_ack()) {
        (Some(a), Some(b)) => rate_per_s(built.sent.len(), b - a),
        _ => None,
    };
    let build_hwm = first.memory().map(|m| m.hwm_kb);
    let db = first.db.clone();
    first.stop().await?;
    let db_bytes = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);

    // 2. The receiver comes back, then Herald restarts over the backlog.
    let receiver = Receiver::start(socket)?;
    let second = HeraldProcess::start(args, &dir.path, &[retry_env], deadline).await?;
    let spawned = second.spawned;
    let ready_after = second.ready - spawned;
    let mut rss_peak_sampled_kb = 0u64;
    let drain_cpu = CpuMeter::start(Some(second.child.id()));
    {
        let sample = || {
            if let Some(mem) = second.memory() {
                rss_peak_sampled_kb = rss_peak_sampled_kb.max(mem.rss_kb);
            }
        };
        receiver
            .state
            .await_arrivals_sampling(built.sent.len(), deadline, RSS_SAMPLE, sample)
            .await;
    }
    let drain_cpu = drain_cpu.finish(built.sent.len());
    let drained = receiver.state.match_sent(&built.sent);
    let drain_hwm = second.memory().map(|m| m.hwm_kb);
    let first_arrival = receiver.state.first_arrival();
    let drain_rate = match (first_arrival, drained.last_arrival) {
        (Some(a), Some(b)) if b > a => rate_per_s(drained.delivered, b - a),
        _ => None,
    };

    // 3. The same burst as the burst scenario, on the filled database.
    receiver.state.clear();
    let api = Api::new(&second.base, &second.token, args)?;
    let load = Load {
        count: args.messages,
        connections: args.connections,
        payload_bytes: args.payload_bytes,
    };
    let cpu = CpuMeter::start(Some(second.child.id()));
    let after = post_closed_loop(&api, &app, &load, deadline).await;
    receiver
        .state
        .await_arrivals(after.sent.len(), deadline)
        .await;
    let cpu = cpu.finish(after.sent.len());
    let after_matched = receiver.state.match_sent(&after.sent);
    after.warn("filled-database burst");
    second.stop().await?;
    receiver.stop();

    let mb = |kb: Option<u64>| kb.map(|k| k as f64 / 1024.0);
    let mut m = vec![
        Metric::count("backlog", "pending deliveries built", built.sent.len()),
        Metric::count(
            "build_failed",
            "creates failed while building",
            built.failed,
        ),
        Metric::new("build_per_s", "build-up ingest", "msg/s", build_rate),
        Metric::new(
            "build_peak_rss_mb",
            "peak RSS while building",
            "MB",
            mb(build_hwm),
        ),
        Metric::new(
            "db_bytes_per_msg",
            "database file per pending message",
            "B",
            (!built.sent.is_empty()).then(|| db_bytes as f64 / built.sent.len() as f64),
        ),
        Metric::new(
            "ready_ms",
            "restart: process start to health OK",
            "ms",
            Some(ms(ready_after)),
        ),
        Metric::new(
            "first_delivery_ms",
            "restart: process start to first delivery",
            "ms",
            first_arrival.map(|a| ms(a - spawned)),
        )
        .target(Goal::AtMost(2_000.0)),
        Metric::new(
            "peak_rss_mb",
            "restart: peak RSS during the drain (VmHWM)",
            "MB",
            mb(drain_hwm),
        )
        .target(Goal::AtMost(100.0)),
        Metric::new(
            "sampled_rss_mb",
            "restart: highest sampled RSS",
            "MB",
            mb(Some(rss_peak_sampled_kb)),
        ),
        Metric::new(
            "drain_per_s",
            "drain rate (first to last arrival)",
            "msg/s",
            drain_rate,
        ),
        Metric::new(
            "drain_s",
            "drain: process start to last arrival",
            "s",
            drained.last_arrival.map(|l| (l - spawned).as_secs_f64()),
        ),
        Metric::count(
            "drain_missing",
            "drain: missing deliveries",
            drained.missing,
        )
        .target(Goal::AtMost(0.0)),
        Metric::new(
            "drain_herald_cpu_us_per_msg",
            "drain: Herald CPU per delivery",
            "µs",
            drain_cpu.herald_us_per_msg,
        ),
        Metric::new(
            "drain_other_cpu_cores",
            "drain: CPU used by others",
            "cores",
            drain_cpu.other_cores,
        ),
        Metric::count(
            "drain_duplicates",
            "drain: duplicate deliveries",
            drained.duplicates,
        ),
    ];
    push_burst_metrics(&mut m, "filled_", &after, &after_matched, &cpu);
    Ok(m)
}

/// Metrics that compare scenarios of the same run: drain against burst, filled database
/// against empty.
fn add_ratios(results: &mut [(Scenario, Vec<Vec<Metric>>)]) {
    let burst: Vec<Option<f64>> = results
        .iter()
        .find(|(s, _)| *s == Scenario::Burst)
        .map(|(_, runs)| runs.iter().map(|m| value(m, "delivered_per_s")).collect())
        .unwrap_or_default();
    let Some((_, runs)) = results.iter_mut().find(|(s, _)| *s == Scenario::Backlog) else {
        return;
    };
    for (i, m) in runs.iter_mut().enumerate() {
        let base = burst.get(i).copied().flatten();
        let ratio = |v: Option<f64>| match (v, base) {
            (Some(v), Some(b)) if b > 0.0 => Some(v / b),
            _ => None,
        };
        let drain = ratio(value(m, "drain_per_s"));
        let filled = ratio(value(m, "filled_delivered_per_s"));
        m.push(
            Metric::new(
                "drain_vs_burst",
                "drain rate / burst end-to-end rate",
                "x",
                drain,
            )
            .target(Goal::AtLeast(0.5)),
        );
        m.push(
            Metric::new(
                "filled_vs_empty",
                "filled db end-to-end / empty db end-to-end",
                "x",
                filled,
            )
            .target(Goal::AtLeast(0.9)),
        );
    }
}

fn value(metrics: &[Metric], key: &str) -> Option<f64> {
    metrics.iter().find(|m| m.key == key).and_then(|m| m.value)
}

// ---- load generation --------------------------------------------------------------------------

/// One message the server accepted: its id and when its create began and was answered.
struct Sent {
    id: String,
    started: Instant,
    acked: Instant,
    /// Which of the applications the loop sent to (0 with one).
    target: usize,
}

/// What a load loop got back.
#[derive(Default)]
struct Posted {
    sent: Vec<Sent>,
    failed: usize,
    first_error: Option<String>,
    /// When the earliest create began, accepted or not.
    first_start: Option<Instant>,
    /// The loop stopped at the deadline before it had sent everything.
    timed_out: bool,
}

impl Posted {
    fn note_start(&mut self, at: Instant) {
        self.first_start = Some(self.first_start.map_or(at, |f| f.min(at)));
    }

    fn merge(&mut self, other: Posted) {
        self.sent.extend(other.sent);
        self.failed += other.failed;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        if let Some(at) = other.first_start {
            self.note_start(at);
        }
        self.timed_out |= other.timed_out;
    }

    fn last_ack(&self) -> Option<Instant> {
        self.sent.iter().map(|s| s.acked).max()
    }

    fn warn(&self, what: &str) {
        if let Some(e) = &self.first_error {
            eprintln!(
                "herald-bench: {what}: {} creates failed; first: {e}",
                self.failed
            );
        }
        if self.timed_out {
            eprintln!("herald-bench: {what}: stopped at the timeout before all were sent");
        }
    }
}

struct Load {
    count: usize,
    connections: usize,
    payload_bytes: usize,
}

/// `count` creates from `connections` tasks, each sending its next request when the previous
/// one was answered (so each keeps one keep-alive connection busy).
async fn post_closed_loop(api: &Api, app: &str, load: &Load, deadline: Instant) -> Posted {
    let next = Arc::new(AtomicUsize::new(0));
    let url = Arc::new(api.message_url(app));
    let app_path = Arc::new(api.message_path(app));
    let mut tasks = JoinSet::new();
    for _ in 0..load.connections.min(load.count) {
        let (api, next, url) = (api.clone(), next.clone(), url.clone());
        let app_path = app_path.clone();
        let (count, payload_bytes) = (load.count, load.payload_bytes);
        tasks.spawn(async move {
            let mut out = Posted::default();
            let mut conn = match api.connect().await {
                Ok(conn) => conn,
                Err(e) => {
                    out.first_error = Some(e);
                    return out;
                }
            };
            loop {
                let seq = next.fetch_add(1, Relaxed);
                if seq >= count {
                    break;
                }
                if Instant::now() >= deadline {
                    out.timed_out = true;
                    break;
                }
                let body = message_body(seq, payload_bytes);
                let started = Instant::now();
                out.note_start(started);
                let answer = match &mut conn {
                    Some(conn) => conn.send_message(&api, &app_path, body).await,
                    None => api.send_message(&url, body).await,
                };
                match answer {
                    Ok(id) => out.sent.push(Sent {
                        target: 0,
                        id,
                        started,
                        acked: Instant::now(),
                    }),
                    Err(e) => {
                        out.failed += 1;
                        out.first_error.get_or_insert(e);
                    }
                }
            }
            out
        });
    }
    let mut posted = Posted::default();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(part) => posted.merge(part),
            Err(e) => {
                posted
                    .first_error
                    .get_or_insert(format!("load task failed: {e}"));
            }
        }
    }
    posted
}

/// `total` creates at `rate` per second, each sent at its scheduled time whether or not the
/// earlier ones were answered (an open loop). Answers what happened and the worst slip behind
/// the schedule.
async fn post_open_loop(
    api: &Api,
    apps: &[String],
    rate: u32,
    total: usize,
    payload_bytes: usize,
    deadline: Instant,
) -> (Posted, Duration) {
    let urls: Vec<Arc<String>> = apps.iter().map(|a| Arc::new(api.message_url(a))).collect();
    let outstanding = Arc::new(tokio::sync::Semaphore::new(RATE_OUTSTANDING_MAX));
    let mut tasks: JoinSet<(Instant, Result<Sent, String>)> = JoinSet::new();
    let mut posted = Posted::default();
    let mut slip = Duration::ZERO;
    let begin = Instant::now();
    let collect = |posted: &mut Posted, (started, result): (Instant, Result<Sent, String>)| {
        posted.note_start(started);
        match result {
            Ok(sent) => posted.sent.push(sent),
            Err(e) => {
                posted.failed += 1;
                posted.first_error.get_or_insert(e);
            }
        }
    };
    for seq in 0..total {
        let due = begin + Duration::from_secs_f64(seq as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        if Instant::now() >= deadline {
            posted.timed_out = true;
            break;
        }
        let Ok(permit) = outstanding.clone().acquire_owned().await else {
            break;
        };
        slip = slip.max(Instant::now().saturating_duration_since(due));
        // Round robin over the applications.
        let target = seq % urls.len();
        let (api, url) = (api.clone(), urls[target].clone());
        tasks.spawn(async move {
            let body = message_body(seq, payload_bytes);
            let started = Instant::now();
            let result = api.send_message(&url, body).await.map(|id| Sent {
                id,
                started,
                acked: Instant::now(),
                target,
            });
            drop(permit);
            (started, result)
        });
        while let Some(done) = tasks.try_join_next() {
            if let Ok(done) = done {
                collect(&mut posted, done);
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        if let Ok(done) = done {
            collect(&mut posted, done);
        }
    }
    (posted, slip)
}

/// A create-message body whose payload is a JSON object of exactly `payload_bytes` bytes,
/// numbered so that no two payloads are the same.
fn message_body(seq: usize, payload_bytes: usize) -> String {
    let head = format!(r#"{{"seq":"{seq:012}","kind":"herald-bench","pad":""#);
    let tail = r#""}"#;
    let pad = payload_bytes.saturating_sub(head.len() + tail.len());
    let mut body = String::with_capacity(payload_bytes + 64);
    body.push_str(r#"{"eventType":""#);
    body.push_str(EVENT_TYPE);
    body.push_str(r#"","payload":"#);
    body.push_str(&head);
    body.extend(std::iter::repeat_n('x', pad));
    body.push_str(tail);
    body.push('}');
    body
}

// ---- the API client -----------------------------------------------------------------------------

/// The Svix v1 API of the server under test.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    /// `http://host:port/api/v1`
    base: String,
    /// For a plain `http://` server: its address, `host:port` for the Host header, and the
    /// path of `base`, so the load tasks can use bare connections (`RawConn`).
    raw: Option<(SocketAddr, String, String)>,
    /// Further nodes of the same service (`--nodes`): bare connections go to each in turn.
    spread: Vec<SocketAddr>,
    /// Bare connections made so far, to pick the next one's node.
    made: Arc<std::sync::atomic::AtomicUsize>,
    authorization: reqwest::header::HeaderValue,
    /// Whether creates carry an `idempotency-key` (`--idempotency-keys`).
    idempotency_keys: bool,
}

/// One keep-alive HTTP/1.1 connection owned by one closed-loop task: hyper's client connection
/// without reqwest's pool, per-request URL parsing and header merging. The load generator
/// shares the CPU with the server it measures, and this halves what creating a message costs
/// the tool. Used for `http://` servers; `https://` ones go through reqwest.
struct RawConn {
    send: hyper::client::conn::http1::SendRequest<String>,
}

impl RawConn {
    async fn send_message(
        &mut self,
        api: &Api,
        path: &str,
        body: String,
    ) -> Result<String, String> {
        let Some((_, host, _)) = &api.raw else {
            return Err("not a plain HTTP server".into());
        };
        let mut request = hyper::Request::post(path)
            .header(reqwest::header::HOST, host.as_str())
            .header(reqwest::header::AUTHORIZATION, api.authorization.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(key) = api.idempotency_key() {
            request = request.header("idempotency-key", key);
        }
        let request = request.body(body).map_err(|e| e.to_string())?;
        self.send.ready().await.map_err(|e| e.to_string())?;
        let response = self
            .send
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = axum::body::Body::new(response.into_body());
        let bytes = axum::body::to_bytes(body, ANSWER_MAX)
            .await
            .map_err(|e| e.to_string())?;
        created_id(status, &bytes)
    }
}

/// Longest create-message answer read (it carries the message, payload included).
const ANSWER_MAX: usize = 4 << 20;

/// The id a create-message answer carries, or why it was not accepted.
fn created_id(status: u16, bytes: &[u8]) -> Result<String, String> {
    if status != 202 {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
        return Err(format!("HTTP {status}: {text}"));
    }
    serde_json::from_slice::<Created>(bytes)
        .map(|c| c.id)
        .map_err(|e| format!("202 without an id: {e}"))
}

#[derive(serde::Deserialize)]
struct Created {
    id: String,
}

impl Api {
    fn new(server: &str, token: &str, args: &Args) -> anyhow::Result<Api> {
        let connections = args.connections;
        let mut headers = reqwest::header::HeaderMap::new();
        let mut auth = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .context("the token is not a valid header value")?;
        auth.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, auth.clone());
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            reqwest::header::HeaderValue::from_static("application/json"),
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .http1_only()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(connections)
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()?;
        let root = server.trim_end_matches('/');
        let root = root.strip_suffix("/api/v1").unwrap_or(root);
        let base = format!("{root}/api/v1");
        let parsed = url::Url::parse(&base).context("the server URL does not parse")?;
        let raw = match (
            parsed.scheme(),
            parsed.host_str(),
            parsed.port_or_known_default(),
        ) {
            ("http", Some(host), Some(port)) => {
                let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))?
                    .next()
                    .context("the server's host does not resolve")?;
                Some((addr, format!("{host}:{port}"), parsed.path().to_string()))
            }
            _ => None,
        };
        Ok(Api {
            http,
            base,
            raw,
            spread: Vec::new(),
            made: Default::default(),
            authorization: auth,
            idempotency_keys: args.idempotency_keys,
        })
    }

    /// A fresh key for one create, shaped as the SDKs make theirs, when `--idempotency-keys`.
    fn idempotency_key(&self) -> Option<reqwest::header::HeaderValue> {
        self.idempotency_keys.then(|| {
            let key = format!("auto_{:032x}", rand::random::<u128>());
            reqwest::header::HeaderValue::from_str(&key).expect("hex is a valid header value")
        })
    }

    /// Adds another node of the same service, `http://host:port`, for bare connections.
    fn spread_to(&mut self, server: &str) -> anyhow::Result<()> {
        let parsed = url::Url::parse(server).context("the server URL does not parse")?;
        let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
            bail!("{server} has no host and port");
        };
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))?
            .next()
            .context("the node's host does not resolve")?;
        self.spread.push(addr);
        Ok(())
    }

    /// A bare connection for a closed-loop task, or `None` to use the pooled client.
    async fn connect(&self) -> Result<Option<RawConn>, String> {
        let Some((first, _, _)) = &self.raw else {
            return Ok(None);
        };
        let made = self.made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let addr = match made % (self.spread.len() + 1) {
            0 => first,
            i => &self.spread[i - 1],
        };
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let (send, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            // Ends when the task drops its `RawConn`, or the server closes the connection.
            let _ = connection.await;
        });
        Ok(Some(RawConn { send }))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> anyhow::Result<(u16, Value)> {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .body(body.to_string())
            .send()
            .await
            .with_context(|| format!("calling {path}"))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value))
    }

    /// Creates the event type (if missing), an application and an endpoint pointing at
    /// `receiver_url`; answers the application id.
    async fn setup(&self, app_name: &str, receiver_url: &str) -> anyhow::Result<String> {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/event-type",
                json!({"name": EVENT_TYPE, "description": "herald-bench messages"}),
            )
            .await?;
        if status != 201 && status != 409 {
            bail!("creating the event type: HTTP {status}: {body}");
        }
        let (status, app) = self
            .call(reqwest::Method::POST, "/app", json!({"name": app_name}))
            .await?;
        let Some(app_id) = app["id"].as_str().filter(|_| status == 201) else {
            bail!("creating the application: HTTP {status}: {app}");
        };
        let (status, ep) = self
            .call(
                reqwest::Method::POST,
                &format!("/app/{app_id}/endpoint"),
                json!({"url": receiver_url, "description": "herald-bench receiver"}),
            )
            .await?;
        if status != 201 {
            bail!("creating the endpoint: HTTP {status}: {ep}");
        }
        Ok(app_id.to_string())
    }

    fn message_url(&self, app: &str) -> String {
        // The 202 need not repeat the payload: only the id is used.
        format!("{}/app/{app}/msg?with_content=false", self.base)
    }

    /// `message_url` without scheme and host, for a bare connection.
    fn message_path(&self, app: &str) -> String {
        let base_path = self
            .raw
            .as_ref()
            .map_or("/api/v1", |(_, _, path)| path.as_str());
        format!("{base_path}/app/{app}/msg?with_content=false")
    }

    /// Creates one message; answers its id, or why it was not accepted.
    async fn send_message(&self, url: &str, body: String) -> Result<String, String> {
        let mut request = self.http.post(url).body(body);
        if let Some(key) = self.idempotency_key() {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| e.to_string())?;
        created_id(status, &bytes)
    }
}

// ---- the receiver -------------------------------------------------------------------------------

/// The first arrival of one `webhook-id`, and how many times it came.
struct Arrival {
    first: Instant,
    count: u32,
}

#[derive(Default)]
struct Arrivals {
    /// By `webhook-id`. A std mutex: held for one map operation, never across an `.await`.
    by_id: Mutex<HashMap<String, Arrival>>,
    unique: AtomicUsize,
    without_id: AtomicUsize,
    /// How the receiver answers.
    answer: Answer,
    /// Every request, as it arrived (only for a receiver that does not answer 200: the noisy
    /// scenario's bad ones, which see few).
    times: Mutex<Vec<Instant>>,
}

/// How a receiver answers each webhook.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Answer {
    /// 200 at once.
    #[default]
    Ok,
    /// Nothing until `HANG_FOR` has passed.
    Hang,
    /// This status at once.
    Status(u16),
    /// 429 with `Retry-After` of this many seconds.
    TooMany(u64),
}

/// What the receiver saw of a list of accepted messages.
struct Matched {
    delivered: usize,
    missing: usize,
    duplicates: usize,
    last_arrival: Option<Instant>,
    /// Create-to-receipt time of each delivered message.
    latencies: Vec<Duration>,
}

impl Arrivals {
    fn record(&self, id: &str, at: Instant) {
        let mut map = self.by_id.lock().expect("not poisoned");
        match map.get_mut(id) {
            Some(a) => a.count += 1,
            None => {
                map.insert(
                    id.to_string(),
                    Arrival {
                        first: at,
                        count: 1,
                    },
                );
                self.unique.fetch_add(1, Relaxed);
            }
        }
    }

    fn clear(&self) {
        self.by_id.lock().expect("not poisoned").clear();
        self.unique.store(0, Relaxed);
    }

    fn first_arrival(&self) -> Option<Instant> {
        let map = self.by_id.lock().expect("not poisoned");
        map.values().map(|a| a.first).min()
    }

    async fn await_arrivals(&self, expected: usize, deadline: Instant) {
        self.await_arrivals_sampling(expected, deadline, Duration::MAX, || {})
            .await
    }

    /// Waits until `expected` distinct ids arrived, `deadline` passed, or nothing new came for
    /// `ARRIVAL_IDLE_MAX`; calls `sample` every `period` meanwhile.
    async fn await_arrivals_sampling(
        &self,
        expected: usize,
        deadline: Instant,
        period: Duration,
        mut sample: impl FnMut(),
    ) {
        let mut seen = self.unique.load(Relaxed);
        let mut progressed = Instant::now();
        let mut sampled = Instant::now();
        sample();
        loop {
            let now = Instant::now();
            if now.duration_since(sampled) >= period {
                sample();
                sampled = now;
            }
            let unique = self.unique.load(Relaxed);
            if unique >= expected || now >= deadline {
                break;
            }
            if unique != seen {
                seen = unique;
                progressed = now;
            } else if now.duration_since(progressed) >= ARRIVAL_IDLE_MAX {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        sample();
    }

    fn match_sent(&self, sent: &[Sent]) -> Matched {
        let map = self.by_id.lock().expect("not poisoned");
        let mut matched = Matched {
            delivered: 0,
            missing: 0,
            duplicates: 0,
            last_arrival: None,
            latencies: Vec::with_capacity(sent.len()),
        };
        for s in sent {
            match map.get(&s.id) {
                Some(a) => {
                    matched.delivered += 1;
                    matched.duplicates += a.count as usize - 1;
                    matched.last_arrival =
                        Some(matched.last_arrival.map_or(a.first, |l| l.max(a.first)));
                    matched
                        .latencies
                        .push(a.first.saturating_duration_since(s.started));
                }
                None => matched.missing += 1,
            }
        }
        let without_id = self.without_id.load(Relaxed);
        if without_id > 0 {
            eprintln!(
                "herald-bench: {without_id} requests reached the receiver without a webhook-id"
            );
        }
        matched
    }
}

/// An HTTP receiver on 127.0.0.1 that records every webhook and answers 200.
struct Receiver {
    addr: SocketAddr,
    state: Arc<Arrivals>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Receiver {
    /// Binds a port on 127.0.0.1 without listening: until `start`, connecting to it is refused.
    fn reserve() -> anyhow::Result<TcpSocket> {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        Ok(socket)
    }

    fn start(socket: TcpSocket) -> anyhow::Result<Receiver> {
        Receiver::start_answering(socket, Answer::Ok)
    }

    fn start_answering(socket: TcpSocket, answer: Answer) -> anyhow::Result<Receiver> {
        use axum::serve::ListenerExt;
        let addr = socket.local_addr()?;
        let listener = socket.listen(1024)?.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let state = Arc::new(Arrivals {
            answer,
            ..Arrivals::default()
        });
        let app = axum::Router::new()
            .route(HOOK_PATH, axum::routing::post(hook))
            .with_state(state.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                eprintln!("herald-bench: receiver: {e}");
            }
        });
        Ok(Receiver {
            addr,
            state,
            stop: Some(stop),
        })
    }

    fn url(&self) -> String {
        format!("http://{}{HOOK_PATH}", self.addr)
    }

    fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn hook(
    State(arrivals): State<Arc<Arrivals>>,
    headers: HeaderMap,
    _body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let at = Instant::now();
    match headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
        Some(id) => arrivals.record(id, at),
        None => {
            arrivals.without_id.fetch_add(1, Relaxed);
        }
    }
    if arrivals.answer != Answer::Ok {
        arrivals.times.lock().expect("not poisoned").push(at);
    }
    match arrivals.answer {
        Answer::Ok => StatusCode::OK.into_response(),
        Answer::Hang => {
            tokio::time::sleep(HANG_FOR).await;
            StatusCode::OK.into_response()
        }
        Answer::Status(code) => StatusCode::from_u16(code)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
        Answer::TooMany(secs) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", secs.to_string())],
        )
            .into_response(),
    }
}

// ---- the Herald process -------------------------------------------------------------------------

/// A run's fresh PostgreSQL database (`--postgres`), dropped when the run ends.
struct BenchDb {
    server: String,
    name: String,
    /// The database's URL, for `--db`.
    url: String,
}

impl BenchDb {
    async fn create(server: &str, label: &str) -> anyhow::Result<BenchDb> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let name = format!("herald_bench_{}_{stamp}_{}", std::process::id(), label)
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_");
        let server = server.trim_end_matches('/').to_string();
        admin(&server, &format!("CREATE DATABASE {name}")).await?;
        Ok(BenchDb {
            url: format!("{server}/{name}"),
            server,
            name,
        })
    }
}

impl Drop for BenchDb {
    fn drop(&mut self) {
        let (server, sql) = (
            self.server.clone(),
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
        // Dropped from async code: on a thread and a runtime of its own.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(admin(&server, &sql)))
        })
        .join();
    }
}

/// Runs `sql` on the server's `postgres` database.
async fn admin(server: &str, sql: &str) -> anyhow::Result<()> {
    let (client, connection) =
        tokio_postgres::connect(&format!("{server}/postgres"), tokio_postgres::NoTls)
            .await
            .context("connecting to --postgres")?;
    tokio::spawn(connection);
    client.batch_execute(sql).await.context("on --postgres")?;
    Ok(())
}

/// A temporary directory for one run's database and logs, removed afterwards unless `--keep`.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    fn create(args: &Args, label: &str) -> anyhow::Result<WorkDir> {
        let base = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let path = base.join(format!(
            "herald-bench-{}-{stamp}-{label}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(WorkDir {
            path,
            keep: args.keep,
        })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("herald-bench: kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A Herald this tool started; killed if dropped while still running.
struct HeraldProcess {
    child: Child,
    /// `http://127.0.0.1:port`
    base: String,
    token: String,
    db: PathBuf,
    log: PathBuf,
    spawned: Instant,
    /// When its health check first answered 200.
    ready: Instant,
}

struct Memory {
    rss_kb: u64,
    hwm_kb: u64,
}

impl HeraldProcess {
    /// Starts `herald serve` on `dir/herald.redb` with a free loopback port and waits until it
    /// answers its health check. `env` is added to this process's environment.
    async fn start(
        args: &Args,
        dir: &Path,
        env: &[(String, String)],
        deadline: Instant,
    ) -> anyhow::Result<HeraldProcess> {
        HeraldProcess::start_on(args, dir, &dir.join("herald.redb"), 0, env, deadline).await
    }

    /// `start` on database `db` (a file, or a PostgreSQL URL several nodes share), as node
    /// `node` of the run (its own log; the first node's token file).
    async fn start_on(
        args: &Args,
        dir: &Path,
        db: &Path,
        node: usize,
        env: &[(String, String)],
        deadline: Instant,
    ) -> anyhow::Result<HeraldProcess> {
        let bin = std::fs::canonicalize(&args.herald_bin).with_context(|| {
            format!(
                "the Herald binary {} (build it: cargo build --release --bin herald)",
                args.herald_bin.display()
            )
        })?;
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?.port()
        };
        let db = db.to_path_buf();
        let log = if node == 0 {
            dir.join("herald.log")
        } else {
            dir.join(format!("herald-{node}.log"))
        };
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut command = Command::new(&bin);
        command
            .arg("serve")
            .arg("--db")
            .arg(&db)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args([
                "--allow-destination",
                "127.0.0.0/8",
                "--allow-http-destinations",
            ])
            // Its own directory, so a ./herald.toml where the bench runs is not picked up.
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file.try_clone()?))
            .stderr(Stdio::from(log_file));
        if std::env::var_os("HERALD_LOG").is_none() {
            command.env("HERALD_LOG", "warn");
        }
        command.envs(env.iter().map(|(k, v)| (k, v)));
        let spawned = Instant::now();
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut herald = HeraldProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
            token: String::new(),
            db,
            log,
            spawned,
            ready: spawned,
        };
        herald
            .await_ready(deadline.min(spawned + STARTUP_MAX))
            .await?;
        Ok(herald)
    }

    async fn await_ready(&mut self, deadline: Instant) -> anyhow::Result<()> {
        let health = format!("{}/api/v1/health", self.base);
        let probe = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()?;
        // Beside a database file; for a database URL, in the working directory (the run's).
        let token_file = if self.db.to_string_lossy().starts_with("postgres") {
            self.log.with_file_name("herald.admin-token")
        } else {
            PathBuf::from(format!("{}.admin-token", self.db.display()))
        };
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("Herald exited with {status}; its log:\n{}", self.log_tail());
            }
            if Instant::now() >= deadline {
                bail!(
                    "Herald did not become ready in time; its log:\n{}",
                    self.log_tail()
                );
            }
            if let Ok(r) = probe.get(&health).send().await
                && r.status().is_success()
            {
                self.ready = Instant::now();
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        // The token file is written on the first start, before Herald listens (a node started
        // on a database that has tokens writes none: the caller gives it the first's).
        self.token = match std::fs::read_to_string(&token_file) {
            Ok(text) => text.trim().to_string(),
            Err(_) if self.log.file_name() != Some(std::ffi::OsStr::new("herald.log")) => {
                String::new()
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", token_file.display())),
        };
        Ok(())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn memory(&self) -> Option<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
        };
        Some(Memory {
            rss_kb: field("VmRSS:")?,
            hwm_kb: field("VmHWM:")?,
        })
    }

    /// Stops Herald gracefully (SIGTERM) and waits for it to exit; kills it when it takes
    /// longer than `STOP_GRACE_MAX`.
    async fn stop(mut self) -> anyhow::Result<()> {
        // std has no signal API; kill(1) sends the SIGTERM that a graceful stop needs.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + STOP_GRACE_MAX;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    eprintln!(
                        "herald-bench: Herald exited with {status}; its log:\n{}",
                        self.log_tail()
                    );
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "herald-bench: Herald did not stop within {STOP_GRACE_MAX:?}; killing it"
                );
                self.child.kill()?;
                self.child.wait()?;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for HeraldProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// User plus system CPU time of a process, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line; `rest` starts at field 3.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLOCK_TICKS_PER_S)
}

/// Busy CPU time of the whole machine (every state but idle and iowait), from `/proc/stat`.
fn system_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user already)
    let busy: f64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    Some(busy / CLOCK_TICKS_PER_S)
}

/// CPU time spent in a window by Herald, by this tool, and by everything else on the machine
/// (other processes, kernel work charged to no process), so a run disturbed by a build next
/// door shows it.
struct CpuMeter {
    herald_pid: Option<u32>,
    at: Instant,
    herald: Option<f64>,
    bench: Option<f64>,
    system: Option<f64>,
}

struct CpuUse {
    herald_us_per_msg: Option<f64>,
    bench_us_per_msg: Option<f64>,
    /// Average cores busy with neither Herald nor this tool.
    other_cores: Option<f64>,
}

impl CpuMeter {
    fn start(herald_pid: Option<u32>) -> CpuMeter {
        CpuMeter {
            herald_pid,
            at: Instant::now(),
            herald: herald_pid.and_then(cpu_seconds),
            bench: cpu_seconds(std::process::id()),
            system: system_busy_seconds(),
        }
    }

    fn finish(&self, messages: usize) -> CpuUse {
        let delta = |before: Option<f64>, after: Option<f64>| before.zip(after).map(|(b, a)| a - b);
        let herald = delta(self.herald, self.herald_pid.and_then(cpu_seconds));
        let bench = delta(self.bench, cpu_seconds(std::process::id()));
        let system = delta(self.system, system_busy_seconds());
        let wall = self.at.elapsed().as_secs_f64();
        let per_msg = |s: Option<f64>| {
            s.filter(|_| messages > 0)
                .map(|s| s * 1e6 / messages as f64)
        };
        let other = system
            .zip(bench)
            .map(|(sys, b)| (sys - b - herald.unwrap_or(0.0)).max(0.0) / wall);
        CpuUse {
            herald_us_per_msg: per_msg(herald),
            bench_us_per_msg: per_msg(bench),
            other_cores: other.filter(|_| wall > 0.0),
        }
    }
}

// ---- numbers and the report ---------------------------------------------------------------------

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rate_per_s(count: usize, over: Duration) -> Option<f64> {
    (over > Duration::ZERO && count > 0).then(|| count as f64 / over.as_secs_f64())
}

struct Percentiles(Vec<Duration>);

impl Percentiles {
    fn of(mut samples: Vec<Duration>) -> Percentiles {
        samples.sort_unstable();
        Percentiles(samples)
    }

    /// Nearest-rank percentile, in milliseconds; `q` = 1.0 is the maximum.
    fn ms(&self, q: f64) -> Option<f64> {
        if self.0.is_empty() {
            return None;
        }
        let rank = ((q * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len());
        Some(ms(self.0[rank - 1]))
    }
}

#[derive(Clone, Copy)]
enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

impl Goal {
    fn met(self, v: f64) -> bool {
        match self {
            Goal::AtLeast(t) => v >= t,
            Goal::AtMost(t) => v <= t,
        }
    }

    fn describe(self) -> String {
        match self {
            Goal::AtLeast(t) => format!(">= {}", number(t)),
            Goal::AtMost(t) => format!("<= {}", number(t)),
        }
    }
}

struct Metric {
    key: String,
    label: String,
    unit: &'static str,
    value: Option<f64>,
    goal: Option<Goal>,
}

impl Metric {
    fn new(key: &str, label: &str, unit: &'static str, value: Option<f64>) -> Metric {
        Metric {
            key: key.to_string(),
            label: label.to_string(),
            unit,
            value,
            goal: None,
        }
    }

    fn count(key: &str, label: &str, n: usize) -> Metric {
        Metric::new(key, label, "", Some(n as f64))
    }

    fn target(mut self, goal: Goal) -> Metric {
        self.goal = Some(goal);
        self
    }
}

fn median(values: &[Option<f64>]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().flatten().copied().collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

fn number(v: f64) -> String {
    if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One row per metric: the values of every run, in the order the first run reported them.
fn rows(runs: &[Vec<Metric>]) -> Vec<(&Metric, Vec<Option<f64>>)> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    first
        .iter()
        .map(|m| (m, runs.iter().map(|r| value(r, &m.key)).collect()))
        .collect()
}

struct Machine {
    cpus: usize,
    model: String,
}

impl Machine {
    fn read() -> Machine {
        let model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            model,
        }
    }
}

fn describe_setup(args: &Args) -> String {
    let server = match &args.url {
        Some(url) => format!("server {url} (backlog: {})", args.herald_bin.display()),
        None => format!("server {} (started per run)", args.herald_bin.display()),
    };
    format!(
        "{server}; burst {} msgs x {} connections; rate {}/s x {} s; backlog {} msgs; payload {} B; {} bench thread(s)",
        args.messages,
        args.connections,
        args.rate,
        args.duration_secs,
        args.backlog_messages,
        args.payload_bytes,
        args.threads
    )
}

fn report_table(
    args: &Args,
    machine: &Machine,
    results: &[(Scenario, Vec<Vec<Metric>>)],
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "herald-bench: {} CPUs ({})",
        machine.cpus, machine.model
    );
    let _ = writeln!(out, "{}", describe_setup(args));
    let runs = args.runs;
    let mut header = format!("{:<9} {:<52} {:>6}", "scenario", "metric", "unit");
    for r in 1..=runs {
        let _ = write!(header, " {:>9}", format!("run {r}"));
    }
    if runs > 1 {
        let _ = write!(header, " {:>9}", "median");
    }
    let _ = write!(header, "  {:<10} met", "target");
    let _ = writeln!(out, "{header}");
    let _ = writeln!(out, "{}", "-".repeat(header.chars().count()));
    for (scenario, metrics) in results {
        for (m, values) in rows(metrics) {
            let mut line = format!("{:<9} {:<52} {:>6}", scenario.name(), m.label, m.unit);
            for v in &values {
                let _ = write!(line, " {:>9}", v.map_or("-".into(), number));
            }
            let mid = median(&values);
            if runs > 1 {
                let _ = write!(line, " {:>9}", mid.map_or("-".into(), number));
            }
            if let Some(goal) = m.goal {
                let met = match mid {
                    Some(v) if goal.met(v) => "yes",
                    Some(_) => "NO",
                    None => "-",
                };
                let _ = write!(line, "  {:<10} {met}", goal.describe());
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
    out
}

fn report_json(args: &Args, machine: &Machine, results: &[(Scenario, Vec<Vec<Metric>>)]) -> Value {
    let scenarios: Vec<Value> = results
        .iter()
        .map(|(scenario, metrics)| {
            let metrics: Vec<Value> = rows(metrics)
                .into_iter()
                .map(|(m, values)| {
                    let mid = median(&values);
                    json!({
                        "key": m.key,
                        "label": m.label,
                        "unit": m.unit,
                        "runs": values,
                        "median": mid,
                        "target": m.goal.map(Goal::describe),
                        "met": m.goal.zip(mid).map(|(g, v)| g.met(v)),
                    })
                })
                .collect();
            json!({"scenario": scenario.name(), "metrics": metrics})
        })
        .collect();
    json!({
        "machine": {"cpus": machine.cpus, "model": machine.model},
        "setup": describe_setup(args),
        "runs": args.runs,
        "scenarios": scenarios,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_the_asked_size_and_are_json() {
        for size in [PAYLOAD_BYTES_MIN, 170, 1000] {
            let body: Value = serde_json::from_str(&message_body(42, size)).unwrap();
            assert_eq!(body["eventType"], EVENT_TYPE);
            assert_eq!(body["payload"].to_string().len(), size);
        }
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let p = Percentiles::of((1..=100).rev().map(Duration::from_millis).collect());
        assert_eq!(p.ms(0.50), Some(50.0));
        assert_eq!(p.ms(0.99), Some(99.0));
        assert_eq!(p.ms(1.0), Some(100.0));
        assert_eq!(Percentiles::of(Vec::new()).ms(0.5), None);
    }

    #[test]
    fn the_median_skips_missing_values() {
        assert_eq!(median(&[Some(3.0), None, Some(1.0), Some(2.0)]), Some(2.0));
        assert_eq!(median(&[Some(1.0), Some(2.0)]), Some(1.5));
        assert_eq!(median(&[None]), None);
    }
}
