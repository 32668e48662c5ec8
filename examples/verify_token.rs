//! # A business service that verifies wxlogin tokens
//!
//! A mini program logs in through wxlogin and then calls *your* services with
//! `Authorization: Bearer <token>`. This is how one of those services finds out who is calling:
//! it asks wxlogin, with the same bearer token, `GET /v1/me`:
//!
//! | wxlogin answers                          | the service                                   |
//! |------------------------------------------|-----------------------------------------------|
//! | `200 {"appid", "openid", "unionid"}`     | serves the request for that user              |
//! | `401 40001` (unknown, expired, logged out) | answers `401`: the mini program logs in again |
//! | anything else, or no answer in time      | answers `503`: it never guesses who is calling |
//!
//! Rules this example follows, and yours should too:
//! - Trust only what wxlogin says. Never take an `openid` (or any user id) from the request
//!   itself: anyone can send any openid, so whoever could would *be* that user.
//! - Fail closed: when wxlogin cannot be asked, refuse (503); never let the request through.
//! - Never log the token; it is a credential. Log the openid if you must log someone.
//! - `/v1/me` is one key-value read in wxlogin, cheap enough to ask on every request. If you
//!   cache answers, cache them for seconds, keyed by a hash of the token, and accept that a
//!   logout then takes that long to reach you.
//!
//! Run it against the demo (`scripts/up.sh`, or `wxlogin up --sim`), then log in with the
//! README's quick start and call it with the token:
//!
//! ```text
//! cargo run --example verify_token     # WXLOGIN_URL=http://127.0.0.1:8080, LISTEN=127.0.0.1:3000
//! curl -s http://127.0.0.1:3000/v1/orders -H "Authorization: Bearer $TOKEN"
//! ```
//!
//! Its tests (`cargo test --example verify_token`) start a real wxlogin in-process (its own
//! nats-server, SQLite database and WeChat simulator) and check every row of the table above,
//! and that a session record written straight into NATS by someone without wxlogin's master
//! key is refused: wxlogin vouches only for sessions it sealed itself.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::FromRequestParts,
    http::{StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Who is calling, as wxlogin's `GET /v1/me` says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WxUser {
    pub appid: String,
    pub openid: String,
    /// Set when the mini program is bound to an Open Platform account: the same person across
    /// the company's apps.
    pub unionid: Option<String>,
}

/// Why a request is refused.
#[derive(Debug)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    MissingToken,
    /// wxlogin says the token is unknown, expired or logged out.
    Rejected,
    /// wxlogin could not be asked, or answered something unexpected.
    Unavailable(String),
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        match self {
            AuthError::MissingToken | AuthError::Rejected => (
                StatusCode::UNAUTHORIZED,
                // Tells the mini program (the wxlogin helper's request() does) to log in again.
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(json!({"errcode": 40001, "errmsg": "log in again"})),
            )
                .into_response(),
            AuthError::Unavailable(why) => {
                tracing::warn!(%why, "cannot verify a token; refusing the request");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({"errcode": -1, "errmsg": "try again later"})),
                )
                    .into_response()
            }
        }
    }
}

/// Asks wxlogin who a token belongs to.
pub struct WxLogin {
    http: reqwest::Client,
    me_url: String,
}

impl WxLogin {
    /// `base_url` is where wxlogin's HTTP API is, e.g. `http://127.0.0.1:8080`.
    pub fn new(base_url: &str) -> Self {
        WxLogin {
            http: reqwest::Client::builder()
                // Bound the wait: a request should fail fast rather than hang on wxlogin.
                .timeout(Duration::from_secs(2))
                .build()
                .expect("an HTTP client"),
            me_url: format!("{}/v1/me", base_url.trim_end_matches('/')),
        }
    }

    pub async fn verify(&self, token: &str) -> Result<WxUser, AuthError> {
        let answer = self
            .http
            .get(&self.me_url)
            .bearer_auth(token)
            .send()
            .await
            // Without the URL: it is harmless here, but error texts should never carry secrets.
            .map_err(|e| AuthError::Unavailable(e.without_url().to_string()))?;
        match answer.status() {
            StatusCode::OK => answer
                .json::<WxUser>()
                .await
                .map_err(|e| AuthError::Unavailable(format!("unreadable /v1/me answer: {e}"))),
            StatusCode::UNAUTHORIZED => Err(AuthError::Rejected),
            status => Err(AuthError::Unavailable(format!("/v1/me answered {status}"))),
        }
    }
}

/// An axum extractor: a handler taking `Caller` runs only for a verified user.
pub struct Caller(pub WxUser);

impl FromRequestParts<Arc<WxLogin>> for Caller {
    type Rejection = AuthError;

    async fn from_request_parts(
        parts: &mut Parts,
        wxlogin: &Arc<WxLogin>,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())
            .ok_or(AuthError::MissingToken)?;
        wxlogin.verify(token).await.map(Caller)
    }
}

/// A business endpoint: the caller's orders. The user comes from the token, never the request.
async fn orders(Caller(user): Caller) -> Json<serde_json::Value> {
    tracing::info!(openid = %user.openid, "listing orders");
    Json(json!({ "openid": user.openid, "unionid": user.unionid, "orders": [] }))
}

