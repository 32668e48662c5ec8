//! The ingress's defences against hostile traffic, in front of the handlers:
//! - per-client-IP limiting of login attempts (`WXLOGIN_CLIENT_QUOTA`): junk costs nothing
//!   upstream (it is refused before any publish), but plausible-looking codes do spend the
//!   app's WeChat quota, so one address must not be able to send them without end;
//! - a bound on logins in flight in this process (`WXLOGIN_MAX_INFLIGHT_LOGINS`): past it, a
//!   login is answered 503 at once rather than queued behind thousands of waiting ones;
//! - a deadline on reading the request body (slow bodies) and on the whole request;
//! - JSON answers for unknown paths and wrong methods, like every other error.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderValue, Uri, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use governor::{
    Quota as GovernorQuota, RateLimiter,
    clock::{Clock, DefaultClock},
    state::keyed::DefaultKeyedStateStore,
};
use tokio::sync::Semaphore;

use super::{
    Ingress,
    client_ip::{self, TrustedProxies},
    error::{self, ApiError},
};
use crate::{quota::Quota, settings::Settings};

/// Every limit the ingress applies to what clients send.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// The whole body must have arrived this long after the request started.
    pub body_timeout: Duration,
    /// The whole request, answer included (a login takes at most its body, a publish and
    /// `login_wait`: the settings refuse a shorter timeout).
    pub request_timeout: Duration,
    /// Login attempts per client address; `None`: no per-client limit.
    pub client_quota: Option<Quota>,
    pub trusted_proxies: TrustedProxies,
    pub max_inflight_logins: usize,
}

impl Limits {
    pub fn from_settings(s: &Settings) -> Self {
        Limits {
            max_body_bytes: s.max_body_bytes,
            body_timeout: Duration::from_millis(s.body_timeout_ms),
            request_timeout: Duration::from_millis(s.request_timeout_ms),
            client_quota: s.client_quota,
            trusted_proxies: s.trusted_proxies.clone(),
            max_inflight_logins: s.max_inflight_logins,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from_settings(&Settings::default())
    }
}

type KeyedLimiter = RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>;

/// Forget idle client addresses every this many checks, so the limiter's memory stays bounded
/// by the number of recently active clients.
const SWEEP_EVERY: u64 = 4096;

pub struct Guard {
    pub limits: Limits,
    per_client: Option<KeyedLimiter>,
    inflight: Arc<Semaphore>,
    checks: AtomicU64,
    warned_no_peer: AtomicBool,
}

impl Guard {
    pub fn new(limits: Limits) -> Self {
        // A client may use its whole quota at once, then one attempt every window/N: friendlier
        // to a user retrying than a burst of 1, and still N per window on average.
        let per_client = limits.client_quota.and_then(|q| {
            let burst = std::num::NonZeroU32::new(q.calls)?;
            GovernorQuota::with_period((q.window / q.calls).max(Duration::from_nanos(1)))
                .map(|g| RateLimiter::keyed(g.allow_burst(burst)))
        });
        Guard {
            inflight: Arc::new(Semaphore::new(limits.max_inflight_logins)),
            per_client,
            limits,
            checks: AtomicU64::new(0),
            warned_no_peer: AtomicBool::new(false),
        }
    }

    /// `Err(wait)` when this client has used up its quota.
    fn check_client(&self, client: IpAddr) -> Result<(), Duration> {
        let Some(limiter) = &self.per_client else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        limiter
            .check_key(&client_ip::limit_key(client))
            .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
    }
}

/// In front of `POST /v1/login` and `GET /v1/login/{ticket}` (a poll costs NATS reads like a
/// login): the per-client quota, then the in-flight bound.
pub async fn login_guard(
    State(ingress): State<Arc<Ingress>>,
    req: Request,
    next: Next,
) -> Response {
    let guard = &ingress.guard;
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    match peer {
        Some(peer) => {
            let client = client_ip::client_ip(peer, req.headers(), &guard.limits.trusted_proxies);
            if let Err(wait) = guard.check_client(client) {
                return too_many_attempts(wait);
            }
        }
        None if guard.per_client.is_some()
            && !guard.warned_no_peer.swap(true, Ordering::Relaxed) =>
        {
            tracing::error!(
                "client_quota is set but the server gives no peer address: serve the router with connect info"
            );
        }
        None => {}
    }
    let Ok(permit) = guard.inflight.clone().try_acquire_owned() else {
        tracing::debug!("login refused: too many logins in flight");
        let mut r = error::OVERLOADED.into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    let response = next.run(req).await;
    drop(permit);
    response
}

fn too_many_attempts(wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut r = error::TOO_MANY_ATTEMPTS.into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    r
}

/// The whole request within `request_timeout`. (tower-http's `TimeoutLayer` would answer with
/// an empty body; every error of this API is JSON.)
pub async fn request_deadline(
    State(ingress): State<Arc<Ingress>>,
    req: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(ingress.guard.limits.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!("request cut at the request timeout");
            error::REQUEST_TIMEOUT.into_response()
        }
    }
}

/// Unknown path.
pub async fn not_found() -> ApiError {
    error::NOT_FOUND
}

/// The paths served by POST, read from the one list of routes (through the OpenAPI document it
/// makes); every other known path is served by GET.
static POST_PATHS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    let document = super::openapi::document();
    let posts = document.paths.paths.into_iter();
    posts
        .filter(|(_, item)| item.post.is_some())
        .map(|(path, _)| path)
        .collect()
});

/// Known path, wrong method: says which method the path takes.
pub async fn method_not_allowed(uri: Uri) -> ApiError {
    if POST_PATHS.iter().any(|p| p == uri.path()) {
        error::REQUIRES_POST
    } else {
        error::REQUIRES_GET
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_post_paths_are_read_from_the_routes() {
        assert_eq!(
            *POST_PATHS,
            ["/v1/login", "/v1/logout", "/v1/decrypt", "/v1/phone"]
        );
    }

    fn guard(quota: &str) -> Guard {
        Guard::new(Limits {
            client_quota: Some(quota.parse().unwrap()),
            ..Limits::default()
        })
    }

    #[test]
    fn a_client_gets_its_quota_then_a_wait_and_others_are_unaffected() {
        let g = guard("3/60s");
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        let b: IpAddr = "203.0.113.2".parse().unwrap();
        for _ in 0..3 {
            assert!(g.check_client(a).is_ok());
        }
        let wait = g.check_client(a).unwrap_err();
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(g.check_client(b).is_ok());
    }

    #[test]
    fn without_a_client_quota_nobody_is_limited() {
        let g = Guard::new(Limits::default());
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        for _ in 0..10_000 {
            assert!(g.check_client(a).is_ok());
        }
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        let r = too_many_attempts(Duration::from_millis(1500));
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        let r = too_many_attempts(Duration::from_millis(1));
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    }
}
