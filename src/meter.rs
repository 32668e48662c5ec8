//! Prometheus metrics. One recorder per process (in `wxlogin up` all roles share it); the
//! ingress serves `GET /metrics` on its own port, and a worker or upserter running alone serves
//! it on `WXLOGIN_METRICS_ADDR` when set.
//!
//! Every metric is recorded here by a small function, so the call sites stay one line and the
//! names live in one place. Labels are bounded (status, errcode, consumer, place): never an
//! appid secret, a code, a token or an openid.

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

use axum::{Router, http::header, response::IntoResponse, routing::get};
use metrics::{SharedString, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Seconds, from 1 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];

/// Installs the process's recorder (once; later calls return the same handle).
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("wxlogin_upsert_batch_size".into()),
                    BATCH_BUCKETS,
                )
            })
            .expect("bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (an embedding program's): then ours
        // still renders, it just sees nothing, and we say so.
        if let Err(e) = metrics::set_global_recorder(recorder) {
            tracing::warn!(error = %e, "a metrics recorder was already installed");
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let h = handle.clone();
            // Histograms buffer samples until upkeep folds them in.
            rt.spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    h.run_upkeep();
                }
            });
        }
        handle
    })
}

/// `GET /metrics`: the Prometheus text exposition.
pub async fn metrics_handler() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        install().render(),
    )
}

/// `GET /status`: a live page that reads `/metrics` every second (plain HTML, no build step).
pub async fn status_handler() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("status.html"),
    )
}

/// The app quota the workers hold to, for the status page's quota use.
pub fn app_quota(quota: crate::quota::Quota) {
    gauge!("wxlogin_app_quota_calls").set(f64::from(quota.calls));
    gauge!("wxlogin_app_quota_window_seconds").set(quota.window.as_secs_f64());
}

/// Serves `/metrics` alone on `listener` until `shutdown` (for a worker or upserter process).
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    install();
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "metrics on http://{addr}/metrics");
    let app = Router::new().route("/metrics", get(metrics_handler));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// An errcode as a label without allocating for the usual ones.
fn errcode_label(errcode: i64) -> SharedString {
    SharedString::const_str(match errcode {
        0 => "0",
        -1 => "-1",
        40029 => "40029",
        40163 => "40163",
        40226 => "40226",
        45011 => "45011",
        40013 => "40013",
        40125 => "40125",
        41002 => "41002",
        41008 => "41008",
        _ => return SharedString::from(errcode.to_string()),
    })
}

fn status_label(status: u16) -> SharedString {
    SharedString::const_str(match status {
        200 => "200",
        202 => "202",
        400 => "400",
        409 => "409",
        429 => "429",
        503 => "503",
        _ => return SharedString::from(status.to_string()),
    })
}

/// The ingress answered `POST /v1/login` (errcode 0 for 200 and 202).
pub fn login_answered(status: u16, errcode: i64, started: Instant) {
    let outcome = match status {
        200 => "ok",
        202 => "accepted",
        _ => "failed",
    };
    counter!("wxlogin_logins_total", "outcome" => outcome, "status" => status_label(status), "errcode" => errcode_label(errcode)).increment(1);
    histogram!("wxlogin_login_duration_seconds").record(started.elapsed().as_secs_f64());
}

/// This process's code2Session calls for one appid within the quota's window, per second, so
/// `wxlogin_quota_used_calls{appid}` shows how much of the window's quota it is using (the
/// fleet's use is the sum over workers). Calls are counted when their slot is taken.
pub struct QuotaUse {
    window_secs: i64,
    /// (second, calls in it), oldest first, only seconds inside the window.
    seconds: std::sync::Mutex<std::collections::VecDeque<(i64, u64)>>,
    /// Bound to the recorder installed when the limiter is made (roles install it first).
    used: metrics::Gauge,
}

impl QuotaUse {
    pub fn new(appid: &str, quota: crate::quota::Quota) -> Self {
        QuotaUse {
            window_secs: quota.window.as_secs().max(1) as i64,
            seconds: Default::default(),
            used: gauge!("wxlogin_quota_used_calls", "appid" => appid.to_owned()),
        }
    }

    /// One call took a slot at `now_s` (Unix seconds).
    pub fn call(&self, now_s: i64) {
        self.count(now_s, 1);
    }

    /// Drops the seconds that left the window (the gauge falls when calls stop).
    pub fn refresh(&self, now_s: i64) {
        self.count(now_s, 0);
    }

