//! What a benchmark run found: the JSON report (`--report`), the summary printed at the end,
//! and the SVG chart of latency over time (`--svg`). Nothing secret goes in: outcomes are
//! labelled by step, status and errcode only.

use std::{collections::BTreeMap, fmt::Write as _};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::{Mode, load::Measured, load::Plan};
use crate::sim::SimStats;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When the run ended (RFC 3339, UTC).
    pub date: String,
    pub api: String,
    pub mode: Mode,
    pub elapsed_secs: f64,
    /// Logins started.
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
    /// One entry per second of the run (by completion time).
    pub timeline: Vec<Second>,
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
    pub rss_start_kib: u64,
    pub rss_end_kib: u64,
    /// The largest VmRSS sampled (every 250 ms).
    pub rss_peak_sampled_kib: u64,
    /// The kernel's high-water mark of the process's resident memory (VmHWM).
    pub rss_high_water_kib: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Second {
    pub second: usize,
    pub completed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

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

/// `after − before`, per key.
fn diff<K: Ord + Copy>(after: &BTreeMap<K, u64>, before: &BTreeMap<K, u64>) -> BTreeMap<K, u64> {
    after
        .iter()
        .map(|(k, v)| (*k, v.saturating_sub(before.get(k).copied().unwrap_or(0))))
        .filter(|(_, v)| *v > 0)
        .collect()
}

impl Report {
    pub(super) fn new(plan: &Plan, m: Measured, before: &SimStats, after: &SimStats) -> Report {
        let elapsed = m.elapsed.as_secs_f64().max(1e-6);
        let completed: u64 = m.outcomes.values().sum();
        Report {
            date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            api: plan.api.clone(),
            mode: plan.mode,
            elapsed_secs: (elapsed * 1000.0).round() / 1000.0,
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
                        rss_start_kib: start,
                        rss_end_kib: end,
                        rss_peak_sampled_kib: peak,
                        rss_high_water_kib: hwm,
                    };
                    (pid, mem)
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
        }
    }

    /// The human summary printed at the end of a run.
    pub fn summary(&self) -> String {
        let l = &self.latency_ms;
        let mut s = String::new();
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
        for (pid, m) in &self.memory {
            let _ = writeln!(
                s,
                "pid {pid}: VmRSS {:.1} MiB at start, {:.1} MiB at end, peak {:.1} MiB (VmHWM {:.1} MiB)",
                m.rss_start_kib as f64 / 1024.0,
                m.rss_end_kib as f64 / 1024.0,
                m.rss_peak_sampled_kib as f64 / 1024.0,
                m.rss_high_water_kib as f64 / 1024.0
            );
        }
        s
    }

    /// Latency over time: p50, p99 and max of each second, and completions per second.
    pub fn svg(&self) -> String {
        let (w, h, pad) = (800.0, 360.0, 50.0);
        let secs = self.timeline.len().max(2) as f64 - 1.0;
        let top = self
            .timeline
            .iter()
            .map(|s| s.max_ms)
            .fold(1.0_f64, f64::max);
        let busiest = self.timeline.iter().map(|s| s.completed).max().unwrap_or(1);
        let x = |i: usize| pad + i as f64 / secs * (w - 2.0 * pad);
        let y = |v: f64| h - pad - v / top * (h - 2.0 * pad);
        let line = |f: &dyn Fn(&Second) -> f64| {
            self.timeline
                .iter()
                .enumerate()
                .map(|(i, s)| format!("{:.1},{:.1}", x(i), y(f(s))))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"{pad}\" y=\"20\">wxlogin bench: latency per second (ms; max {top:.1}) and completions (grey, max {busiest}/s)</text>\n\
             <line x1=\"{pad}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/>\n\
             <line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{b}\" stroke=\"black\"/>\n\
             <text x=\"{pad}\" y=\"{t}\">0 s</text><text x=\"{r}\" y=\"{t}\" text-anchor=\"end\">{secs:.0} s</text>\n",
            b = h - pad,
            r = w - pad,
            t = h - pad + 16.0,
        );
        for (i, s) in self.timeline.iter().enumerate() {
            let bar = s.completed as f64 / busiest.max(1) as f64 * (h - 2.0 * pad);
            let _ = writeln!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"2\" height=\"{bar:.1}\" fill=\"#ccc\"/>",
                x(i) - 1.0,
                h - pad - bar
            );
        }
        for (legend, (colour, name, f)) in [
            (
                "#1f77b4",
                "p50",
                &(|s: &Second| s.p50_ms) as &dyn Fn(&Second) -> f64,
            ),
            ("#ff7f0e", "p99", &|s: &Second| s.p99_ms),
            ("#d62728", "max", &|s: &Second| s.max_ms),
        ]
        .into_iter()
        .enumerate()
        {
            let _ = writeln!(
                svg,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"><title>{name}</title></polyline>",
                line(f)
            );
            let legend_x = w - pad - 150.0 + 50.0 * legend as f64;
            let _ = writeln!(
                svg,
                "<text x=\"{legend_x}\" y=\"{}\" fill=\"{colour}\">{name}</text>",
                pad - 8.0
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}
