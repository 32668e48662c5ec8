//! `wxlogin bench`: a load generator that plays the mini programs against a running ingress.
//! It mints codes from a simulator (the simulated `wx.login()`), posts them to `/v1/login`,
//! follows 202 tickets, checks each token with `/v1/me`, and reports throughput, latency,
//! outcomes, upstream calls (from the simulator's exact stats) and the memory of the processes
//! it is pointed at. `--spawn` starts nats-server, the simulator and `wxlogin up` itself.
//!
//! Open loop (`--rate`) sends on schedule whatever the answers, and measures latency from the
//! scheduled send time, so a stalled server shows as latency instead of as fewer requests
//! (no coordinated omission). Closed loop (`--concurrency`) measures what N busy clients see.

pub mod bare;
mod catch_up;
mod chart;
mod load;
mod memory;
pub mod miniprogram;
pub mod reference;
mod report;
mod spawn;
pub mod traffic;

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};

pub use miniprogram::{Answer, MiniProgram};
pub use report::Report;
use wxlogin_sim::{self as sim, SimControl};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The ingress to drive (ignored with --spawn).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub api: String,
    /// The simulator that mints the codes and counts the upstream calls (ignored with --spawn).
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    pub sim: String,
    /// The mini program's appid (the simulator must know it, the ingress must serve it).
    #[arg(long, default_value = sim::DEMO_APPID)]
    pub appid: String,
    /// How many distinct simulated users the codes are minted for.
    #[arg(long, default_value_t = 10_000)]
    pub users: usize,
    /// Open loop: start this many logins per second, on schedule, whatever the answers.
    #[arg(long, conflicts_with = "concurrency")]
    pub rate: Option<f64>,
    /// Closed loop: this many clients, each starting its next login when the last ended.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Run this long (e.g. 60s); with --rate the number of logins is rate × duration.
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "count")]
    pub duration: Option<Duration>,
    /// Run this many logins.
    #[arg(long)]
    pub count: Option<u64>,
    /// Run the load this long first and leave it out of every figure (connections open,
    /// caches fill); not used by a closed loop of a fixed --count.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub warmup: Duration,
    /// Report the resident memory (VmRSS) of this process; repeatable.
    #[arg(long)]
    pub pid: Vec<u32>,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write an SVG chart of latency over time here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// The NATS server the pipeline uses, for the bare-JetStream comparison (with --spawn: the
    /// spawned one). Without it (and without --spawn) the comparison is skipped.
    #[arg(long)]
    pub nats: Option<String>,
    /// With --spawn: run an ingress, this many exchange workers and an upserter as separate
    /// processes instead of one `wxlogin up`.
    #[arg(long)]
    pub workers: Option<usize>,
    /// With --spawn: the simulator answers code2Session after this long (e.g. 100ms).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    pub sim_latency: Duration,
    /// With --spawn: Go's GOGC for the nats-server ("100" is Go's default). At 100 the
    /// collector ran every ~2 s under load and its pauses dominated the p99; 400 trades
    /// nats-server memory (~1 GB instead of ~0.5 GB after 20 s at full load) for fewer pauses.
    #[arg(long, default_value = "400")]
    pub nats_gogc: String,
    /// With --spawn: a setting for the spawned wxlogin processes, e.g.
    /// `--set WXLOGIN_MAX_INFLIGHT_LOGINS=2000`; repeatable.
    #[arg(long = "set", value_name = "WXLOGIN_NAME=VALUE", value_parser = parse_setting)]
    pub settings: Vec<(String, String)>,
    /// With --spawn: the database wxlogin uses (e.g. a fresh PostgreSQL database); default a
    /// temporary SQLite file.
    #[arg(long)]
    pub database_url: Option<String>,
    /// The NATS prefix of the deployment (for the upserter's backlog after the run).
    #[arg(long, default_value = "wxlogin")]
    pub nats_prefix: String,
    /// Skip the bare-JetStream comparison run.
    #[arg(long)]
    pub no_bare: bool,
    /// With --spawn: skip the reference run (the simplest NATS pipeline under the same load,
    /// right after wxlogin's, on the same nats-server and simulator).
    #[arg(long)]
    pub no_reference: bool,
    /// Start a temporary nats-server, a simulator (0 ms latency, no quota) and `wxlogin up`
    /// (temporary SQLite), and drive those.
    #[arg(long)]
    pub spawn: bool,
}

