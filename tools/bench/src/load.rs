//! The load itself: codes minted ahead from the simulator, logins driven open- or closed-loop,
//! every answer recorded into one collector, and the memory of the watched processes sampled.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::{
    sync::{Semaphore, mpsc},
    time::Instant,
};

use super::{
    Mode, Until,
    memory::{cpu_now, sample_memory, sample_once},
    miniprogram::MiniProgram,
    traffic::{Counters, snapshot},
};
use wxlogin_sim::SimControl;

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub api: String,
    pub appid: String,
    pub users: usize,
    pub mode: Mode,
    pub until: Until,
    /// Run the load this long first without measuring it (connections open, caches fill).
    pub warmup: Duration,
    /// nats-server's monitoring endpoint, to read its message counters over the measurement.
    pub nats_monitor: Option<String>,
}

/// Codes per `/sim/login/batch` call: stays inside its 64 KiB body limit with our user names.
const MINT_BATCH: usize = 3_000;
/// Open loop: logins in flight beyond this are not sent (and counted as `not_sent`), so an
/// overloaded server cannot make the generator eat the machine or run out of file descriptors
/// (each login in flight holds a socket; a first run with 100,000 hit `ulimit -n` 20,000 and
/// reported connect errors that were the generator's own).
const MAX_IN_FLIGHT: usize = 10_000;
/// Latencies are recorded in microseconds, up to this.
const MAX_LATENCY_US: u64 = 120_000_000;

/// Everything measured during the run.
pub(crate) struct Measured {
    pub elapsed: Duration,
    /// Logins started during the warm-up (not in any other figure).
    pub warmup: u64,
    pub sent: u64,
    pub not_sent: u64,
    pub succeeded: u64,
    pub via_ticket: u64,
    pub outcomes: BTreeMap<String, u64>,
    pub latency: Histogram<u64>,
    /// One histogram per second of the run, by completion time.
    pub per_second: Vec<Histogram<u64>>,
    /// pid → (first, last, largest sampled VmRSS, VmHWM), KiB.
    pub memory: BTreeMap<u32, [u64; 4]>,
    /// pid → CPU seconds (user + system) used during the measurement (after the warm-up).
    pub cpu: BTreeMap<u32, f64>,
    /// nats-server's counters when the measurement started and when it ended.
    pub nats: Option<(Counters, Counters)>,
}

pub(super) struct Collector {
    /// When the measurement starts (after the warm-up).
    start: Instant,
    pub(super) m: Measured,
    bar: ProgressBar,
}

pub(super) type Shared = Arc<Mutex<Collector>>;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

impl Measured {
    fn empty() -> Self {
        Measured {
            elapsed: Duration::ZERO,
            warmup: 0,
            sent: 0,
            not_sent: 0,
            succeeded: 0,
            via_ticket: 0,
            outcomes: BTreeMap::new(),
            latency: histogram(),
            per_second: Vec::new(),
            memory: BTreeMap::new(),
            cpu: BTreeMap::new(),
            nats: None,
        }
    }
}

impl Collector {
    fn record(&mut self, scheduled: Instant, outcome: Result<bool, String>) {
        self.bar.inc(1);
        if scheduled < self.start {
            self.m.warmup += 1;
            return;
        }
        let now = Instant::now();
        let us = now.duration_since(scheduled).as_micros() as u64;
        let us = us.clamp(1, MAX_LATENCY_US);
        match outcome {
            Ok(via_ticket) => {
                self.m.succeeded += 1;
                self.m.via_ticket += u64::from(via_ticket);
                *self.m.outcomes.entry("ok".into()).or_default() += 1;
            }
            Err(label) => *self.m.outcomes.entry(label).or_default() += 1,
        }
        let _ = self.m.latency.record(us);
        let second = now.duration_since(self.start).as_secs() as usize;
        while self.m.per_second.len() <= second {
            self.m.per_second.push(histogram());
        }
        let _ = self.m.per_second[second].record(us);
    }
}

pub(super) fn lock(c: &Shared) -> std::sync::MutexGuard<'_, Collector> {
    c.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Mints codes ahead of the load, in batches, into a channel. With a known number of logins
