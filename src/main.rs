//! The `herald` command: parse, load configuration, call into the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use herald::config::{Config, Overrides};
use herald::{Herald, shutdown_signal};
use ipnet::IpNet;

/// See Cargo.toml: the allocator is a measured choice (issue 4's profile).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "A self-contained webhook delivery appliance"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API and the delivery engine.
    Serve {
        /// A TOML configuration file (default: ./herald.toml when present).
        #[arg(long, env = "HERALD_CONFIG")]
        config: Option<PathBuf>,
        /// The database: a file path, or a postgres:// URL.
        #[arg(long)]
        db: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// What this node does: all, api (API and dashboard) or worker (delivery).
        #[arg(long, value_enum)]
        role: Option<herald::config::Role>,
        /// A CIDR that deliveries may reach although it is not public (repeatable).
        #[arg(long = "allow-destination", value_name = "CIDR")]
        allow_destination: Vec<IpNet>,
        /// Allow http:// endpoint URLs.
        #[arg(long)]
        allow_http_destinations: bool,
        /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Manage API tokens (while the server is stopped: the database is locked while it runs).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage dashboard users (while the server is stopped: the database is locked while it
    /// runs; the first user can also be made through the setup link `serve` prints).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Open a database file and verify that every record decodes.
    Check { path: PathBuf },
    /// Write a consistent copy of the database to OUT_PATH: from the file (server stopped), or
    /// from a running server (`--url`, admin token), which keeps serving meanwhile.
    Backup {
        /// The database file, when no server has it open.
        #[arg(long, env = "HERALD_DB", conflicts_with = "url")]
        db: Option<PathBuf>,
        /// A running Herald's base URL, e.g. http://127.0.0.1:8080.
        #[arg(long, requires = "token")]
        url: Option<String>,
        /// An admin API token for `--url`.
        #[arg(long, env = "HERALD_TOKEN")]
        token: Option<String>,
        out_path: PathBuf,
    },
    /// Copy every table of a database file (no server may have it open) into a PostgreSQL
    /// database, secrets and pending deliveries included. Safe to run again: rows already
    /// there are kept, none is written twice.
    Migrate {
        /// The database file.
        #[arg(long)]
        from: PathBuf,
        /// The PostgreSQL database: a postgres:// URL.
        #[arg(long)]
        to: PathBuf,
    },
}

impl Command {
    /// The database file the command was given on its command line or in `HERALD_DB`.
    fn db(&self) -> Option<&std::path::Path> {
        match self {
            // Checked by `migrate`: one side is a file, the other a URL.
            Command::Serve { .. } | Command::Migrate { .. } => None,
            Command::Backup { db, .. } => db.as_deref(),
            Command::Check { path } => Some(path),
            Command::Token { command } => Some(match command {
                TokenCommand::Create { db, .. }
                | TokenCommand::List { db }
                | TokenCommand::Revoke { db, .. } => db,
            }),
            Command::User { command } => Some(match command {
                UserCommand::Add { db, .. }
                | UserCommand::Passwd { db, .. }
                | UserCommand::List { db }
                | UserCommand::Remove { db, .. } => db,
            }),
        }
    }
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a dashboard user. The password is read from HERALD_PASSWORD, or asked for.
    Add {
        #[arg(long, env = "HERALD_DB", default_value = "herald.redb")]
        db: PathBuf,
        username: String,
    },
    /// Set a user's password (from HERALD_PASSWORD, or asked for).
    Passwd {
        #[arg(long, env = "HERALD_DB", default_value = "herald.redb")]
        db: PathBuf,
        username: String,
    },
    /// List the dashboard's users.
    List {
        #[arg(long, env = "HERALD_DB", default_value = "herald.redb")]
        db: PathBuf,
    },
    /// Remove a user; their sessions end at once.
    Remove {
        #[arg(long, env = "HERALD_DB", default_value = "herald.redb")]
        db: PathBuf,
        username: String,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it, alone, on stdout. It is shown this once.
    Create {
        #[arg(long, env = "HERALD_DB", default_value = "herald.redb")]
        db: PathBuf,
        #[arg(long, default_value = "cli")]
        name: String,
        /// Scope the token to one application (id or uid); default: admin.
        #[arg(long)]
        app: Option<String>,
    },
    /// List tokens (ids, names, scopes; never the tokens themselves).
    List {
        #[arg(long, env = "HERALD_DB", default_value = "herald.redb")]
        db: PathBuf,
    },
    /// Revoke a token by id (tok_...).
    Revoke {
        #[arg(long, env = "HERALD_DB", default_value = "herald.redb")]
        db: PathBuf,
        id: String,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HERALD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // Before anything prints the database it was given. `serve` is checked with its merged
    // configuration (file and environment included), in `Config::validate`.
    if let Some(db) = cli.command.db() {
        herald::config::refuse_db_url(db)?;
    }
    match cli.command {
        Command::Serve {
            config,
            db,
            listen,
            role,
            allow_destination,
            allow_http_destinations,
            tls_cert,
            tls_key,
        } => {
            let overrides = Overrides {
                db,
                listen,
                role,
                allow_destination,
                allow_http_destinations,
                tls_cert,
                tls_key,
            };
            let config = Config::load(config.as_deref(), overrides)?;
            serve(config).await
        }
        Command::Token { command } => token(command).await,
        Command::User { command } => user(command).await,
        Command::Backup {
            db,
            url,
            token,
            out_path,
        } => backup(db, url, token, out_path).await,
        Command::Migrate { from, to } => migrate(from, to).await,
        Command::Check { path } => {
            let shown = herald::config::shown_db(&path);
            let report = if herald::storage::postgres_url(&path).is_some() {
                // Applies the schema if the database is empty, as any node would.
                let herald = Herald::open(Config {
                    db: path.clone(),
                    ..Config::default()
                })
                .with_context(|| format!("opening {shown}"))?;
                let report = herald.check_database().await;
                herald.close().await;
                report
            } else {
                herald::storage::Store::check(&path)
            }
            .with_context(|| format!("checking {shown}"))?;
            println!("{report}");
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let db = config.db.clone();
    let config_tls = (config.tls_cert.clone(), config.tls_key.clone());
    // The database URL's password never reaches a log line.
    let shown = Config {
        db: herald::config::shown_db(&config.db).into(),
        ..config.clone()
    };
    tracing::info!(config = ?shown, "starting");
    // Before the listener exists: SIGTERM or SIGINT from then on stops Herald gracefully.
    let shutdown = shutdown_signal();
    let herald = Herald::open(config)?;
    bootstrap_token(&herald, &db).await?;
    let tls = match (&config_tls.0, &config_tls.1) {
        (Some(cert), Some(key)) => Some(herald::tls::server_config(cert, key)?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let address = listener.local_addr()?;
    herald.service().listening_on(address);
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%address, db = %herald::config::shown_db(&db), "Herald is listening: API at {scheme}://{address}/api/v1");
    log_dashboard(&herald, &format!("{scheme}://{address}")).await?;
    match tls {
        Some(tls) => {
            herald
                .serve(herald::tls::TlsListener::new(listener, tls)?, shutdown)
                .await?
        }
        None => herald.serve(listener, shutdown).await?,
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Says where the dashboard is and how to log in; while no user exists, prints a one-time
/// setup link that creates the first one (a new link at every start until then).
async fn log_dashboard(herald: &Herald, base: &str) -> anyhow::Result<()> {
    let public = herald
        .service()
        .config()
        .public_url
        .clone()
        .unwrap_or_else(|| base.to_string());
    let public = public.trim_end_matches('/');
    match herald.service().setup_link().await? {
        Some(link) => {
            tracing::info!(
                "dashboard at {public}/ has no user yet: open this one-time link to create the first one (valid 24 h): {link}"
            );
            tracing::info!("or stop the server and run: herald user add USERNAME");
        }
        None => {
            tracing::info!(
                "dashboard at {public}/ (log in with a user made by `herald user add USERNAME`)"
            );
        }
    }
    Ok(())
}

/// The password for `user add` / `user passwd`: HERALD_PASSWORD, or asked twice on the terminal
/// without echo.
fn read_password() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("HERALD_PASSWORD") {
        return Ok(p);
    }
    let first = rpassword::prompt_password("Password: ").context("reading the password")?;
    let again = rpassword::prompt_password("Password again: ").context("reading the password")?;
    anyhow::ensure!(first == again, "the passwords differ");
    Ok(first)
}

async fn user(command: UserCommand) -> anyhow::Result<()> {
    let open = |db: PathBuf| {
        Herald::open(Config {
            db,
            ..Config::default()
        })
    };
    let fail = |e: herald::service::ServiceError| match e {
        herald::service::ServiceError::Invalid(fields) => anyhow::anyhow!(
            "{}",
            fields
                .iter()
                .map(|f| format!("{}: {}", f.field, f.msg))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        e => anyhow::anyhow!("{e}"),
    };
    match command {
        UserCommand::Add { db, username } => {
            let password = read_password()?;
            let herald = open(db)?;
            let result = herald.service().add_user(&username, &password).await;
            herald.close().await;
            result.map_err(fail)?;
            println!("user {username} created; log in on the dashboard");
        }
        UserCommand::Passwd { db, username } => {
            let password = read_password()?;
            let herald = open(db)?;
            let result = herald.service().set_password(&username, &password).await;
            herald.close().await;
            result.map_err(fail)?;
            println!("password of {username} changed");
        }
        UserCommand::List { db } => {
            let herald = open(db)?;
            let users = herald.service().users().await;
            herald.close().await;
            for u in users.map_err(fail)? {
                println!("{}", u.username);
            }
        }
        UserCommand::Remove { db, username } => {
            let herald = open(db)?;
            let result = herald.service().remove_user(&username).await;
            herald.close().await;
            result.map_err(fail)?;
            println!("user {username} removed");
        }
    }
    Ok(())
}

/// On a database with no API token at all, makes one admin token and writes it to a file
/// beside the database (mode 0600), so a newcomer can call the API at once. The token itself
/// is never logged; only where to find it.
async fn bootstrap_token(herald: &Herald, db: &std::path::Path) -> anyhow::Result<()> {
    if !herald.service().list_tokens().await?.is_empty() {
        return Ok(());
    }
    let new = herald.service().create_token("bootstrap", None).await?;
    let path = token_file(db);
    write_private(&path, format!("{}\n", new.text).as_bytes())?;
    tracing::info!(file = %path.display(), "first start: an admin API token was written to this file");
    Ok(())
}

/// Where the first start writes its admin token: beside a database file, or, for a database
/// URL, `herald.admin-token` in the working directory (the node that first starts on an empty
/// database writes it; the others find a token there and write none).
fn token_file(db: &std::path::Path) -> PathBuf {
    match herald::storage::postgres_url(db) {
        Some(_) => PathBuf::from("herald.admin-token"),
        None => PathBuf::from(format!("{}.admin-token", db.display())),
    }
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = create_private(path)?;
    file.write_all(bytes)?;
    Ok(())
}

/// An empty file at `path` that only its owner may read, made so or tightened before anything
/// is written to it (`storage::open_private`); a file already there loses its contents.
fn create_private(path: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let file = herald::storage::open_private(path, herald::storage::Create::IfMissing)
        .with_context(|| format!("writing {}", path.display()))?;
    file.set_len(0)?;
    Ok(file)
}

async fn backup(
    db: Option<PathBuf>,
    url: Option<String>,
    token: Option<String>,
    out: PathBuf,
) -> anyhow::Result<()> {
    if let Some(url) = url {
        let token = token.context("--url needs --token (or HERALD_TOKEN)")?;
        return backup_from_server(&url, &token, &out).await;
    }
    let db = db.unwrap_or_else(|| PathBuf::from("herald.redb"));
    anyhow::ensure!(
        herald::storage::postgres_url(&db).is_none(),
        "{} is a PostgreSQL database: back it up with PostgreSQL's own tools (pg_dump, or base \
         backups with WAL archiving)",
        herald::config::shown_db(&db)
    );
    anyhow::ensure!(db.exists(), "{} does not exist", db.display());
    let herald = Herald::open(Config {
        db: db.clone(),
        ..Config::default()
    })
    .with_context(|| {
        format!(
            "opening {} (is a server running on it? use --url)",
            db.display()
        )
    })?;
    let report = herald.service().store().backup(&out).await;
    herald.close().await;
    let report = report.map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "{}: {} tables, {} rows, {} bytes",
        out.display(),
        report.tables,
        report.rows,
        report.bytes
    );
    Ok(())
}

/// `herald migrate`: the file's tables copied into the database, and a short report.
async fn migrate(from: PathBuf, to: PathBuf) -> anyhow::Result<()> {
    let (shown_from, shown_to) = (
        herald::config::shown_db(&from),
        herald::config::shown_db(&to),
    );
    anyhow::ensure!(
        herald::storage::postgres_url(&from).is_none(),
        "--from {shown_from} is a PostgreSQL database: migrate copies a database file into one"
    );
    herald::config::refuse_db_url(&from)?;
    let Some(url) = herald::storage::postgres_url(&to) else {
        anyhow::bail!("--to {shown_to} is not a postgres:// URL");
    };
    anyhow::ensure!(from.exists(), "{shown_from} does not exist");
    let config = Config::default();
    let settings = herald::storage::StoreSettings::from_config(&config, Default::default());
    let report = herald::storage::migrate::migrate(&from, url, &settings)
        .await
        .with_context(|| format!("migrating {shown_from} to {shown_to}"))?;
    println!("{shown_from} -> {shown_to}\n{report}");
    if report.disagreeing() > 0 {
        tracing::warn!(
            "some index entries of the file disagree with their records (see above); run \
             `herald check` on the database"
        );
    }
    Ok(())
}

/// Streams `GET /api/v1/admin/backup` into `<out>.partial`, then renames it into place.
async fn backup_from_server(url: &str, token: &str, out: &std::path::Path) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    anyhow::ensure!(!out.exists(), "{} already exists", out.display());
    let endpoint = format!("{}/api/v1/admin/backup", url.trim_end_matches('/'));
    let mut response = reqwest::Client::new()
        .get(&endpoint)
        .bearer_auth(token)
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "{endpoint} answered {}: {}",
        response.status(),
        response.text().await.unwrap_or_default()
    );
    let partial = PathBuf::from(format!("{}.partial", out.display()));
    let mut file = tokio::fs::File::from_std(create_private(&partial)?);
    let mut bytes = 0u64;
    while let Some(chunk) = response.chunk().await? {
        file.write_all(&chunk).await?;
        bytes += chunk.len() as u64;
    }
    file.sync_all().await?;
    drop(file);
    tokio::fs::rename(&partial, out).await?;
    let report = herald::storage::Store::check(out)
        .map_err(|e| anyhow::anyhow!("the backup does not check: {e}"))?;
    println!("{}: {bytes} bytes\n{report}", out.display());
    Ok(())
}

async fn token(command: TokenCommand) -> anyhow::Result<()> {
    let open = |db: PathBuf| {
        Herald::open(Config {
            db,
            ..Config::default()
        })
    };
    match command {
        TokenCommand::Create { db, name, app } => {
            let herald = open(db)?;
            let new = herald
                .service()
                .create_token(&name, app.as_deref())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}", new.text);
            herald.close().await;
        }
        TokenCommand::List { db } => {
            let herald = open(db)?;
            for t in herald.service().list_tokens().await? {
                let scope = t.app_id.map_or("admin".to_string(), |a| a.to_string());
                println!("{}\t{}\t{}", t.id, t.name, scope);
            }
            herald.close().await;
        }
        TokenCommand::Revoke { db, id } => {
            let herald = open(db)?;
            herald
                .service()
                .revoke_token(&id)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("revoked {id}");
            herald.close().await;
        }
    }
    Ok(())
}
