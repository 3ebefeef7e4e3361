//! PostgreSQL for the tests: which server the suite may use, and a fresh database per test.
//!
//! `HERALD_TEST_BACKEND=postgres` runs every in-process test server on a database of its own,
//! created here and dropped when the server is dropped. `HERALD_TEST_POSTGRES` names the
//! server (default `postgres://postgres@127.0.0.1:5432`, trust auth, as on CI).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The server the tests create their databases on.
pub fn server_url() -> String {
    std::env::var("HERALD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string())
}

/// Whether this run puts its test servers on PostgreSQL.
pub fn selected() -> bool {
    std::env::var("HERALD_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// Runs `f` on a runtime of its own, on a thread of its own (callers may be inside a runtime).
fn on_own_runtime<T: Send>(f: impl AsyncFnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(f())
        })
        .join()
        .unwrap()
    })
}

/// Runs `sql` on the server's `postgres` database.
fn admin(sql: String) -> Result<(), String> {
    let url = format!("{}/postgres", server_url());
    on_own_runtime(async move || {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        client.batch_execute(&sql).await.map_err(|e| e.to_string())
    })
}

/// Whether the server answers; the error says why not.
pub fn reachable() -> Result<(), String> {
    admin("SELECT 1".into())
}

/// A fresh, empty database on the server; answers its URL. Databases live until a later test
/// process removes them: each is named after the process that made it, and the first fresh
/// database of a process drops those of processes no longer running (a test may reopen its
/// database after its server stopped, so none is dropped while its process lives).
pub fn fresh_database() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(sweep_stale);
    let name = format!(
        "herald_test_{}_{}",
        std::process::id(),
        N.fetch_add(1, Relaxed)
    );
    admin(format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("HERALD_TEST_BACKEND=postgres, but {e}"));
    format!("{}/{name}", server_url())
}

/// The database of a test directory: fresh the first time `dir` asks, the same one after.
pub fn database_for(dir: &std::path::Path) -> String {
    static BY_DIR: std::sync::Mutex<Vec<(std::path::PathBuf, String)>> =
        std::sync::Mutex::new(Vec::new());
    let mut known = BY_DIR.lock().unwrap();
    if let Some((_, url)) = known.iter().find(|(d, _)| d == dir) {
        return url.clone();
    }
    let url = fresh_database();
    known.push((dir.to_path_buf(), url.clone()));
    url
}

/// Drops the test databases of processes that are gone.
fn sweep_stale() {
    let url = format!("{}/postgres", server_url());
    let names: Vec<String> = on_own_runtime(async move || {
        let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await else {
            return Vec::new();
        };
        tokio::spawn(conn);
        client
            .query(
                "SELECT datname FROM pg_database WHERE datname LIKE 'herald_test_%'",
                &[],
            )
            .await
            .map(|rows| rows.iter().map(|r| r.get(0)).collect())
            .unwrap_or_default()
    });
    for name in names {
        let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = admin(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}
