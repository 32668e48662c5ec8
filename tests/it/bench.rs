//! `wxlogin bench --spawn`: the real binary starts its own nats-server, simulator and
//! `wxlogin up`, drives logins through them, and writes a JSON report (and an SVG chart) whose
//! counts add up. Speed is never asserted: only that every login is counted, and how.

use std::process::Command;

use serde_json::Value;

fn bench(args: &[&str]) -> (Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let svg = dir.path().join("latency.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_wxlogin"))
        .arg("bench")
        .arg("--spawn")
        .args(args)
        .arg("--report")
        .arg(&report)
        .arg("--svg")
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "wxlogin bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&report).unwrap();
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<polyline"));
    assert!(svg.contains("latency distribution"), "{svg}");
    // Tokens start with wxl_; neither they nor codes belong in a report.
    assert!(!text.contains("wxl_"), "a token leaked into the report");
    (serde_json::from_str(&text).unwrap(), text)
}

fn assert_percentiles_ordered(report: &Value) {
    let l = &report["latency_ms"];
    let p: Vec<f64> = ["p50", "p90", "p99", "p99_9", "max"]
        .iter()
        .map(|k| l[k].as_f64().unwrap_or_else(|| panic!("no {k} in {l}")))
        .collect();
    assert!(p[0] > 0.0, "latencies are positive: {l}");
    assert!(p.windows(2).all(|w| w[0] <= w[1]), "unordered: {l}");
}

#[test]
fn a_spawned_closed_loop_run_of_200_logins_reports_every_one_succeeded_with_one_upstream_call_each()
{
    let (report, text) = bench(&["--count", "200", "--concurrency", "16"]);
    assert_eq!(report["sent"], 200, "{text}");
    assert_eq!(report["succeeded"], 200, "{text}");
    assert_eq!(report["failed"], 0, "{text}");
    assert_eq!(report["outcomes"]["ok"], 200, "{text}");
    assert_eq!(report["upstream"]["calls"], 200, "{text}");
    assert_eq!(report["upstream"]["calls_per_code"]["1"], 200, "{text}");
    assert_percentiles_ordered(&report);
    let distribution = report["distribution"].as_array().unwrap();
    assert_eq!(distribution.first().unwrap()[0], 0.0, "{text}");
    assert_eq!(distribution.last().unwrap()[0], 100.0, "{text}");
    let completed: u64 = report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["completed"].as_u64().unwrap())
        .sum();
    assert_eq!(completed, 200, "the timeline counts every login once");
    // The same machine's bare JetStream did the same logins' worth of messages.
    let bare = &report["bare"];
    assert!(bare["logins"].as_u64().unwrap() >= 200, "{text}");
    assert!(bare["logins_per_sec"].as_f64().unwrap() > 0.0, "{text}");
    assert!(report["fraction_of_bare"].as_f64().unwrap() > 0.0, "{text}");
    // nats-server's own counters over the run, per login: a login moves at least its code, its
    // result and their acknowledgements through the server.
    let traffic = &report["nats_traffic"];
    let msgs_in = traffic["msgs_in_per_login"].as_f64().unwrap();
    assert!(msgs_in >= 4.0, "{text}");
    assert!(
        traffic["msgs_out_per_login"].as_f64().unwrap() >= 4.0,
        "{text}"
    );
    assert!(traffic["kib_per_login"].as_f64().unwrap() > 0.0, "{text}");
    // The simplest NATS pipeline ran the same 200 logins (one exchange each) right after, on the
    // same server: the code, the result, the reply and the work queue's ack — fewer than ours.
    let reference = &report["reference"];
    assert_eq!(reference["succeeded"], 200, "{text}");
    assert_eq!(reference["upstream"]["calls_per_code"]["1"], 200, "{text}");
    let reference_in = reference["nats_traffic"]["msgs_in_per_login"]
        .as_f64()
        .unwrap();
    assert!((3.5..msgs_in).contains(&reference_in), "{text}");
    assert!(
        report["fraction_of_reference"].as_f64().unwrap() > 0.0,
        "{text}"
    );
    // The upserter applied every result event, within the time the bench waits for it.
    assert!(report["upserter"]["caught_up_secs"].is_number(), "{text}");
    // The memory and CPU time of `wxlogin up`, nats-server and the bench itself come from /proc.
    let memory = report["memory"].as_object().unwrap();
    let roles: Vec<&str> = memory
        .values()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles.len(), 3, "{text}");
    for role in ["up", "nats-server", "bench+simulator"] {
        assert!(roles.contains(&role), "{role} missing: {text}");
    }
    let up = memory.values().find(|m| m["role"] == "up").unwrap();
    let peak = up["rss_peak_sampled_kib"].as_u64().unwrap();
    assert!(
        peak > 1024,
        "a running wxlogin up holds more than 1 MiB: {text}"
    );
    let cpu = report["cpu"].as_object().unwrap();
    assert_eq!(cpu.len(), 3, "{text}");
    // 200 logins through real processes cost the bench's own process some CPU time.
    let bench_cpu = cpu
        .values()
        .find(|c| c["role"] == "bench+simulator")
        .unwrap();
    assert!(bench_cpu["seconds"].as_f64().unwrap() > 0.0, "{text}");
}

