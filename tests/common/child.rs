//! The real `herald` binary as a child process on its own database, for tests that kill it
//! (`kill -9`) or measure Herald alone: its resident memory and CPU time from `/proc`, and
//! whether it is still the same process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_herald");

pub struct HeraldProcess {
    pub child: Child,
    pub db: PathBuf,
    pub port: u16,
    /// The admin token `start_with_token` made or was given (empty otherwise).
    pub token: String,
    /// `http://127.0.0.1:PORT/api/v1`
    pub base: String,
    pub client: reqwest::Client,
}

/// `herald serve` on `db` and `127.0.0.1:PORT`, delivering to loopback over plain http,
/// logging errors only, stdout discarded: what every test that runs the binary starts from.
pub fn serve_command(db: &Path, port: u16) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--db"])
        .arg(db)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--allow-destination",
            "127.0.0.0/8",
            "--allow-http-destinations",
        ])
        .env("HERALD_LOG", "error")
        .stdout(Stdio::null());
    cmd
}

/// `herald check`'s line of what is left to mend: (parked on ready, pending for deleted).
pub fn to_mend(report: &str) -> (u64, u64) {
    let line = report
        .lines()
        .find(|l| l.starts_with("to mend:"))
        .unwrap_or_else(|| panic!("no `to mend` line in:\n{report}"));
    let n: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    (n[0], n[1])
}

impl HeraldProcess {
    /// Starts `herald serve` on `db`, delivering to loopback over plain http, with the given
    /// `HERALD_*` settings, and waits until it answers its health check.
    pub async fn start(db: &Path, env: &[(&str, &str)]) -> HeraldProcess {
        HeraldProcess::start_on(db, free_port(), env).await
    }

    /// As `start`, with an admin token for `request`: `token`, or one made first when `None`.
    pub async fn start_with_token(
        db: &Path,
        token: Option<&str>,
        env: &[(&str, &str)],
    ) -> HeraldProcess {
        let token = match token {
            Some(t) => t.to_string(),
            None => create_token(db, None),
        };
        let mut me = HeraldProcess::start(db, env).await;
        me.token = token;
        me
    }

    /// As `start`, on a given port (a restart on the address clients already use).
    pub async fn start_on(db: &Path, port: u16, env: &[(&str, &str)]) -> HeraldProcess {
        let mut cmd = serve_command(db, port);
        cmd.stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("herald starts");
        let me = HeraldProcess {
            child,
            db: db.to_path_buf(),
            port,
            token: String::new(),
            base: format!("http://127.0.0.1:{port}/api/v1"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
        };
        super::eventually(Duration::from_secs(30), || async {
            me.client
                .get(me.url("/api/v1/health"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        me
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (it never exited or restarted).
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_none()
    }

    /// Resident memory now, in bytes (`VmRSS`).
    pub fn rss_bytes(&self) -> u64 {
        rss_bytes_of(self.pid())
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.rss_bytes() / 1024
    }

    /// An API call with the admin token; the answer's status and JSON (or its text as a
    /// string).
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (reqwest::StatusCode, serde_json::Value) {
        self.request(reqwest::Method::GET, path, None).await
    }

    pub async fn post(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        self.request(reqwest::Method::POST, path, Some(body)).await
    }

    /// CPU time used so far, user and system (`/proc/PID/stat`), in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
            .sum();
        ticks as f64 / clock_ticks_per_second()
    }

    /// Kills it with SIGKILL and waits: nothing is flushed or closed.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// `herald check` on its database (run while it is stopped); panics unless clean.
    pub fn check(&self) -> String {
        let out = Command::new(BIN)
            .arg("check")
            .arg(&self.db)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "herald check failed: {text}");
        text
    }

    /// Stops it with SIGTERM and waits.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for HeraldProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `herald token create` on a stopped database: an admin token, or one scoped to `app`.
pub fn create_token(db: &Path, app: Option<&str>) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(["token", "create", "--db"]).arg(db);
    if let Some(app) = app {
        cmd.args(["--app", app]);
    }
    let out = cmd.output().expect("herald token create runs");
    assert!(
        out.status.success(),
        "token create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Resident memory of process `pid` now, in bytes (`VmRSS`); for samplers that run apart
/// from the `HeraldProcess` they watch.
pub fn rss_bytes_of(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS:") * 1024
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Asked of `getconf` once: `cpu_seconds` is called around every request of a test.
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        let out = Command::new("getconf").arg("CLK_TCK").output();
        out.ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}