/// it mints them all before the load starts (minting then costs the simulator nothing during
/// the measurement); otherwise it keeps a buffer ahead.
async fn mint(
    control: SimControl,
    appid: String,
    users: usize,
    total: Option<u64>,
    tx: mpsc::Sender<String>,
) -> anyhow::Result<()> {
    let names: Vec<String> = (0..users).map(|i| format!("bench-u{i}")).collect();
    let mut next_user = 0usize;
    let mut minted = 0u64;
    while total.is_none_or(|t| minted < t) {
        let n = total.map_or(MINT_BATCH, |t| MINT_BATCH.min((t - minted) as usize));
        let batch: Vec<&str> = (0..n)
            .map(|i| names[(next_user + i) % users].as_str())
            .collect();
        next_user = (next_user + n) % users;
        let codes = control
            .mint_codes(&appid, &batch)
            .await
            .context("cannot mint codes from the simulator")?;
        minted += codes.len() as u64;
        for code in codes {
            if tx.send(code).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Runs the plan and returns what it measured.
pub(crate) async fn drive(
    plan: &Plan,
    control: &SimControl,
    pids: &[u32],
) -> anyhow::Result<Measured> {
    let total = match (plan.until, plan.mode) {
        (Until::Count(n), Mode::OpenLoop { rate }) => {
            Some(n + (rate * plan.warmup.as_secs_f64()).ceil() as u64)
        }
        // A closed loop of a fixed count has no warm-up (see `warmup` below).
        (Until::Count(n), Mode::ClosedLoop { .. }) => Some(n),
        (Until::Elapsed(d), Mode::OpenLoop { rate }) => {
            Some((rate * (plan.warmup + d).as_secs_f64()).ceil() as u64)
        }
        (Until::Elapsed(_), Mode::ClosedLoop { .. }) => None,
    };
    let warmup = match (plan.until, plan.mode) {
        (Until::Count(_), Mode::ClosedLoop { .. }) => Duration::ZERO,
        _ => plan.warmup,
    };
    let capacity = total.map_or(4 * MINT_BATCH, |t| t.max(1) as usize);
    let (tx, mut codes) = mpsc::channel(capacity);
    let minter = tokio::spawn(mint(
        control.clone(),
        plan.appid.clone(),
        plan.users,
        total,
        tx,
    ));
    let minter = if total.is_some() {
        eprintln!("minting {} codes…", total.unwrap_or(0));
        minter.await??;
        None
    } else {
        Some(minter)
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(usize::MAX)
        .build()
        .context("cannot build the HTTP client")?;
    let bar = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} logins  {per_sec}  {elapsed}  {msg}")
            .expect("valid template"),
    );
    let start = Instant::now();
    let measure_from = start + warmup;
    let collector: Shared = Arc::new(Mutex::new(Collector {
        start: measure_from,
        bar: bar.clone(),
        m: Measured::empty(),
    }));
    let sampler = tokio::spawn(sample_memory(pids.to_vec(), collector.clone()));
    // CPU time is read when the measurement starts (after the warm-up) and when it ends.
    let cpu_at_start = {
        let pids = pids.to_vec();
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from).await;
            cpu_now(&pids)
        })
    };
    let nats_at_start = plan.nats_monitor.clone().map(|monitor| {
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from).await;
            snapshot(&monitor).await
        })
    });
    let deadline = match plan.until {
        Until::Elapsed(d) => Some(measure_from + d),
        Until::Count(_) => None,
    };
    let client = MiniProgram::new(http, plan.api.clone(), plan.appid.clone());
    let (sent, not_sent) = match plan.mode {
        Mode::OpenLoop { rate } => {
            open_loop(&client, &collector, &mut codes, rate, start, total).await
        }
        Mode::ClosedLoop { concurrency } => {
            closed_loop(&client, &collector, codes, concurrency, deadline).await
        }
    };
    let elapsed = measure_from.elapsed();
    let cpu_at_end = cpu_now(pids);
    let nats_at_end = match &plan.nats_monitor {
        Some(monitor) => snapshot(monitor).await,
        None => None,
    };
    let cpu_at_start = cpu_at_start.await.unwrap_or_default();
    let nats_at_start = match nats_at_start {
        Some(task) => task.await.ok().flatten(),
        None => None,
    };
    if let Some(m) = minter {
        m.abort();
    }
    sample_once(pids, &collector);
    sampler.abort();
    bar.finish();
    let mut c = lock(&collector);
    c.m.elapsed = elapsed;
    c.m.sent = sent.saturating_sub(c.m.warmup);
    c.m.cpu = cpu_at_end
        .iter()
        .filter_map(|(pid, end)| Some((*pid, end - cpu_at_start.get(pid)?)))
        .collect();
    c.m.not_sent = not_sent;
    c.m.nats = nats_at_start.zip(nats_at_end);
    Ok(std::mem::replace(&mut c.m, Measured::empty()))
}

/// Sends login i at `start + i / rate`, whatever happened to the earlier ones.
async fn open_loop(
    client: &MiniProgram,
    collector: &Shared,
    codes: &mut mpsc::Receiver<String>,
    rate: f64,
    start: Instant,
    total: Option<u64>,
) -> (u64, u64) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let (mut sent, mut not_sent) = (0u64, 0u64);
    let mut i = 0u64;
    while total.is_none_or(|t| i < t) {
        let scheduled = start + Duration::from_secs_f64(i as f64 / rate);
        i += 1;
        tokio::time::sleep_until(scheduled).await;
        let Some(code) = codes.recv().await else {
            break;
        };
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            not_sent += 1;
            continue;
        };
        sent += 1;
        let (client, collector) = (client.clone(), collector.clone());
        tasks.spawn(async move {
            let outcome = client.login_and_check(&code).await;
            lock(&collector).record(scheduled, outcome);
            drop(permit);
        });
        // Finished tasks are reaped as we go so the set stays the size of what is in flight.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    (sent, not_sent)
}

/// `concurrency` clients, each sending its next login when its last one ended.
async fn closed_loop(
    client: &MiniProgram,
    collector: &Shared,
    codes: mpsc::Receiver<String>,
    concurrency: usize,
    deadline: Option<Instant>,
) -> (u64, u64) {
    let codes = Arc::new(tokio::sync::Mutex::new(codes));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, collector, codes) = (client.clone(), collector.clone(), codes.clone());
        tasks.spawn(async move {
            let mut sent = 0u64;
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let Some(code) = codes.lock().await.recv().await else {
                    break;
                };
                sent += 1;
                let scheduled = Instant::now();
                let outcome = client.login_and_check(&code).await;
                lock(&collector).record(scheduled, outcome);
            }
            sent
        });
    }
    let mut sent = 0;
    while let Some(r) = tasks.join_next().await {
        sent += r.unwrap_or(0);
    }
    (sent, 0)
}
