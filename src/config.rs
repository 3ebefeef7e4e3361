//! Herald's one configuration struct and how it is loaded.
//!
//! Layers, later ones winning: built-in defaults, an optional `herald.toml`, `HERALD_*`
//! environment variables, command-line flags. The result is validated once and passed
//! explicitly; nothing else in Herald reads the environment.
//!
//! Owns: every limit and its default, with the reason for it. Must never: hold secrets that
//! would be printed (the `Debug` output is safe to log).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Every setting of a running Herald. Field names are the `herald.toml` keys and, upper-cased
/// with a `HERALD_` prefix, the environment variables.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The database: a file path (an embedded redb file: queue, configuration and history in
    /// one file), or a `postgres://` URL (a PostgreSQL database several nodes may share).
    pub db: PathBuf,
    /// What this node does: `all` (the API, the dashboard and delivery), `api` (the API and
    /// the dashboard; delivery is left to other nodes) or `worker` (delivery and upkeep; its
    /// HTTP listener answers only health and metrics). Roles other than `all` make sense on a
    /// shared PostgreSQL database.
    pub role: Role,
    /// Address the API and dashboard listen on.
    pub listen: SocketAddr,
    /// CIDRs that delivery may reach even though they are loopback, private, link-local, ...
    pub allow_destination: Vec<IpNet>,
    /// Allow `http://` endpoint URLs (default: https only).
    pub allow_http_destinations: bool,
    /// PEM certificate chain for built-in HTTPS on `listen` (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for built-in HTTPS.
    pub tls_key: Option<PathBuf>,

    /// On a database several nodes share (PostgreSQL): how long a node's claim on a delivery
    /// lasts, in milliseconds, before another node may take it over: the bound on how late a
    /// dead node's deliveries are taken over. A claim never ends before its attempt's request
    /// timeout plus 5 s, so it never expires under an attempt still running.
    pub lease_ms: u64,
    /// On PostgreSQL: connections a node keeps for reads at most (dashboard pages, the API's
    /// lists, dispatch scans), beside its writer's own and one for claims. PostgreSQL's
    /// default `max_connections` (100) holds several nodes of the default size.
    pub db_pool_max: usize,

    /// Largest message payload accepted, in bytes. Svix allows about 1 MiB too.
    pub payload_max_bytes: usize,
    /// Largest request body of any other API call, in bytes.
    pub request_body_max_bytes: usize,
    /// How much of a receiver's response body is stored with each attempt.
    pub response_body_max_bytes: usize,
    /// Longest endpoint URL accepted.
    pub url_max_len: usize,
    /// Most custom headers one endpoint may carry: they are sent, and signed over, with every
    /// delivery.
    pub headers_per_endpoint_max: usize,
    /// Most endpoints one application may have: every ingest of the application routes over
    /// all of them (read once per writer batch), and each message may owe one delivery to
    /// each (a message's deliveries are numbered in 16 bits).
    pub endpoints_per_app_max: usize,
    /// Most triggers one application may have: every ingest evaluates them all.
    pub triggers_per_app_max: usize,
    /// Most deliveries made by hand (resend, recover, replay-missing) for one message; each is
    /// a row kept until retention, and a message's deliveries are numbered in 16 bits.
    pub resends_per_message_max: usize,
    /// Background tasks (recover, replay-missing) one application may have running at once:
    /// each holds a runner that takes writer time, chunk after chunk.
    pub tasks_running_per_app_max: usize,
    /// Background tasks kept per application to be read back; the oldest finished ones make
    /// room for new ones.
    pub tasks_kept_per_app_max: usize,
    /// Messages one chunk of a background task queues at most: one writer job each, so it
    /// holds the writer (and whatever other tenants' jobs share its batch) for about as long as
    /// that many message creates. 50 kept another tenant's create p99 under 50 ms during a
    /// 20 000-message recover and replay in a debug build (`tests/bulk.rs`); 200 did not, and
    /// finished no sooner.
    pub task_chunk_max: usize,
    /// Writer time one chunk of a background task may take, in milliseconds; the chunk stops
    /// there (its cursor says where) and the rest waits for the next one. Bounds what other
    /// tenants' creates in the same batch wait, however large the history or slow the disk.
    pub task_chunk_budget_ms: u64,
    /// Largest page a list call may ask for (Svix: 250).
    pub page_limit_max: usize,

    /// Largest string, list or map one template, condition or unique key may build while it
    /// is evaluated (default: `payload_max_bytes`). A tenant's template that would build more is
    /// stopped: refused when its trigger is saved if the event type's example shows it, else its
    /// attempt fails with the reason.
    pub template_value_max_bytes: Option<usize>,
    /// Largest body a template may render (default: `payload_max_bytes`).
    pub template_output_max_bytes: Option<usize>,
    /// All one evaluation may build together (default: 8 x `payload_max_bytes`), so a loop of
    /// values each under the value bound cannot add up to gigabytes.
    pub template_memory_max_bytes: Option<usize>,
    /// Wall-clock time one template render may take: previews, trigger saves, deliveries.
    pub template_render_ms: u64,
    /// Time the conditions and unique keys of all the triggers matching one new message may
    /// take together while it is stored. They run in the writer, which every tenant's writes
    /// wait for, so this is kept small; a condition stopped by it counts as false.
    pub routing_budget_ms: u64,
    /// Writer time one application's triggers may take per second, summed over its messages
    /// (saved up to two messages' `routing_budget_ms`); past it, that application's message
    /// creates answer 429 until it has earned more, so a tenant sending many messages with
    /// costly triggers delays only itself.
    pub routing_share_ms: u64,
    /// Trigger previews and trigger saves (which render against the event type's example)
    /// evaluated at once; more wait. They run off the API's workers.
    pub template_previews_max: usize,

    /// Deliveries being attempted at once, across all endpoints.
    pub deliveries_in_flight_max: usize,
    /// Deliveries being attempted at once against one endpoint (unless the endpoint sets its
    /// own), so a slow receiver cannot take every worker. 64: one endpoint answering fast
    /// takes a burst at full speed (16 cost a fifth of a one-endpoint burst's deliveries/s).
    /// An endpoint reaches it only through successes: it starts at 4 in flight, one more per
    /// success, so one hanging from the start holds 4 of the 512 slots, and its timeouts
    /// shrink it to one (see `delivery/pacing.rs`).
    pub endpoint_concurrency_max: usize,
    /// TCP connect timeout of a delivery attempt.
    pub connect_timeout_ms: u64,
    /// Whole-request timeout of a delivery attempt (Svix: 15 s).
    pub request_timeout_ms: u64,
    /// Delays before the 2nd, 3rd, ... attempt. Its length + 1 is the attempt count.
    pub retry_schedule_ms: Vec<u64>,
    /// Random spread applied to each retry delay, in percent either way.
    pub retry_jitter_percent: u8,
    /// Longest `Retry-After` from a receiver that Herald honours.
    pub retry_after_max_ms: u64,
    /// Timeouts or connection failures in a row that pause an endpoint as a whole (1 s, then
    /// doubling up to 5 min; see `delivery/pacing.rs`). 0: a run of failures never pauses
    /// (a 429 or 503 with `Retry-After` still does).
    pub endpoint_failures_to_pause: u32,
    /// An endpoint whose deliveries keep failing this long is disabled (Svix: 5 days).
    pub auto_disable_after_ms: u64,
    /// Extra CA certificates (PEM) that delivery trusts besides the public roots, for
    /// receivers behind a private CA.
    pub destination_ca_file: Option<PathBuf>,
    /// Where operational webhooks (`message.attempt.exhausted`, `endpoint.disabled`) go;
    /// none when unset.
    pub operational_webhook_url: Option<String>,
    /// The `whsec_...` secret that signs operational webhooks (required with the URL).
    pub operational_webhook_secret: Option<Redacted>,

    /// Memory redb may use to cache database pages. Bounds Herald's memory however large the
    /// file grows (redb's own default, 1 GiB, would let it creep up for hours).
    pub db_cache_bytes: usize,
    /// Most write requests folded into one redb transaction (one fsync).
    pub writer_batch_max: usize,
    /// Write requests waiting for the writer before callers wait for room.
    pub writer_queue_max: usize,

    /// Default payload retention of a message, in days (Svix: 90).
    pub retention_days: u16,
    /// How long an Idempotency-Key's first answer is replayed (Svix: 12 h). A message create's
    /// answer is its message, so it is replayed no longer than the message is kept.
    pub idempotency_ttl_ms: u64,
    /// Largest answer remembered for an Idempotency-Key; a larger one is answered but not kept,
    /// so a retry with that key runs again. A message create's answer is remembered by
    /// reference to its message, whatever its size.
    pub idempotency_body_max_bytes: usize,
    /// How long graceful shutdown waits for attempts in flight.
    pub shutdown_grace_ms: u64,

    /// The address people reach Herald at (e.g. `https://herald.example.com`), used in the
    /// setup link, in tenant portal links and in the dashboard's examples; default
    /// `http://{listen}` (never a request's `Host` header, which any client chooses). An
    /// `https` address also marks the dashboard's cookies `Secure`.
    pub public_url: Option<String>,
    /// How long a dashboard login lasts.
    pub session_ttl_ms: u64,
    /// Login attempts allowed per minute, per username and per client address; more are
    /// refused until the minute has passed.
    pub login_attempts_per_minute: u32,
    /// How long a tenant portal link works when the API call gives no `expiry` (seconds).
    pub portal_link_expiry_default_s: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            db: PathBuf::from("herald.redb"),
            role: Role::All,
            lease_ms: 30_000,
            db_pool_max: 16,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            allow_destination: Vec::new(),
            allow_http_destinations: false,
            tls_cert: None,
            tls_key: None,
            payload_max_bytes: 1024 * 1024,
            request_body_max_bytes: 256 * 1024,
            response_body_max_bytes: 16 * 1024,
            url_max_len: 65_536,
            headers_per_endpoint_max: 32,
            endpoints_per_app_max: 1_000,
            triggers_per_app_max: 200,
            resends_per_message_max: 1_000,
            tasks_running_per_app_max: 4,
            tasks_kept_per_app_max: 100,
            task_chunk_max: 50,
            task_chunk_budget_ms: 5,
            page_limit_max: 250,
            template_value_max_bytes: None,
            template_output_max_bytes: None,
            template_memory_max_bytes: None,
            template_render_ms: 100,
            routing_budget_ms: 10,
            routing_share_ms: 100,
            template_previews_max: 2,
            deliveries_in_flight_max: 512,
            endpoint_concurrency_max: 64,
            connect_timeout_ms: 5_000,
            request_timeout_ms: 15_000,
            // Svix's schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (8 attempts).
            retry_schedule_ms: vec![
                5_000,
                5 * 60_000,
                30 * 60_000,
                2 * 3_600_000,
                5 * 3_600_000,
                10 * 3_600_000,
                10 * 3_600_000,
            ],
            retry_jitter_percent: 20,
            retry_after_max_ms: 3_600_000,
            endpoint_failures_to_pause: 3,
            auto_disable_after_ms: 5 * 24 * 3_600_000,
            destination_ca_file: None,
            operational_webhook_url: None,
            operational_webhook_secret: None,
            db_cache_bytes: 16 * 1024 * 1024,
            writer_batch_max: 512,
            writer_queue_max: 8_192,
            retention_days: 90,
            idempotency_ttl_ms: 12 * 3_600_000,
            idempotency_body_max_bytes: 1024 * 1024,
            shutdown_grace_ms: 10_000,
            public_url: None,
            session_ttl_ms: 12 * 3_600_000,
            login_attempts_per_minute: 5,
            portal_link_expiry_default_s: 3_600,
        }
    }
}