fn parse_setting(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if k.starts_with("WXLOGIN_") => Ok((k.to_owned(), v.to_owned())),
        _ => Err("expected WXLOGIN_NAME=VALUE".into()),
    }
}

/// How the load is offered.
#[derive(Debug, Clone, Copy, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    OpenLoop { rate: f64 },
    ClosedLoop { concurrency: usize },
}

/// When the run ends.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    Count(u64),
    Elapsed(Duration),
}

impl BenchArgs {
    fn mode(&self) -> anyhow::Result<Mode> {
        match (self.rate, self.concurrency) {
            (Some(rate), _) if !(rate.is_finite() && rate > 0.0) => {
                bail!("--rate must be a positive number of logins per second")
            }
            (Some(rate), _) => Ok(Mode::OpenLoop { rate }),
            (None, Some(0)) => bail!("--concurrency must be at least 1"),
            (None, Some(concurrency)) => Ok(Mode::ClosedLoop { concurrency }),
            (None, None) => Ok(Mode::ClosedLoop { concurrency: 64 }),
        }
    }

    fn until(&self) -> anyhow::Result<Until> {
        match (self.count, self.duration) {
            (Some(0), _) => bail!("--count must be at least 1"),
            (Some(n), _) => Ok(Until::Count(n)),
            (None, Some(d)) if d.is_zero() => bail!("--duration must be positive"),
            (None, Some(d)) => Ok(Until::Elapsed(d)),
            (None, None) => Ok(Until::Elapsed(Duration::from_secs(10))),
        }
    }
}

