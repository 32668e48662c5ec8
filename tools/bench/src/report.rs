//! What a benchmark run found: the JSON report (`--report`), the summary printed at the end,
//! and the SVG chart of latency over time (`--svg`). Nothing secret goes in: outcomes are
//! labelled by step, status and errcode only.

use std::{collections::BTreeMap, fmt::Write as _};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::traffic::Traffic;
use super::{Mode, bare::Bare, catch_up::CatchUp, load::Measured, load::Plan};
use wxlogin_sim::SimStats;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When the run ended (RFC 3339, UTC).
    pub date: String,
    /// The machine the run was on: `cores`, `memory_kib`, `load_average` (1 min, at the end).
    pub machine: BTreeMap<String, f64>,
    /// With --spawn, what was started: `wxlogin` (up, or the roles), `database`, `sim_latency`,
    /// `nats_gogc`.
    pub spawned: BTreeMap<String, String>,
    pub api: String,
    pub mode: Mode,
    pub elapsed_secs: f64,
    /// Logins started during the warm-up; left out of every other figure.
    pub warmup_logins: u64,
    /// Logins started (after the warm-up).
    pub sent: u64,
    /// Open loop only: logins skipped because too many were in flight.
    pub not_sent: u64,
    /// Logins that got a token which `/v1/me` accepted.
    pub succeeded: u64,
    pub failed: u64,
    /// Of the successes, those answered 202 first and finished through their ticket.
    pub via_ticket: u64,
    /// Successful logins per second over the whole run.
    pub throughput_per_sec: f64,
    /// From the scheduled send (open loop) or the send (closed loop) to the token, checked.
    pub latency_ms: Latency,
    /// `ok`, or `<step>: <status> errcode <n>` (steps: login, ticket, me).
    pub outcomes: BTreeMap<String, u64>,
    pub upstream: Upstream,
    /// Resident memory of the watched processes, by pid.
    pub memory: BTreeMap<u32, Memory>,
    /// CPU time of the watched processes during the measurement, by pid.
    pub cpu: BTreeMap<u32, Cpu>,
    /// One entry per second of the run (by completion time).
    pub timeline: Vec<Second>,
    /// The latency distribution: (percentile, ms), from 0 to 100.
    pub distribution: Vec<(f64, f64)>,
    /// The upserter's backlog when the load ended, and how long it took to apply it.
    pub upserter: Option<CatchUp>,
    /// The same machine's bare JetStream doing a login's messages (no HTTP, no database).
    pub bare: Option<Bare>,
    /// `throughput_per_sec / bare.logins_per_sec`: how close the pipeline gets to its ceiling.
    pub fraction_of_bare: Option<f64>,
    /// What nats-server carried during the measurement, by its own counters.
    pub nats_traffic: Option<Traffic>,
    /// The simplest NATS pipeline ([`crate::reference`]) under the same load, same machine,
    /// same nats-server and simulator, run right after.
    pub reference: Option<Box<Report>>,
    /// `throughput_per_sec / reference.throughput_per_sec`.
    pub fraction_of_reference: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
}

