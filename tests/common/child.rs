//! The real `herald` binary as a child process on its own database: for tests that kill it
//! (`kill -9`) or measure its memory alone (`/proc/PID/status`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::eventually;

pub const BIN: &str = env!("CARGO_BIN_EXE_herald");

pub struct HeraldProcess {
    child: Child,
    pub db: PathBuf,
    pub port: u16,
    pub token: String,
    pub base: String,
    pub client: reqwest::Client,
}

impl HeraldProcess {
    /// Starts `herald serve` on `db` (loopback destinations and http allowed), with `env`
    /// settings (`HERALD_...`); makes an admin token first when the file is new. Answers once
    /// it is healthy.
    pub async fn start(db: &Path, token: Option<&str>, env: &[(&str, &str)]) -> HeraldProcess {
        let token = match token {
            Some(t) => t.to_string(),
            None => {
                let out = Command::new(BIN)
                    .args(["token", "create", "--db"])
                    .arg(db)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{out:?}");
                String::from_utf8(out.stdout).unwrap().trim().to_string()
            }
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--db"])
            .arg(db)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args([
                "--allow-destination",
                "127.0.0.0/8",
                "--allow-http-destinations",
            ])
            .env("HERALD_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("herald starts");
        let p = HeraldProcess {
            child,
            db: db.to_path_buf(),
            port,
            token,
            base: format!("http://127.0.0.1:{port}/api/v1"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
        };
        let health = format!("{}/health", p.base);
        eventually(Duration::from_secs(20), || async {
            p.client
                .get(&health)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        p
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's resident memory in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap(); // SIGKILL on Unix
        self.child.wait().unwrap();
    }

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
}

impl Drop for HeraldProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
