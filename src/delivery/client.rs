//! The outbound HTTP client: one pooled reqwest client behind the SSRF guard, and the
//! classification of what happened to a request.
//!
//! Owns: connection reuse, timeouts, response-body capping, error kinds. Must never: follow
//! redirects (a 3xx is an answer, not a hop to an unchecked address), or resolve a name other
//! than through `GuardedResolver`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use url::Url;

use crate::guard::{Blocked, BlockedDestination, DestinationPolicy, DnsFailure, GuardedResolver};
use crate::model::AttemptError;

#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    policy: Arc<DestinationPolicy>,
    response_body_max: usize,
}

/// What one request came to.
#[derive(Debug)]
pub struct Sent {
    pub status_code: u16,
    pub duration_ms: u64,
    pub error: Option<AttemptError>,
    /// Response body (capped), or the error described.
    pub response: String,
    pub retry_after: Option<String>,
}

/// What a client needs beyond the defaults.
#[derive(Clone, Default)]
pub struct ClientExtras {
    /// CA certificates trusted besides the public roots.
    pub roots: Vec<reqwest::Certificate>,
    /// A client certificate and key presented in the TLS handshake.
    pub identity: Option<reqwest::Identity>,
}

impl HttpClient {
    pub fn new(
        policy: Arc<DestinationPolicy>,
        connect_timeout: Duration,
        response_body_max: usize,
        extras: ClientExtras,
    ) -> Result<HttpClient, reqwest::Error> {
        let mut builder = reqwest::Client::builder();
        for root in extras.roots {
            builder = builder.add_root_certificate(root);
        }
        if let Some(identity) = extras.identity {
            builder = builder.identity(identity);
        }
        let client = builder
            .dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
            }))
            .connect_timeout(connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Herald/", env!("CARGO_PKG_VERSION")))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .no_proxy()
            .build()?;
        Ok(HttpClient {
            client,
            policy,
            response_body_max,
        })
    }

    pub fn policy(&self) -> &DestinationPolicy {
        &self.policy
    }

    /// POSTs `body` to `url`. Never fails: every outcome is described in `Sent`.
    pub async fn post(
        &self,
        url: &str,
        headers: HeaderMap,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Sent {
        let started = Instant::now();
        let failed = |error: AttemptError, text: String| Sent {
            status_code: 0,
            duration_ms: started.elapsed().as_millis() as u64,
            error: Some(error),
            response: text,
            retry_after: None,
        };
        let parsed = match Url::parse(url) {
            Ok(u) => u,
            Err(e) => return failed(AttemptError::Request, format!("invalid URL: {e}")),
        };
        if let Err(blocked) = self.policy.check_url(&parsed) {
            let kind = match blocked {
                Blocked::Scheme => AttemptError::BlockedScheme,
                _ => AttemptError::BlockedAddress,
            };
            return failed(kind, blocked.to_string());
        }
        let request = self
            .client
            .post(parsed)
            .headers(headers)
            .body(body)
            .timeout(timeout);
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let (kind, text) = classify(&e);
                return failed(kind, text);
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        let mut body_error = None;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = self.response_body_max - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if body.len() >= self.response_body_max {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    body_error = Some(classify(&e));
                    break;
                }
            }
        }
        let duration_ms = started.elapsed().as_millis() as u64;
        let text = String::from_utf8_lossy(&body).into_owned();
        // A 2xx whose body then timed out still counts as delivered: the receiver answered.
        let error = if status.is_success() {
            None
        } else if let Some((kind, _)) = body_error.filter(|(k, _)| *k == AttemptError::Timeout) {
            Some(kind)
        } else {
            Some(AttemptError::Status)
        };
        Sent {
            status_code: status.as_u16(),
            duration_ms,
            error,
            response: text,
            retry_after,
        }
    }
}

/// Names what went wrong with a request that got no answer.
fn classify(e: &reqwest::Error) -> (AttemptError, String) {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(b) = s.downcast_ref::<BlockedDestination>() {
            return (AttemptError::BlockedAddress, b.to_string());
        }
        if let Some(d) = s.downcast_ref::<DnsFailure>() {
            return (AttemptError::Dns, d.to_string());
        }
        source = s.source();
    }
    if e.is_timeout() {
        return (AttemptError::Timeout, "timed out".into());
    }
    let text = error_chain(e);
    let lower = text.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
        (AttemptError::Tls, text)
    } else {
        (AttemptError::Connect, text)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
