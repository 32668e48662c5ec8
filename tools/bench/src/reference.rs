//! The simplest NATS login pipeline a team could write, run by `wxlogin bench` as a reference
//! beside wxlogin (issue 18): an HTTP handler that publishes the code to a JetStream work queue
//! and waits for the reply over core NATS; a pull consumer that calls code2Session and publishes
//! the result to a results stream, then replies. No database, no session, no ledger, no limiter,
//! no sealing: what it lacks is what wxlogin's guarantees cost.
//!
//! It answers the same HTTP the load generator speaks: `POST /v1/login` → `200 {"token"}`, and
//! `GET /v1/me` → `200` for any token it could have made (it keeps no sessions, so the check
//! costs it nothing but the HTTP request — the generator does the same work against both).
//! It runs as its own process (`wxlogin bench-reference`, hidden), so its CPU is its own.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::pull, stream};
use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// Where the reference reads the app's secret from.
pub const SECRET_ENV: &str = "WXLOGIN_BENCH_REFERENCE_SECRET";

#[derive(Debug, Clone, clap::Args)]
pub struct ReferenceArgs {
    /// The nats-server to use (streams of its own, named by a random id; the bench's temporary
    /// server goes with them).
    #[arg(long)]
    pub nats: String,
    /// The WeChat stand-in (`GET /sns/jscode2session`).
    #[arg(long)]
    pub wechat: String,
    #[arg(long)]
    pub appid: String,
    /// The app's secret: from the environment ([`SECRET_ENV`]), never the command line.
    #[arg(long, env = SECRET_ENV, hide_env_values = true)]
    pub secret: String,
    /// Where to listen for HTTP.
    #[arg(long)]
    pub http: SocketAddr,
}

#[derive(Deserialize)]
struct LoginBody {
    code: String,
}

#[derive(Serialize, Deserialize)]
struct CodeMsg {
    id: u64,
    code: String,
}

#[derive(Deserialize)]
struct Code2Session {
    #[serde(default)]
    openid: Option<String>,
    #[serde(default)]
    errcode: i64,
}

struct Shared {
    js: jetstream::Context,
    codes_subject: String,
    next: AtomicU64,
    waiters: Mutex<HashMap<u64, oneshot::Sender<bytes::Bytes>>>,
}

