//! Answers given before their request's body was read to its end say `Connection: close`: a
//! 401 from the authentication middleware, a 413 over the body limit, a dashboard form refused
//! for want of a session, a replayed Idempotency-Key, a 404, and any such answer added later.
//!
//! hyper sees only after it has written such an answer that the body was left unread, and
//! then closes the connection rather than read on; without the header a keep-alive client
//! (aiohttp, the Svix SDKs' pools) sends its next request into a connection being closed, and
//! that request fails. Closing, rather than draining the body to keep the connection, because
//! a refused body is one Herald chose not to take (too large, unauthenticated, shed): reading
//! it anyway would spend what the refusal saves.
//!
//! Owns: that header. Must never: read a body itself, or decide anything about a request.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderValue, Version, header};
use axum::middleware::Next;
use axum::response::Response;

/// The middleware: wraps the body to learn whether it was read to its end.
pub async fn close_if_unread(req: Request, next: Next) -> Response {
    // HTTP/2 closes nothing for an unread body (the stream is reset, not the connection) and
    // forbids the header; a request without a body has nothing left unread.
    if req.version() >= Version::HTTP_2 || req.body().is_end_stream() {
        return next.run(req).await;
    }
    let ended = Arc::new(AtomicBool::new(false));
    let watched = ended.clone();
    let req = req.map(|inner| {
        Body::new(Watched {
            inner,
            ended: watched,
        })
    });
    let mut response = next.run(req).await;
    if !ended.load(Ordering::Relaxed) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A request body that records when it has been read to its end.
struct Watched {
    inner: Body,
    ended: Arc<AtomicBool>,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.ended.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