/// The service's routes.
pub fn app(wxlogin: Arc<WxLogin>) -> Router {
    Router::new()
        .route("/v1/orders", get(orders))
        .with_state(wxlogin)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let wxlogin_url =
        std::env::var("WXLOGIN_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    tracing::info!(%listen, wxlogin = %wxlogin_url, "orders service: GET /v1/orders with a wxlogin bearer token");
    axum::serve(listener, app(Arc::new(WxLogin::new(&wxlogin_url)))).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use natsd::NatsServer;
    use secrecy::SecretString;
    use tokio_util::sync::CancellationToken;
    use wxlogin::{
        app::roles,
        crypto::{Keyring, MasterKey},
        settings::{App, Settings},
    };
    use wxlogin_sim::{self as sim, DEMO_APPID, DEMO_SECRET, SimApp, SimConfig};

    /// A real wxlogin (all three roles in-process) with its own nats-server, SQLite database
    /// and WeChat simulator.
    struct Wxlogin {
        api: String,
        sim: sim::SimServer,
        shutdown: CancellationToken,
        /// Where the forger of the last test writes.
        sessions_bucket: String,
        _nats: NatsServer,
        _dir: tempfile::TempDir,
    }

    async fn start_wxlogin() -> Wxlogin {
        let dir = tempfile::tempdir().unwrap();
        let nats = NatsServer::start_temporary().await.expect("nats-server");
        let sim = sim::spawn(SimConfig {
            apps: vec![SimApp {
                appid: DEMO_APPID.into(),
                secret: DEMO_SECRET.into(),
                unionid: true,
            }],
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let settings = Settings {
            nats_url: nats.url().to_string(),
            nats_prefix: format!("ex{}", &uuid::Uuid::new_v4().simple().to_string()[..10]),
            database_url: format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display()),
            wechat_base_url: sim.base_url(),
            ..Settings::default()
        };
        let apps = vec![App {
            appid: DEMO_APPID.into(),
            secret: SecretString::from(DEMO_SECRET.to_string()),
        }];
        let sessions_bucket = format!("{}_sessions", settings.nats_prefix);
        let keyring = Arc::new(Keyring::new(MasterKey::generate(), Vec::new()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            roles::all_in_one(&settings, keyring, &apps, listener, stop)
                .await
                .expect("wxlogin runs");
        });
        for _ in 0..400 {
            if let Ok(r) = reqwest::get(format!("{api}/readyz")).await
                && r.status() == 200
            {
                return Wxlogin {
                    api,
                    sim,
                    shutdown,
                    sessions_bucket,
                    _nats: nats,
                    _dir: dir,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("wxlogin never became ready");
    }

    impl Wxlogin {
        /// What the mini program does: `wx.login()`, then `POST /v1/login`.
        async fn log_in(&self, user: &str) -> String {
            let code = self
                .sim
                .control()
                .mint_code(DEMO_APPID, user)
                .await
                .unwrap();
            let answer: serde_json::Value = reqwest::Client::new()
                .post(format!("{}/v1/login", self.api))
                .json(&json!({ "code": code }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            answer["token"].as_str().expect("a token").to_string()
        }
    }

    /// Runs the example service against `wxlogin_url`; returns its base URL.
    async fn start_service(wxlogin_url: &str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = app(Arc::new(WxLogin::new(wxlogin_url)));
        tokio::spawn(async move { axum::serve(listener, router).await });
        url
    }

    async fn get_orders(service: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        let mut request = reqwest::Client::new().get(format!("{service}/v1/orders"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let answer = request.send().await.unwrap();
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap())
    }

    #[tokio::test]
    async fn a_live_token_is_served_as_its_user_and_dead_or_missing_tokens_get_401() {
        let wxlogin = start_wxlogin().await;
        let service = start_service(&wxlogin.api).await;
        let token = wxlogin.log_in("alice").await;
        let me: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/v1/me", wxlogin.api))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();

        let (status, body) = get_orders(&service, Some(&token)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["openid"], me["openid"]);
        assert_eq!(body["unionid"], me["unionid"]);

        assert_eq!(get_orders(&service, None).await.0, 401);
        let forged = format!("wxl_{}", "A".repeat(43));
        assert_eq!(get_orders(&service, Some(&forged)).await.0, 401);

        let logout = reqwest::Client::new()
            .post(format!("{}/v1/logout", wxlogin.api))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(logout.status(), 204);
        let (status, body) = get_orders(&service, Some(&token)).await;
        assert_eq!(status, 401, "a logged-out token is refused at once: {body}");
        assert_eq!(body["errcode"], 40001);
        wxlogin.shutdown.cancel();
    }

    #[tokio::test]
    async fn when_wxlogin_cannot_be_asked_the_service_refuses_with_503_instead_of_guessing() {
        // A port nothing listens on.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let service = start_service(&closed).await;
        let (status, body) = get_orders(&service, Some("wxl_anything")).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["errcode"], -1);
    }

    #[tokio::test]
    async fn a_session_record_forged_in_nats_is_refused() {
        let wxlogin = start_wxlogin().await;
        let service = start_service(&wxlogin.api).await;
        // Someone who can write to NATS but lacks the master key puts a record, in the form
        // records once had (plain JSON), for a token of their choosing and any openid.
        let token = wxlogin::sessions::new_token();
        let now = chrono::Utc::now().timestamp_millis();
        let forged = json!({
            "v": 1, "appid": DEMO_APPID, "openid": "oSomeoneElse", "unionid": null,
            "session_key_sealed": "v1.00000000.AAAA", "login_id": "forged",
            "created_at_ms": now, "expires_at_ms": now + 3_600_000,
        });
        let nats = async_nats::connect(wxlogin._nats.url().to_string())
            .await
            .unwrap();
        let bucket = async_nats::jetstream::new(nats)
            .get_key_value(&wxlogin.sessions_bucket)
            .await
            .unwrap();
        bucket
            .put(
                wxlogin::sessions::token_hash(&token),
                serde_json::to_vec(&forged).unwrap().into(),
            )
            .await
            .unwrap();
        let (status, body) = get_orders(&service, Some(&token)).await;
        assert_eq!(status, 401, "the service served a forged session: {body}");
        wxlogin.shutdown.cancel();
    }
}