    fn count(&self, now_s: i64, calls: u64) {
        let mut seconds = self
            .seconds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match seconds.back_mut() {
            Some((s, n)) if *s == now_s => *n += calls,
            _ if calls > 0 => seconds.push_back((now_s, calls)),
            _ => {}
        }
        while seconds
            .front()
            .is_some_and(|&(s, _)| s <= now_s - self.window_secs)
        {
            seconds.pop_front();
        }
        self.used
            .set(seconds.iter().map(|&(_, n)| n).sum::<u64>() as f64);
    }
}

/// Something read from NATS failed authentication and was ignored: `what` is `session`,
/// `result` or `code` (a forgery, or sealed under a master key this process lacks).
pub fn untrusted(what: &'static str) {
    counter!("wxlogin_untrusted_total", "what" => what).increment(1);
}

/// A worker's reply arrived after its login had been answered 202.
pub fn late_reply() {
    counter!("wxlogin_late_replies_total").increment(1);
}

/// One code2Session call ended with this errcode (0: success; transport failures count too).
pub fn upstream_call(errcode: i64) {
    counter!("wxlogin_upstream_calls_total", "errcode" => errcode_label(errcode)).increment(1);
}

/// A retryable upstream answer: the worker waits and calls again.
pub fn upstream_retry() {
    counter!("wxlogin_upstream_retries_total").increment(1);
}

/// A worker finished exchanging one code (all its calls and waits).
pub fn exchange_done(started: Instant) {
    histogram!("wxlogin_exchange_duration_seconds").record(started.elapsed().as_secs_f64());
}

/// The upserter applied (or tried) a batch of this many result events.
pub fn upsert_batch(size: usize) {
    histogram!("wxlogin_upsert_batch_size").record(size as f64);
}

/// A stage set an event aside in `{P}_PARKED` (see `wxlogin parked list`).
pub fn parked(stage: &'static str) {
    counter!("wxlogin_parked_events_total", "stage" => stage).increment(1);
}

/// A database operation failed; `place` names the step.
pub fn database_error(place: &'static str) {
    counter!("wxlogin_database_errors_total", "place" => place).increment(1);
}

/// A NATS operation failed; `place` names the step.
/// A quota slot not called on: `paused` (a 45011 pause came), `late_lease` (it was already
/// past when the lease came back), `late_send` (it passed before the call could be sent).
pub fn quota_slot_given_back(reason: &'static str) {
    counter!("wxlogin_quota_slots_given_back_total", "reason" => reason).increment(1);
}

/// The last clock probe: our clock minus the NATS server's, its uncertainty, and whether the
/// worker refuses quota slots because of it.
pub fn clock_offset(offset_us: i64, uncertainty_us: i64, refusing: bool) {
    gauge!("wxlogin_clock_offset_seconds").set(offset_us as f64 / 1e6);
    gauge!("wxlogin_clock_offset_uncertainty_seconds").set(uncertainty_us as f64 / 1e6);
    gauge!("wxlogin_clock_skew_refusing").set(if refusing { 1.0 } else { 0.0 });
}

pub fn nats_error(place: &'static str) {
    counter!("wxlogin_nats_errors_total", "place" => place).increment(1);
}

/// A fetch of the fleet's access_token for an appid: `ok`, `forced` (a `force_refresh` spent),
/// `failed`. The token itself is never a label, nor anything derived from it.
pub fn access_token_fetch(appid: &str, outcome: &'static str) {
    counter!("wxlogin_access_token_fetches_total", "appid" => appid.to_owned(), "outcome" => outcome).increment(1);
}

/// An API call answered that the shared token is invalid, expired or malformed.
pub fn access_token_rejected(appid: &str) {
    counter!("wxlogin_access_token_rejected_total", "appid" => appid.to_owned()).increment(1);
}

/// WeChat refused to issue a token for a reason an operator must fix (40164, 40243, 89503, …).
pub fn access_token_refused(appid: &str, errcode: i64) {
    counter!("wxlogin_access_token_refused_total", "appid" => appid.to_owned(), "errcode" => errcode_label(errcode)).increment(1);
}

/// Keeps `wxlogin_consumer_pending_messages{consumer}` (not yet delivered) and
/// `wxlogin_consumer_ack_pending_messages{consumer}` (delivered, not yet acked) up to date.
pub async fn watch_consumer(
    consumer: async_nats::jetstream::consumer::PullConsumer,
    name: String,
    shutdown: CancellationToken,
) {
    install();
    let pending = gauge!("wxlogin_consumer_pending_messages", "consumer" => name.clone());
    let ack_pending = gauge!("wxlogin_consumer_ack_pending_messages", "consumer" => name);
    loop {
        match consumer.get_info().await {
            Ok(info) => {
                pending.set(info.num_pending as f64);
                ack_pending.set(info.num_ack_pending as f64);
            }
            Err(_) => nats_error("consumer_info"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
