//! [`WechatClient`]: the code2Session HTTP call, and the transport every WeChat call shares
//! (body cap, transport errors reduced to [`RetryReason`]s, redaction; used by `super::api`).
//!
//! The request URL carries the AppSecret, so it is built only by reqwest's `.query()` and never
//! shown: transport errors are mapped to [`RetryReason`]s here and logged without their URL.
//! TLS verification cannot be turned off; private deployments add a root CA instead.

use std::{fmt, sync::Arc, time::Duration};

use reqwest::{Url, redirect};
use secrecy::{ExposeSecret, SecretString};

use super::{
    Session,
    api::ApiUrls,
    error::{ClientBuildError, ExchangeError, RetryReason},
    parse::parse_answer,
};

pub const DEFAULT_BASE_URL: &str = "https://api.weixin.qq.com";
/// Real answers are a few hundred bytes; anything this big is not WeChat talking.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
const ENDPOINT_PATH: &str = "sns/jscode2session";
/// The name of code2Session in logs.
const CODE2SESSION: &str = "code2Session";

/// How to reach WeChat.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Scheme, host and optional path prefix; `/sns/jscode2session` is appended.
    pub base_url: String,
    /// DNS + TCP + TLS.
    pub connect_timeout: Duration,
    /// The whole call, from connecting to the last byte of the body.
    pub request_timeout: Duration,
    /// PEM root certificate(s) trusted in addition to the system's, for private deployments.
    /// There is deliberately no switch that disables verification: without it anyone on the
    /// path can read the AppSecret and forge openids.
    pub extra_root_ca_pem: Option<Vec<u8>>,
    pub max_idle_per_host: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            base_url: DEFAULT_BASE_URL.to_owned(),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            extra_root_ca_pem: None,
            max_idle_per_host: 64,
        }
    }
}

/// A code2Session client; cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct WechatClient {
    pub(super) http: reqwest::Client,
    endpoint: Url,
    /// The access-token APIs' URLs (`super::api`), shared by the clones.
    pub(super) api: Arc<ApiUrls>,
    connect_timeout: Duration,
}

impl fmt::Debug for WechatClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WechatClient")
            .field("endpoint", &self.endpoint.as_str())
            .finish_non_exhaustive()
    }
}

impl WechatClient {
    pub fn new(options: ClientOptions) -> Result<Self, ClientBuildError> {
        let endpoint = endpoint_url(&options.base_url)?;
        if endpoint.scheme() == "http" && !is_loopback(&endpoint) {
            tracing::warn!(
                host = endpoint.host_str().unwrap_or(""),
                "code2Session over plain HTTP: the AppSecret crosses the network in clear"
            );
        }
        let mut builder = reqwest::Client::builder()
            .tls_backend_rustls()
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .pool_max_idle_per_host(options.max_idle_per_host)
            .tcp_nodelay(true)
            // A redirect would resend the AppSecret to wherever it points.
            .redirect(redirect::Policy::none())
            .user_agent(concat!("wxlogin/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &options.extra_root_ca_pem {
            let certs =
                reqwest::Certificate::from_pem_bundle(pem).map_err(|_| ClientBuildError::RootCa)?;
            if certs.is_empty() {
                return Err(ClientBuildError::RootCa);
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| ClientBuildError::Http(e.without_url()))?;
        Ok(WechatClient {
            http,
            endpoint,
            api: Arc::new(ApiUrls::new(&options.base_url)?),
            connect_timeout: options.connect_timeout,
        })
    }

    /// The longest a call may take to leave this process (DNS, TCP and TLS included).
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Exchanges a `wx.login` code for the user's openid, unionid and session_key.
    ///
    /// Empty arguments are answered locally with the errcode WeChat would give (41002, 41004,
    /// 41008), without spending quota. Every other outcome is classified by [`ExchangeError`].
    #[tracing::instrument(
        skip(self, secret, code),
        fields(appid = %appid, outcome = tracing::field::Empty)
    )]
    pub async fn code2session(
        &self,
        appid: &str,
        secret: &SecretString,
        code: &str,
    ) -> Result<Session, ExchangeError> {
        let result = self.exchange(appid, secret, code).await;
        let span = tracing::Span::current();
        match &result {
            Ok(_) => span.record("outcome", "ok"),
            Err(e) => span.record("outcome", tracing::field::display(e.class())),
        };
        result
    }

