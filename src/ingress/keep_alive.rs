//! Keep-alive a pooled client can trust. When an HTTP/1 answer leaves the request body unread
//! (413 by declared length, 415, 401 before the body, 404, 405, the login guard's 429 and 503, a
//! timeout), hyper cannot tell where the next request on the connection would start and closes
//! it after the answer, without saying so. A client that pooled the connection then sends its
//! next request into a closing socket and sees a reset. So such an answer says
//! `Connection: close`, and the client opens a new connection instead.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use axum::{
    body::{Body, Bytes, HttpBody},
    extract::Request,
    http::{HeaderValue, Version, header},
    middleware::Next,
    response::Response,
};
use http_body::{Frame, SizeHint};

/// Around every route: marks an HTTP/1 answer `Connection: close` when the request had a body
/// that was not read to its end.
pub(super) async fn close_if_body_unread(req: Request, next: Next) -> Response {
    // HTTP/2 resets the one stream, never the connection; a body of exactly 0 bytes is read.
    let http1 = matches!(
        req.version(),
        Version::HTTP_09 | Version::HTTP_10 | Version::HTTP_11
    );
    if !http1 || req.body().size_hint().exact() == Some(0) {
        return next.run(req).await;
    }
    let read_to_end = Arc::new(AtomicBool::new(false));
    let req = req.map(|inner| {
        Body::new(Tracked {
            inner,
            read_to_end: read_to_end.clone(),
        })
    });
    let mut response = next.run(req).await;
    if !read_to_end.load(Ordering::Acquire) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A request body that records whether it was read to its end.
struct Tracked {
    inner: Body,
    read_to_end: Arc<AtomicBool>,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => self.inner.is_end_stream(),
            _ => false,
        };
        if ended {
            self.read_to_end.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{Router, routing::post};
    use tower::ServiceExt;

    fn router() -> Router {
        Router::new()
            .route(
                "/read",
                post(|body: Bytes| async move { body.len().to_string() }),
            )
            .route("/ignore", post(|| async { "ignored" }))
            .layer(axum::middleware::from_fn(close_if_body_unread))
    }

    async fn connection(path: &str, body: &'static str) -> Option<HeaderValue> {
        let req = Request::post(path).body(Body::from(body)).unwrap();
        let response = router().oneshot(req).await.unwrap();
        response.headers().get(header::CONNECTION).cloned()
    }

    #[tokio::test]
    async fn only_an_answer_that_left_a_body_unread_closes_the_connection() {
        assert_eq!(connection("/ignore", "unread").await.unwrap(), "close");
        assert_eq!(connection("/read", "read to its end").await, None);
        // Nothing to read, nothing left unread.
        assert_eq!(connection("/ignore", "").await, None);
    }

    #[tokio::test]
    async fn an_http2_answer_never_closes_the_connection() {
        let mut req = Request::post("/ignore").body(Body::from("unread")).unwrap();
        *req.version_mut() = Version::HTTP_2;
        let response = router().oneshot(req).await.unwrap();
        assert_eq!(response.headers().get(header::CONNECTION), None);
    }
}