#[test]
fn a_spawned_open_loop_run_sends_every_scheduled_login() {
    let (report, text) = bench(&[
        "--rate",
        "100",
        "--count",
        "50",
        "--warmup",
        "500ms",
        "--no-bare",
        // Reaches the spawned `wxlogin up`: answers come as 202 tickets, which the bench follows.
        "--set",
        "WXLOGIN_LOGIN_WAIT_MS=1",
    ]);
    assert!(
        report["mode"]["open_loop"]["rate"].as_f64() == Some(100.0),
        "{text}"
    );
    // Half a second of warm-up at 100/s: 50 logins run first and are left out of the figures.
    assert_eq!(report["warmup_logins"], 50, "{text}");
    assert_eq!(report["sent"], 50, "{text}");
    assert_eq!(report["not_sent"], 0, "{text}");
    assert_eq!(report["succeeded"], 50, "{text}");
    // The simulator saw them all, warm-up included.
    assert_eq!(report["upstream"]["calls"], 100, "{text}");
    assert!(report["bare"].is_null(), "--no-bare: {text}");
    assert!(report["via_ticket"].as_u64().unwrap() > 0, "{text}");
    assert_eq!(report["spawned"]["WXLOGIN_LOGIN_WAIT_MS"], "1", "{text}");
    assert_percentiles_ordered(&report);
}

#[test]
fn a_spawned_run_of_separate_roles_against_a_slow_simulator_reports_each_process() {
    let (report, text) = bench(&[
        "--workers",
        "1",
        "--sim-latency",
        "20ms",
        "--count",
        "40",
        "--concurrency",
        "8",
        "--no-bare",
    ]);
    assert_eq!(report["succeeded"], 40, "{text}");
    assert_eq!(report["upstream"]["calls_per_code"]["1"], 40, "{text}");
    let roles: Vec<&str> = report["memory"]
        .as_object()
        .unwrap()
        .values()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    for role in ["ingress", "upserter", "worker-0", "nats-server"] {
        assert!(roles.contains(&role), "{role} missing: {text}");
    }
    assert_eq!(report["spawned"]["sim_latency"], "20ms", "{text}");
    // Every login waited for the simulator's answer at least once.
    assert!(
        report["latency_ms"]["p50"].as_f64().unwrap() >= 20.0,
        "{text}"
    );
}

#[test]
fn a_setting_that_is_not_ours_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_wxlogin"))
        .args(["bench", "--spawn", "--set", "PATH=/tmp"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("WXLOGIN_NAME=VALUE"), "{err}");
}
