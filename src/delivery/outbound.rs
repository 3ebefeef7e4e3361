//! Outbound requests to endpoints: the signed POST that deliveries, endpoint tests and the
//! verification handshake all send, with the endpoint's options applied (custom headers,
//! basic auth, client certificate, timeout).
//!
//! Owns: the shared keep-alive client and one cached client per endpoint that presents a
//! client certificate. Must never: put a secret in a log line or an error text.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use super::client::{ClientExtras, HttpClient, Sent};
use crate::config::Config;
use crate::guard::DestinationPolicy;
use crate::model::{AttemptError, Endpoint, EndpointId, Micros, now_micros};
use crate::signing;

/// Most per-endpoint clients kept (endpoints with a client certificate); beyond it the cache
/// is cleared and refilled, which only costs new connections.
const CERT_CLIENTS_MAX: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("destination CA file {0}: {1}")]
    CaFile(String, String),
}

pub struct Outbound {
    default: HttpClient,
    policy: Arc<DestinationPolicy>,
    roots: Vec<reqwest::Certificate>,
    connect_timeout: Duration,
    request_timeout: Duration,
    response_body_max: usize,
    /// Endpoint -> (its `updated_at` when built, client presenting its certificate).
    cert_clients: Mutex<HashMap<EndpointId, (Micros, HttpClient)>>,
}

impl Outbound {
    pub fn new(config: &Config) -> Result<Outbound, OutboundError> {
        let policy = Arc::new(DestinationPolicy {
            allow: config.allow_destination.clone(),
            allow_http: config.allow_http_destinations,
        });
        let mut roots = Vec::new();
        if let Some(path) = &config.destination_ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| OutboundError::CaFile(path.display().to_string(), e.to_string()))?;
            roots = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| OutboundError::CaFile(path.display().to_string(), e.to_string()))?;
        }
        let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
        let default = HttpClient::new(
            policy.clone(),
            connect_timeout,
            config.response_body_max_bytes,
            ClientExtras {
                roots: roots.clone(),
                identity: None,
            },
        )?;
        Ok(Outbound {
            default,
            policy,
            roots,
            connect_timeout,
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            response_body_max: config.response_body_max_bytes,
            cert_clients: Mutex::new(HashMap::new()),
        })
    }

    pub fn policy(&self) -> &DestinationPolicy {
        &self.policy
    }

    /// The client for an endpoint: the shared one, or one presenting its client certificate.
    fn client_for(&self, ep: &Endpoint) -> Result<HttpClient, String> {
        let Some(cert) = &ep.options.client_cert else {
            return Ok(self.default.clone());
        };
        let mut cache = self.cert_clients.lock().expect("not poisoned");
        if let Some((built_at, client)) = cache.get(&ep.id)
            && *built_at == ep.updated_at
        {
            return Ok(client.clone());
        }
        let pem = format!("{}\n{}\n", cert.cert_pem.trim(), cert.key_pem.trim());
        let identity = reqwest::Identity::from_pem(pem.as_bytes())
            .map_err(|_| "the client certificate or key does not parse".to_string())?;
        let client = HttpClient::new(
            self.policy.clone(),
            self.connect_timeout,
            self.response_body_max,
            ClientExtras {
                roots: self.roots.clone(),
                identity: Some(identity),
            },
        )
        .map_err(|e| format!("cannot build a client for the certificate: {e}"))?;
        if cache.len() >= CERT_CLIENTS_MAX {
            cache.clear();
        }
        cache.insert(ep.id, (ep.updated_at, client.clone()));
        Ok(client)
    }

    /// Signs `body` as message `msg_id` with every live key of the endpoint and POSTs it with
    /// the endpoint's headers, auth and timeout. Never fails: every outcome is in `Sent`.
    pub async fn send(
        &self,
        ep: &Endpoint,
        msg_id: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Sent {
        let timestamp = chrono::Utc::now().timestamp();
        let signature =
            signing::signature_header(ep.live_keys(now_micros()), msg_id, timestamp, &body);
        let mut headers = HeaderMap::with_capacity(5 + ep.headers.len());
        // Custom headers first, so Herald's own cannot be overridden by them.
        for (name, value) in &ep.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) {
                headers.insert(n, v);
            }
        }
        if let Some(auth) = &ep.options.basic_auth {
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", auth.username, auth.password));
            if let Ok(mut v) = HeaderValue::try_from(format!("Basic {token}")) {
                v.set_sensitive(true);
                headers.insert(AUTHORIZATION, v);
            }
        }
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::try_from(content_type)
                .unwrap_or(HeaderValue::from_static("application/json")),
        );
        headers.insert(
            "webhook-id",
            HeaderValue::try_from(msg_id).unwrap_or(HeaderValue::from_static("")),
        );
        headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
        headers.insert(
            "webhook-signature",
            HeaderValue::try_from(signature).expect("signatures are base64"),
        );
        let timeout = ep
            .options
            .timeout_ms
            .map_or(self.request_timeout, Duration::from_millis);
        match self.client_for(ep) {
            Ok(client) => client.post(&ep.url, headers, body, timeout).await,
            Err(reason) => Sent {
                status_code: 0,
                duration_ms: 0,
                error: Some(AttemptError::Tls),
                response: reason,
                retry_after: None,
            },
        }
    }
}
