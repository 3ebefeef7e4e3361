//! The `herald` command: parse, load configuration, call into the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use herald::config::{Config, Overrides};
use herald::{Herald, shutdown_signal};
use ipnet::IpNet;

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
        /// The database file.
        #[arg(long)]
        db: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// A CIDR that deliveries may reach although it is not public (repeatable).
        #[arg(long = "allow-destination", value_name = "CIDR")]
        allow_destination: Vec<IpNet>,
        /// Allow http:// endpoint URLs.
        #[arg(long)]
        allow_http_destinations: bool,
    },
    /// Manage API tokens (while the server is stopped: the database is locked while it runs).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Open a database file and verify that every record decodes.
    Check { path: PathBuf },
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
    match cli.command {
        Command::Serve {
            config,
            db,
            listen,
            allow_destination,
            allow_http_destinations,
        } => {
            let overrides = Overrides {
                db,
                listen,
                allow_destination,
                allow_http_destinations,
            };
            let config = Config::load(config.as_deref(), overrides)?;
            serve(config).await
        }
        Command::Token { command } => token(command).await,
        Command::Check { path } => {
            let report = herald::storage::Store::check(&path)
                .with_context(|| format!("checking {}", path.display()))?;
            println!("{report}");
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let db = config.db.clone();
    tracing::info!(?config, "starting");
    let herald = Herald::open(config)?;
    bootstrap_token(&herald, &db).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, db = %db.display(), "Herald is listening: API at http://{}/api/v1", listener.local_addr()?);
    herald.serve(listener, shutdown_signal()).await?;
    tracing::info!("stopped cleanly");
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
    let path = PathBuf::from(format!("{}.admin-token", db.display()));
    write_private(&path, format!("{}\n", new.text).as_bytes())?;
    tracing::info!(file = %path.display(), "first start: an admin API token was written to this file");
    Ok(())
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)?;
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