/// A secret setting: read like a string, never printed by `Debug` (the configuration is
/// logged at start-up).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Redacted(pub String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration: {0}")]
    Invalid(String),
}

/// What a node runs (`Config::role`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    All,
    Api,
    Worker,
}

impl Role {
    /// Whether this node serves the API and the dashboard.
    pub fn serves_api(self) -> bool {
        self != Role::Worker
    }

    /// Whether this node delivers (scheduler, attempts, background tasks, upkeep).
    pub fn delivers(self) -> bool {
        self != Role::Api
    }
}

/// Values given on the command line; `None` leaves the lower layers' value.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_destination: Vec<IpNet>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_http_destinations: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

impl Config {
    /// Loads the layers: defaults, the TOML file (`file`, or `./herald.toml` when present),
    /// `HERALD_*` variables, then `overrides`.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => {
                if !path.exists() {
                    return Err(ConfigError::Invalid(format!(
                        "config file {} does not exist",
                        path.display()
                    )));
                }
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("herald.toml")),
        }
        // Lists from the environment are comma-separated: HERALD_ALLOW_DESTINATION=127.0.0.0/8,::1/128
        // Only HERALD_<setting> variables are read; others with the prefix (HERALD_LOG, or a
        // deployment's own) are not settings and must not stop the server from starting.
        let known: Vec<String> = match serde_json::to_value(Config::default()) {
            Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        };
        let env = Env::prefixed("HERALD_")
            .map(|k| k.as_str().to_ascii_lowercase().into())
            .filter(move |k| known.iter().any(|n| n == k.as_str()));
        figment = figment.merge(env);
        if let Ok(list) = std::env::var("HERALD_ALLOW_DESTINATION") {
            let nets: Vec<&str> = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            figment = figment.merge(Serialized::default("allow_destination", nets));
        }
        figment = figment.merge(Serialized::defaults(overrides));
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// The bounds of one template evaluation, from the `template_*` settings.
    pub fn template_limits(&self) -> crate::routing::template::Limits {
        crate::routing::template::Limits {
            value_max_bytes: self
                .template_value_max_bytes
                .unwrap_or(self.payload_max_bytes),
            output_max_bytes: self
                .template_output_max_bytes
                .unwrap_or(self.payload_max_bytes),
            memory_max_bytes: self
                .template_memory_max_bytes
                .unwrap_or(self.payload_max_bytes.saturating_mul(8)),
            render_ms: self.template_render_ms,
        }
    }

    /// Checks relations between settings that types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        refuse_db_url(&self.db)?;
        let positive = [
            ("payload_max_bytes", self.payload_max_bytes),
            ("request_body_max_bytes", self.request_body_max_bytes),
            ("page_limit_max", self.page_limit_max),
            ("deliveries_in_flight_max", self.deliveries_in_flight_max),
            ("endpoint_concurrency_max", self.endpoint_concurrency_max),
            ("writer_batch_max", self.writer_batch_max),
            ("writer_queue_max", self.writer_queue_max),
            ("headers_per_endpoint_max", self.headers_per_endpoint_max),
            ("template_previews_max", self.template_previews_max),
            ("template_render_ms", self.template_render_ms as usize),
            ("endpoints_per_app_max", self.endpoints_per_app_max),
            ("tasks_running_per_app_max", self.tasks_running_per_app_max),
            ("tasks_kept_per_app_max", self.tasks_kept_per_app_max),
            ("task_chunk_max", self.task_chunk_max),
            (
                "login_attempts_per_minute",
                self.login_attempts_per_minute as usize,
            ),
        ];
        if self.session_ttl_ms < 60_000 {
            return Err(ConfigError::Invalid(
                "session_ttl_ms must be at least 60000".into(),
            ));
        }
        if !(60..=604_800).contains(&self.portal_link_expiry_default_s) {
            return Err(ConfigError::Invalid(
                "portal_link_expiry_default_s must be 60 to 604800".into(),
            ));
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid(
                "public_url must start with http:// or https://".into(),
            ));
        }
        for (name, value) in positive {
            if value == 0 {
                return Err(ConfigError::Invalid(format!("{name} must be at least 1")));
            }
        }
        // Routing makes at most one delivery per endpoint and per trigger; the rest of a
        // message's 65 536 delivery numbers are for manual ones.
        if self.endpoints_per_app_max + self.triggers_per_app_max + self.resends_per_message_max
            > u16::MAX as usize
        {
            return Err(ConfigError::Invalid(
                "endpoints_per_app_max + triggers_per_app_max + resends_per_message_max must be at most 65535"
                    .into(),
            ));
        }
        if self.tasks_kept_per_app_max < self.tasks_running_per_app_max {
            return Err(ConfigError::Invalid(
                "tasks_kept_per_app_max must be at least tasks_running_per_app_max".into(),
            ));
        }
        if self.retry_jitter_percent > 100 {
            return Err(ConfigError::Invalid(
                "retry_jitter_percent must be 0..=100".into(),
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "tls_cert and tls_key go together".into(),
            ));
        }
        if self.operational_webhook_url.is_some() {
            match &self.operational_webhook_secret {
                None => {
                    return Err(ConfigError::Invalid(
                        "operational_webhook_url needs operational_webhook_secret".into(),
                    ));
                }
                Some(s) if crate::signing::parse_secret(&s.0).is_err() => {
                    return Err(ConfigError::Invalid(
                        "operational_webhook_secret must be whsec_ and base64 of 24 to 75 bytes"
                            .into(),
                    ));
                }
                Some(_) => {}
            }
        }
        if self.retention_days == 0 {
            return Err(ConfigError::Invalid(
                "retention_days must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Attempts a delivery gets in all: the first plus one per retry delay.
    pub fn attempts_max(&self) -> u32 {
        self.retry_schedule_ms.len() as u32 + 1
    }
}

/// Refuses a database URL Herald does not speak, naming it without its password: `db` is a
/// file path (redb) or a `postgres://` / `postgresql://` URL. Any other URL taken for a path
/// would fail further on with errors that print it whole, password included.
pub fn refuse_db_url(db: &Path) -> Result<(), ConfigError> {
    let text = db.to_string_lossy();
    let is_url = text.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    if !is_url || crate::storage::postgres_url(db).is_some() {
        return Ok(());
    }
    Err(ConfigError::Invalid(format!(
        "db: {} is a database URL Herald does not speak: give a file path (redb) or a postgres:// URL",
        redact_url(&text)
    )))
}

/// The database as it may be shown in a log line or an error: a URL without its password.
pub fn shown_db(db: &Path) -> String {
    redact_url(&db.to_string_lossy())
}

/// A URL as it may be shown: the password of its user part, and its query (where a password
/// may be given too), replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, _)) => format!("{path}?***"),
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_herald_does_not_speak_is_refused_and_shown_without_its_password() {
        assert_eq!(
            redact_url(
                "postgres://herald:s3cret@db.internal:5432/herald?sslmode=require&password=x"
            ),
            "postgres://herald:***@db.internal:5432/herald?***"
        );
        assert_eq!(redact_url("postgres://db/h"), "postgres://db/h");
        let refused = refuse_db_url(Path::new("mysql://u:pw@h/d")).unwrap_err();
        assert!(
            refused.to_string().contains("mysql://u:***@h/d"),
            "{refused}"
        );
        assert!(!refused.to_string().contains("pw"), "{refused}");
        for path in [
            "herald.redb",
            "/var/lib/herald/h.redb",
            "./a:b/c.redb",
            "postgres://u:pw@h/d",
            "postgresql://h/d",
        ] {
            assert!(refuse_db_url(Path::new(path)).is_ok(), "{path}");
        }
    }

    #[test]
    fn defaults_are_valid_and_match_the_design() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.attempts_max(), 8);
        assert_eq!(c.response_body_max_bytes, 16 * 1024);
        assert_eq!(c.deliveries_in_flight_max, 512);
    }

    #[test]
    fn overrides_win_over_a_file() {
        // In a Jail: environment variables set by another test must not leak in.
        figment::Jail::expect_with(|_| {
            overrides_win_over_a_file_inner();
            Ok(())
        });
    }

    fn overrides_win_over_a_file_inner() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("h.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\npage_limit_max = 100\n").unwrap();
        let c = Config::load(
            Some(&file),
            Overrides {
                listen: Some("127.0.0.1:9001".parse().unwrap()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9001);
        assert_eq!(c.page_limit_max, 100);
    }

    #[test]
    fn the_example_file_lists_valid_settings_with_their_defaults() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("herald.example.toml");
        let c = Config::load(Some(&file), Overrides::default()).unwrap();
        let d = Config::default();
        assert_eq!(c.retry_schedule_ms, d.retry_schedule_ms);
        assert_eq!(c.payload_max_bytes, d.payload_max_bytes);
        assert_eq!(c.idempotency_body_max_bytes, d.idempotency_body_max_bytes);
        assert_eq!(c.listen, d.listen);
        assert_eq!(
            (c.role, c.lease_ms, c.db_pool_max),
            (d.role, d.lease_ms, d.db_pool_max)
        );
    }

    #[test]
    fn environment_variables_set_settings_and_others_are_ignored() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("HERALD_PAGE_LIMIT_MAX", "7");
            jail.set_env("HERALD_ALLOW_DESTINATION", "127.0.0.0/8, 10.0.0.0/8");
            jail.set_env("HERALD_BIN", "/usr/bin/herald"); // not a setting
            let c = Config::load(None, Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(c.page_limit_max, 7);
            assert_eq!(c.allow_destination.len(), 2);
            let flags = Overrides {
                allow_destination: vec!["::1/128".parse().unwrap()],
                ..Default::default()
            };
            let c = Config::load(None, flags).map_err(|e| e.to_string())?;
            assert_eq!(
                c.allow_destination.len(),
                1,
                "flags win over the environment"
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("h.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:9000\"\n").unwrap();
        assert!(Config::load(Some(&file), Overrides::default()).is_err());
    }
}
