//! The memory and CPU time of the processes a benchmark watches (`--pid`; with `--spawn` the
//! spawned wxlogin processes, nats-server and the bench itself): VmRSS sampled four times a
//! second, the kernel's high-water mark (VmHWM), and user + system CPU seconds, from `/proc`.

use std::time::Duration;

use super::load::{Shared, lock};

/// Samples VmRSS of every watched process four times a second.
pub(super) async fn sample_memory(pids: Vec<u32>, collector: Shared) {
    loop {
        sample_once(&pids, &collector);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub(super) fn sample_once(pids: &[u32], collector: &Shared) {
    for &pid in pids {
        let Some((rss, hwm)) = read_memory(pid) else {
            continue;
        };
        let mut c = lock(collector);
        let e = c.m.memory.entry(pid).or_insert([rss, rss, rss, hwm]);
        e[1] = rss;
        e[2] = e[2].max(rss);
        e[3] = e[3].max(hwm);
    }
}

/// (VmRSS, VmHWM) in KiB from `/proc/PID/status`.
pub(crate) fn read_memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:").unwrap_or(0)))
}

/// User + system CPU seconds the process has used so far, from `/proc/PID/stat`.
pub(crate) fn read_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 ("state");
    // utime and stime are fields 14 and 15, in clock ticks (USER_HZ, 100 on Linux).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// CPU seconds of each process now.
pub(super) fn cpu_now(pids: &[u32]) -> std::collections::BTreeMap<u32, f64> {
    pids.iter()
        .filter_map(|&pid| Some((pid, read_cpu_secs(pid)?)))
        .collect()
}