    async fn exchange(
        &self,
        appid: &str,
        secret: &SecretString,
        code: &str,
    ) -> Result<Session, ExchangeError> {
        let secret_str = secret.expose_secret();
        if let Some(errcode) = missing_argument(appid, secret_str, code) {
            return Err(ExchangeError::from_errcode(errcode).expect("non-zero errcode"));
        }
        let response = self
            .http
            .get(self.endpoint.clone())
            .query(&[
                ("appid", appid),
                ("secret", secret_str),
                ("js_code", code),
                ("grant_type", "authorization_code"),
            ])
            .send()
            .await
            .map_err(|e| transport_failure(e, CODE2SESSION, "send", &[secret_str]))
            .map_err(ExchangeError::retryable)?;
        let status = response.status().as_u16();
        let body = read_capped(response, CODE2SESSION, &[secret_str])
            .await
            .map_err(ExchangeError::retryable)?;
        let parsed = parse_answer(status, &body);
        if let Some(errmsg) = &parsed.errmsg {
            // errmsg carries WeChat's request id (`rid: ...`), which WeChat support asks for.
            tracing::debug!(
                status,
                errmsg = %redact(errmsg, &[secret_str]),
                "code2Session answered"
            );
        }
        parsed.result
    }
}

/// WeChat's own errcode for an empty argument, checked in WeChat's order.
fn missing_argument(appid: &str, secret: &str, code: &str) -> Option<i64> {
    if appid.is_empty() {
        Some(41002)
    } else if secret.is_empty() {
        Some(41004)
    } else if code.is_empty() {
        Some(41008)
    } else {
        None
    }
}

fn endpoint_url(base_url: &str) -> Result<Url, ClientBuildError> {
    endpoint_url_for(base_url, ENDPOINT_PATH)
}

/// `{base_url}/{path}`, refused unless the base is a plain http(s) URL without credentials,
/// query or fragment.
pub(super) fn endpoint_url_for(base_url: &str, path: &str) -> Result<Url, ClientBuildError> {
    let base = base_url.trim().trim_end_matches('/');
    let url = Url::parse(&format!("{base}/{path}")).map_err(|_| ClientBuildError::BaseUrl)?;
    let usable = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if usable {
        Ok(url)
    } else {
        Err(ClientBuildError::BaseUrl)
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Reads at most [`MAX_BODY_BYTES`]; a bigger, truncated or unreadable body is a bad body.
/// Dropping the response early closes the connection instead of draining it. `api` names the
/// call in logs; `secrets` are cut out of anything logged.
pub(super) async fn read_capped(
    mut response: reqwest::Response,
    api: &'static str,
    secrets: &[&str],
) -> Result<Vec<u8>, RetryReason> {
    let too_big = RetryReason::BadBody;
    if response
        .content_length()
        .is_some_and(|len| len > MAX_BODY_BYTES as u64)
    {
        return Err(too_big);
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(too_big);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) if e.is_timeout() => return Err(transport_failure(e, api, "read", secrets)),
            Err(e) => {
                log_transport_error(&e, api, "read", secrets);
                return Err(RetryReason::BadBody);
            }
        }
    }
}

/// Maps a reqwest error to a reason without ever formatting the error with its URL.
pub(super) fn transport_failure(
    e: reqwest::Error,
    api: &'static str,
    stage: &'static str,
    secrets: &[&str],
) -> RetryReason {
    log_transport_error(&e, api, stage, secrets);
    if e.is_connect() {
        // Checked before timeouts: a connect timeout means the request was never sent.
        RetryReason::Connect
    } else if e.is_timeout() {
        RetryReason::Timeout
    } else {
        RetryReason::Network
    }
}

fn log_transport_error(
    e: &reqwest::Error,
    api: &'static str,
    stage: &'static str,
    secrets: &[&str],
) {
    // reqwest's own text would include the URL, hence the AppSecret: describe it by kind and
    // show only its causes (hyper, io, rustls), which never hold the URL. The redaction is a
    // second lock.
    let mut text = describe_reqwest(e).to_owned();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    tracing::debug!(api, stage, error = %redact(&text, secrets), "WeChat transport error");
}

fn describe_reqwest(e: &reqwest::Error) -> &'static str {
    if e.is_connect() {
        "connect error"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_body() {
        "body error"
    } else if e.is_decode() {
        "decode error"
    } else if e.is_request() {
        "request error"
    } else {
        "http error"
    }
}

/// `text` with every copy of each non-empty secret replaced.
pub(super) fn redact(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_owned(), |text, secret| {
            text.replace(secret, "<redacted>")
        })
}

#[cfg(test)]
mod tests;