/// code2Session calls the simulator saw during the run.
#[derive(Debug, Clone, Serialize)]
pub struct Upstream {
    pub calls: u64,
    pub by_errcode: BTreeMap<i64, u64>,
    /// Calls per code → number of codes (every one of ours should be at `1`).
    pub calls_per_code: BTreeMap<u32, u64>,
    pub codes_exchanged_more_than_once: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// What the process is, when the bench spawned it (`up`, `ingress`, `worker-0`, …).
    pub role: Option<String>,
    pub rss_start_kib: u64,
    pub rss_end_kib: u64,
    /// The largest VmRSS sampled (every 250 ms).
    pub rss_peak_sampled_kib: u64,
    /// The kernel's high-water mark of the process's resident memory (VmHWM).
    pub rss_high_water_kib: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cpu {
    pub role: Option<String>,
    /// User + system CPU seconds during the measurement.
    pub seconds: f64,
    /// `seconds` per successful login, in microseconds.
    pub per_login_us: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Second {
    pub second: usize,
    pub completed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Where the distribution is read: denser towards the tail, as HdrHistogram plots it.
const DISTRIBUTION_PERCENTILES: &[f64] = &[
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0,
];

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn latency(h: &Histogram<u64>) -> Latency {
    let q = |q: f64| ms(h.value_at_quantile(q));
    Latency {
        p50: q(0.5),
        p90: q(0.9),
        p99: q(0.99),
        p99_9: q(0.999),
        max: ms(h.max()),
        mean: (h.mean()).round() / 1000.0,
    }
}

/// What the benchmark figures depend on, read from the OS (Linux; absent figures are left out).
fn machine() -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    if let Ok(n) = std::thread::available_parallelism() {
        m.insert("cores".into(), n.get() as f64);
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let total = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    if let Some(kib) = total {
        m.insert("memory_kib".into(), kib);
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    if let Some(one) = load.split_whitespace().next().and_then(|v| v.parse().ok()) {
        m.insert("load_average".into(), one);
    }
    m
}

/// `after − before`, per key.
fn diff<K: Ord + Copy>(after: &BTreeMap<K, u64>, before: &BTreeMap<K, u64>) -> BTreeMap<K, u64> {
    after
        .iter()
        .map(|(k, v)| (*k, v.saturating_sub(before.get(k).copied().unwrap_or(0))))
        .filter(|(_, v)| *v > 0)
        .collect()
}

impl Report {
    pub(super) fn new(
        plan: &Plan,
        m: Measured,
        before: &SimStats,
        after: &SimStats,
        roles: &BTreeMap<u32, String>,
    ) -> Report {
        let elapsed = m.elapsed.as_secs_f64().max(1e-6);
        let completed: u64 = m.outcomes.values().sum();
        Report {
            date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            machine: machine(),
            spawned: BTreeMap::new(),
            api: plan.api.clone(),
            mode: plan.mode,
            elapsed_secs: (elapsed * 1000.0).round() / 1000.0,
            warmup_logins: m.warmup,
            sent: m.sent,
            not_sent: m.not_sent,
            succeeded: m.succeeded,
            failed: completed - m.succeeded,
            via_ticket: m.via_ticket,
            throughput_per_sec: (m.succeeded as f64 / elapsed * 10.0).round() / 10.0,
            latency_ms: latency(&m.latency),
            outcomes: m.outcomes,
            upstream: Upstream {
                calls: after.calls.saturating_sub(before.calls),
                by_errcode: diff(&after.by_errcode, &before.by_errcode),
                calls_per_code: diff(&after.calls_per_code, &before.calls_per_code),
                codes_exchanged_more_than_once: after
                    .codes_exchanged_more_than_once
                    .saturating_sub(before.codes_exchanged_more_than_once),
            },
            memory: m
                .memory
                .iter()
                .map(|(&pid, &[start, end, peak, hwm])| {
                    let mem = Memory {
                        role: roles.get(&pid).cloned(),
                        rss_start_kib: start,
                        rss_end_kib: end,
                        rss_peak_sampled_kib: peak,
                        rss_high_water_kib: hwm,
                    };
                    (pid, mem)
                })
                .collect(),
            cpu: m
                .cpu
                .iter()
                .map(|(&pid, &seconds)| {
                    let cpu = Cpu {
                        role: roles.get(&pid).cloned(),
                        seconds: (seconds * 100.0).round() / 100.0,
                        per_login_us: (seconds * 1e6 / m.succeeded.max(1) as f64).round(),
                    };
                    (pid, cpu)
                })
                .collect(),
            timeline: m
                .per_second
                .iter()
                .enumerate()
                .map(|(second, h)| Second {
                    second,
                    completed: h.len(),
                    p50_ms: ms(h.value_at_quantile(0.5)),
                    p99_ms: ms(h.value_at_quantile(0.99)),
                    max_ms: ms(h.max()),
                })
                .collect(),
            distribution: DISTRIBUTION_PERCENTILES
                .iter()
                .map(|&p| (p, ms(m.latency.value_at_percentile(p))))
                .collect(),
            upserter: None,
            bare: None,
            fraction_of_bare: None,
            nats_traffic: m.nats.map(|(a, b)| Traffic::between(a, b, m.succeeded)),
            reference: None,
            fraction_of_reference: None,
        }
    }

    /// Records the reference's run; the ratio only for a closed loop (an open loop caps both at
    /// the offered rate, so their ratio says nothing).
    pub(super) fn set_reference(&mut self, reference: Report) {
        if let Mode::ClosedLoop { .. } = self.mode {
            let fraction = self.throughput_per_sec / reference.throughput_per_sec.max(1.0);
            self.fraction_of_reference = Some((fraction * 100.0).round() / 100.0);
        }
        self.reference = Some(Box::new(reference));
    }

    /// CPU per successful login by process: `up 130 µs, nats-server 90 µs (total 220 µs)`.
    fn cpu_line(&self) -> String {
        let parts: Vec<String> = self
            .cpu
            .iter()
            .map(|(pid, c)| {
                let role = c.role.clone().unwrap_or_else(|| format!("pid {pid}"));
                format!("{role} {:.0} µs", c.per_login_us)
            })
            .collect();
        let total: f64 = self.cpu.values().map(|c| c.per_login_us).sum();
        format!("{} (total {total:.0} µs)", parts.join(", "))
    }

    fn traffic_line(&self) -> Option<String> {
        let t = self.nats_traffic.as_ref()?;
        Some(format!(
            "{:.2} messages in, {:.2} out, {:.2} KiB per login",
            t.msgs_in_per_login, t.msgs_out_per_login, t.kib_per_login
        ))
    }

    pub(super) fn set_bare(&mut self, bare: Bare) {
        let fraction = self.throughput_per_sec / bare.logins_per_sec.max(1.0);
        self.fraction_of_bare = Some((fraction * 1000.0).round() / 1000.0);
        self.bare = Some(bare);
    }

    /// The human summary printed at the end of a run.
    pub fn summary(&self) -> String {
        let l = &self.latency_ms;
        let mut s = String::new();
        if self.warmup_logins > 0 {
            let _ = write!(
                s,
                "\n{} logins of warm-up left out of the figures.",
                self.warmup_logins
            );
        }
        let _ = writeln!(
            s,
            "\n{} logins sent in {:.1} s ({:?}): {} succeeded ({} via ticket), {} failed, {} not sent",
            self.sent,
            self.elapsed_secs,
            self.mode,
            self.succeeded,
            self.via_ticket,
            self.failed,
            self.not_sent
        );
        let _ = writeln!(
            s,
            "throughput {:.0} logins/s; latency ms p50 {} p90 {} p99 {} p99.9 {} max {}",
            self.throughput_per_sec, l.p50, l.p90, l.p99, l.p99_9, l.max
        );
        let _ = writeln!(s, "outcomes {:?}", self.outcomes);
        let _ = writeln!(
            s,
            "upstream calls {} by errcode {:?}, calls per code {:?}",
            self.upstream.calls, self.upstream.by_errcode, self.upstream.calls_per_code
        );
        if let Some(c) = &self.upserter {
            let _ = match c.caught_up_secs {
                Some(secs) => writeln!(
                    s,
                    "database: {} result events still to apply when the load ended, applied within {secs:.2} s",
                    c.backlog_at_end
                ),
                None => writeln!(
                    s,
                    "database: {} result events still to apply when the load ended, NOT applied within 120 s",
                    c.backlog_at_end
                ),
            };
        }
        if let (Some(b), Some(f)) = (&self.bare, self.fraction_of_bare) {
            let _ = writeln!(
                s,
                "bare JetStream on this machine: {:.0} logins' worth/s ({} publishes, {} consumes, {} reads each; {:.0} operations/s); the pipeline reached {:.1}% of it",
                b.logins_per_sec,
                b.publishes_per_login,
                b.consumes_per_login,
                b.reads_per_login,
                b.operations_per_sec,
                f * 100.0
            );
        }
        if !self.cpu.is_empty() {
            let _ = writeln!(s, "CPU per successful login: {}", self.cpu_line());
        }
        if let Some(t) = self.traffic_line() {
            let _ = writeln!(s, "nats-server carried (its /varz, /v1/me included): {t}");
        }
        if let Some(r) = &self.reference {
            let ratio = match self.fraction_of_reference {
                Some(f) => format!("wxlogin reached {:.0}% of it", f * 100.0),
                None => "open loop: both capped at the offered rate".into(),
            };
            let _ = writeln!(
                s,
                "reference (the simplest NATS pipeline: no database, session, ledger or limiter): {:.0} logins/s, p50 {} p99 {} ms, {} failed; {ratio}\n  its CPU per login: {}\n  its nats-server traffic: {}",
                r.throughput_per_sec,
                r.latency_ms.p50,
                r.latency_ms.p99,
                r.failed,
                r.cpu_line(),
                r.traffic_line().unwrap_or_else(|| "not read".into()),
            );
        }
        for (pid, m) in &self.memory {
            let _ = writeln!(
                s,
                "{} (pid {pid}): VmRSS {:.1} MiB at start, {:.1} MiB at end, peak {:.1} MiB (VmHWM {:.1} MiB)",
                m.role.as_deref().unwrap_or("process"),
                m.rss_start_kib as f64 / 1024.0,
                m.rss_end_kib as f64 / 1024.0,
                m.rss_peak_sampled_kib as f64 / 1024.0,
                m.rss_high_water_kib as f64 / 1024.0
            );
        }
        s
    }
}
