//! The memory of the processes a benchmark watches (`--pid`, and `wxlogin up` with `--spawn`):
//! VmRSS sampled four times a second, and the kernel's high-water mark (VmHWM), from `/proc`.

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
pub fn read_memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:").unwrap_or(0)))
}