/// Runs the reference until the process is killed.
pub async fn serve(args: ReferenceArgs) -> anyhow::Result<()> {
    let client = async_nats::connect(&args.nats)
        .await
        .with_context(|| format!("cannot connect to {}", args.nats))?;
    let js = jetstream::new(client.clone());
    let id = uuid::Uuid::new_v4().simple().to_string();
    let codes_subject = format!("ref.{id}.codes");
    let results_prefix = format!("ref.{id}.results");
    let reply_prefix = format!("ref.{id}.reply");
    let codes = js
        .create_stream(stream::Config {
            name: format!("REFCODES_{id}"),
            subjects: vec![codes_subject.clone()],
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .context("cannot create the reference's code stream")?;
    js.create_stream(stream::Config {
        name: format!("REFRESULTS_{id}"),
        subjects: vec![format!("{results_prefix}.>")],
        ..Default::default()
    })
    .await
    .context("cannot create the reference's results stream")?;
    let consumer = codes
        .create_consumer(pull::Config {
            durable_name: Some("exchange".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_ack_pending: 10_000,
            ..Default::default()
        })
        .await
        .context("cannot create the reference's consumer")?;
    let shared = Arc::new(Shared {
        js: js.clone(),
        codes_subject,
        next: AtomicU64::new(0),
        waiters: Mutex::new(HashMap::new()),
    });
    // Replies: one subscription for the process, routed to the waiting request by its id.
    let mut replies = client.subscribe(format!("{reply_prefix}.*")).await?;
    let router = shared.clone();
    tokio::spawn(async move {
        while let Some(msg) = replies.next().await {
            let Some(id) = msg.subject.rsplit('.').next().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let waiter = router.waiters.lock().expect("not poisoned").remove(&id);
            if let Some(tx) = waiter {
                let _ = tx.send(msg.payload);
            }
        }
    });
    let http = reqwest::Client::new();
    let exchange = Arc::new((args.clone(), http, client, js, results_prefix, reply_prefix));
    tokio::spawn(async move {
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => return eprintln!("reference consumer: {e}"),
        };
        while let Some(msg) = messages.next().await {
            let msg = match msg {
                Ok(msg) => msg,
                // (A missed heartbeat, a status: the stream of messages goes on.)
                Err(e) => {
                    eprintln!("reference consumer: {e}");
                    continue;
                }
            };
            let exchange = exchange.clone();
            tokio::spawn(async move {
                let (args, http, client, js, results, replies) = &*exchange;
                let step = exchange_one(args, http, client, js, results, replies, &msg);
                if let Err(e) = step.await {
                    eprintln!("reference exchange: {e:#}");
                }
                let _ = msg.ack().await;
            });
        }
        eprintln!("reference consumer: the message stream ended");
    });
    let app = Router::new()
        .route("/v1/login", post(login))
        .route("/v1/me", get(me))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(args.http).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// The consumer's step: code2Session, the result published (acknowledged), the reply.
async fn exchange_one(
    args: &ReferenceArgs,
    http: &reqwest::Client,
    client: &async_nats::Client,
    js: &jetstream::Context,
    results: &str,
    replies: &str,
    msg: &jetstream::Message,
) -> anyhow::Result<()> {
    let code: CodeMsg = serde_json::from_slice(&msg.payload)?;
    let reply = format!("{replies}.{}", code.id);
    let answer = code2session(args, http, &code.code).await;
    let openid = match answer {
        Ok(openid) => openid,
        Err(e) => {
            // The waiting request answers at once instead of timing out.
            client.publish(reply, bytes::Bytes::new()).await?;
            return Err(e);
        }
    };
    let result = serde_json::json!({ "id": code.id, "openid": openid });
    let payload = bytes::Bytes::from(serde_json::to_vec(&result)?);
    js.publish(format!("{results}.{}", code.id), payload.clone())
        .await?
        .await?;
    client.publish(reply, payload).await?;
    Ok(())
}

/// The openid WeChat's stand-in gives for `code` (errors without the URL: it holds the secret).
async fn code2session(
    args: &ReferenceArgs,
    http: &reqwest::Client,
    code: &str,
) -> anyhow::Result<String> {
    let answer: Code2Session = http
        .get(format!("{}/sns/jscode2session", args.wechat))
        .query(&[
            ("appid", args.appid.as_str()),
            ("secret", args.secret.as_str()),
            ("js_code", code),
            ("grant_type", "authorization_code"),
        ])
        .send()
        .await
        .map_err(reqwest::Error::without_url)?
        .json()
        .await
        .map_err(reqwest::Error::without_url)?;
    match (answer.errcode, answer.openid) {
        (0, Some(openid)) => Ok(openid),
        (errcode, _) => anyhow::bail!("code2Session errcode {errcode}"),
    }
}

async fn login(State(s): State<Arc<Shared>>, Json(body): Json<LoginBody>) -> Response {
    let id = s.next.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = oneshot::channel();
    s.waiters.lock().expect("not poisoned").insert(id, tx);
    let payload = serde_json::to_vec(&CodeMsg {
        id,
        code: body.code,
    })
    .expect("serializes");
    let published = async {
        s.js.publish(s.codes_subject.clone(), payload.into())
            .await?
            .await?;
        anyhow::Ok(())
    }
    .await;
    if published.is_err() {
        s.waiters.lock().expect("not poisoned").remove(&id);
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    match tokio::time::timeout(Duration::from_secs(10), rx).await {
        Ok(Ok(reply)) => {
            let openid = serde_json::from_slice::<serde_json::Value>(&reply)
                .ok()
                .and_then(|v| v["openid"].as_str().map(str::to_owned));
            match openid {
                Some(openid) => Json(
                    serde_json::json!({ "token": format!("ref_{openid}"), "expires_in": 7200 }),
                )
                .into_response(),
                // The exchange failed (its error is in the reference's log).
                None => StatusCode::BAD_GATEWAY.into_response(),
            }
        }
        _ => {
            s.waiters.lock().expect("not poisoned").remove(&id);
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
    }
}

async fn me(headers: HeaderMap) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ref_"));
    match token {
        Some(openid) if !openid.is_empty() => {
            Json(serde_json::json!({ "openid": openid })).into_response()
        }
        _ => StatusCode::UNAUTHORIZED.into_response(),
    }
}