/// Runs the benchmark, prints a summary to stderr, and writes the report files asked for.
pub async fn run(args: BenchArgs) -> anyhow::Result<Report> {
    let mode = args.mode()?;
    let until = args.until()?;
    if args.users == 0 {
        bail!("--users must be at least 1");
    }
    let mut roles = std::collections::BTreeMap::new();
    let (api, sim_url, mut pids, mut spawned) = if args.spawn {
        if args.workers == Some(0) {
            bail!("--workers must be at least 1");
        }
        let plan = spawn::SpawnPlan {
            workers: args.workers,
            sim_latency: args.sim_latency,
            database_url: args.database_url.clone(),
            nats_gogc: Some(args.nats_gogc.clone()),
            settings: args.settings.clone(),
        };
        let s = spawn::Spawned::start(&args.appid, &plan).await?;
        let spawned_pids = s.pids();
        eprintln!(
            "spawned: nats-server {} (GOGC={}), simulator {} ({:?} latency), wxlogin {:?} on {}",
            s.nats_url(),
            args.nats_gogc,
            s.sim_url(),
            args.sim_latency,
            spawned_pids,
            s.api_url()
        );
        let pids = spawned_pids.iter().map(|(_, pid)| *pid).collect();
        roles.extend(spawned_pids.into_iter().map(|(role, pid)| (pid, role)));
        (s.api_url(), s.sim_url(), pids, Some(s))
    } else {
        (
            args.api.trim_end_matches('/').to_owned(),
            args.sim.trim_end_matches('/').to_owned(),
            Vec::new(),
            None,
        )
    };
    pids.extend(args.pid.iter().copied());
    // The generator (and, with --spawn, the simulator) shares the machine: its CPU counts.
    let own = std::process::id();
    pids.push(own);
    roles.insert(
        own,
        if args.spawn {
            "bench+simulator"
        } else {
            "bench"
        }
        .to_owned(),
    );
    let control = SimControl::new(&sim_url);
    let before = control
        .stats()
        .await
        .context("cannot read the simulator's stats")?;
    let plan = load::Plan {
        api: api.clone(),
        appid: args.appid.clone(),
        users: args.users,
        mode,
        until,
        warmup: args.warmup,
        nats_monitor: spawned.as_ref().and_then(|s| s.nats_monitor()),
    };
    let result = load::drive(&plan, &control, &pids).await;
    let after = control.stats().await;
    let mut report = match (result, after) {
        (Ok(outcome), Ok(after)) => Report::new(&plan, outcome, &before, &after, &roles),
        (Err(e), _) => return Err(fail(e, spawned).await),
        (_, Err(e)) => return Err(fail(e.into(), spawned).await),
    };
    let nats_url = match &spawned {
        Some(s) => Some(s.nats_url().to_owned()),
        None => args.nats.clone(),
    };
    if args.spawn {
        let wxlogin = match args.workers {
            None => "up".to_owned(),
            Some(n) => format!("ingress, {n} worker(s), upserter"),
        };
        let database = match &args.database_url {
            Some(url) if url.starts_with("postgres") => "postgresql",
            Some(_) => "given",
            None => "sqlite (temporary file)",
        };
        for (k, v) in [
            ("wxlogin", wxlogin),
            ("database", database.to_owned()),
            (
                "sim_latency",
                humantime::format_duration(args.sim_latency).to_string(),
            ),
            ("nats_gogc", args.nats_gogc.clone()),
        ]
        .into_iter()
        .chain(args.settings.iter().map(|(k, v)| (k.as_str(), v.clone())))
        {
            report.spawned.insert(k.to_owned(), v);
        }
    }
    if let Some(url) = &nats_url {
        match catch_up::measure(url, &args.nats_prefix, Duration::from_secs(120)).await {
            Ok(c) => report.upserter = Some(c),
            Err(e) => eprintln!("cannot read the upserter's backlog: {e:#}"),
        }
    }
    if let (Some(s), false) = (spawned.as_mut(), args.no_reference) {
        match reference_run(s, &plan, &control, own).await {
            Ok(r) => report.set_reference(r),
            Err(e) => eprintln!("the reference run failed: {e:#}"),
        }
    }
    if let (Some(url), false) = (nats_url, args.no_bare) {
        // The same number of logins (at least 2,000) and the same number of chains at once
        // as the pipeline run.
        let logins = report.succeeded.clamp(2_000, 200_000);
        let chains = match mode {
            Mode::ClosedLoop { concurrency } => concurrency,
            Mode::OpenLoop { .. } => 256,
        };
        eprintln!("bare JetStream: {logins} logins' worth of messages, {chains} at once…");
        match bare::run(&url, logins, chains).await {
            Ok(b) => report.set_bare(b),
            Err(e) => eprintln!("bare JetStream comparison failed: {e:#}"),
        }
    }
    if let Some(s) = spawned {
        s.stop().await;
    }
    eprint!("{}", report.summary());
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, report.svg())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(report)
}

/// The same load against the simplest NATS pipeline ([`reference`]), with wxlogin stopped.
async fn reference_run(
    s: &mut spawn::Spawned,
    plan: &load::Plan,
    control: &SimControl,
    own: u32,
) -> anyhow::Result<Report> {
    s.stop_wxlogin().await;
    let (api, pid) = s.start_reference().await?;
    eprintln!("reference: the simplest NATS pipeline (pid {pid}) on {api}, same load…");
    let mut roles = std::collections::BTreeMap::new();
    roles.insert(pid, "reference".to_owned());
    roles.insert(own, "bench+simulator".to_owned());
    let mut pids = vec![pid, own];
    for (role, pid) in s.pids() {
        if role == "nats-server" {
            roles.insert(pid, role);
            pids.push(pid);
        }
    }
    let plan = load::Plan {
        api,
        ..plan.clone()
    };
    let before = control.stats().await?;
    let outcome = load::drive(&plan, control, &pids).await?;
    let after = control.stats().await?;
    Ok(Report::new(&plan, outcome, &before, &after, &roles))
}

/// Stops what was spawned, keeping its log tail in the error.
async fn fail(e: anyhow::Error, spawned: Option<spawn::Spawned>) -> anyhow::Error {
    match spawned {
        Some(s) => {
            let tail = s.log_tail();
            s.stop().await;
            e.context(format!("the spawned wxlogin logged:\n{tail}"))
        }
        None => e,
    }
}
