//! Throughput of the WeChat simulator's code2Session success path, for `docs/benchmarks.md`.
//!
//! Runs the simulator on ONE thread (a current-thread runtime), mints a pool of codes through
//! the control API, writes the exchange URLs (one per code) to a file, then either
//! - waits for an external load generator (wrk with `tools/sim/benches/sim_wrk.lua`) until Ctrl-C, or
//! - with `--load-secs N`, drives the load itself with reqwest from a second thread;
//!
//! and finally prints the simulator's own count of answers by errcode.
//!
//! ```text
//! cargo run --release -p wxlogin-sim --example sim_bench -- --codes 400000 --port 9099
//! wrk -t1 -c64 -d10s -s tools/sim/benches/sim_wrk.lua http://127.0.0.1:9099 -- /tmp/sim_codes.txt
//! ```

use std::{
    io::Write as _,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use wxlogin_sim::{self as sim, DEMO_APPID, DEMO_SECRET, SimConfig, SimControl};

#[derive(Parser)]
struct Args {
    /// Codes to mint (one per success answer the load will need).
    #[arg(long, default_value_t = 400_000)]
    codes: usize,
    /// Distinct users the codes are spread over.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Port of the simulator on 127.0.0.1.
    #[arg(long, default_value_t = 9099)]
    port: u16,
    /// Where to write the exchange URLs, one per line.
    #[arg(long, default_value = "/tmp/sim_codes.txt")]
    out: String,
    /// Drive the load with reqwest for this many seconds instead of waiting for wrk.
    #[arg(long)]
    load_secs: Option<u64>,
    /// Concurrent connections of the built-in load.
    #[arg(long, default_value_t = 64)]
    connections: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let listener = std::net::TcpListener::bind(("127.0.0.1", args.port))?;
    listener.set_nonblocking(true)?;
    let base = format!("http://{}", listener.local_addr()?);

    // The simulator gets one thread, so the figure is "per core".
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let stop = async move {
                let _ = stop_rx.await;
            };
            sim::serve(SimConfig::demo(), listener, stop).await
        })
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let ctl = SimControl::new(base.clone());
        let t0 = Instant::now();
        let users: Vec<String> = (0..args.users).map(|i| format!("user{i}")).collect();
        let batches: Vec<Vec<&str>> = (0..args.codes)
            .map(|i| users[i % users.len()].as_str())
            .collect::<Vec<_>>()
            .chunks(4_000)
            .map(<[&str]>::to_vec)
            .collect();
        let codes: Vec<String> = futures::stream::iter(batches)
            .map(|batch| {
                let ctl = ctl.clone();
                async move { ctl.mint_codes(DEMO_APPID, &batch).await }
            })
            .buffered(2)
            .try_concat()
            .await?;
        eprintln!("minted {} codes in {:.1?}", codes.len(), t0.elapsed());

        let mut out = std::io::BufWriter::new(std::fs::File::create(&args.out)?);
        for code in &codes {
            writeln!(
                out,
                "/sns/jscode2session?appid={DEMO_APPID}&secret={DEMO_SECRET}&js_code={code}&grant_type=authorization_code"
            )?;
        }
        out.flush()?;
        eprintln!("exchange URLs in {}; simulator at {base}", args.out);

        match args.load_secs {
            Some(secs) => builtin_load(&base, codes, secs, args.connections).await?,
            None => {
                eprintln!("run the load now (e.g. wrk -t1 -c64 -d10s -s tools/sim/benches/sim_wrk.lua {base} -- {}), then Ctrl-C", args.out);
                tokio::signal::ctrl_c().await?;
            }
        }
        let stats = ctl.stats().await?;
        eprintln!("simulator answered {} calls, by errcode {:?}", stats.calls, stats.by_errcode);
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    let _ = stop_tx.send(());
    server.join().expect("simulator thread")?;
    Ok(())
}

/// Each connection exchanges its own slice of the pool, one call at a time.
async fn builtin_load(
    base: &str,
    codes: Vec<String>,
    secs: u64,
    connections: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    let url = format!("{base}/sns/jscode2session");
    let codes = Arc::new(codes);
    let next = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (http, url, codes, next) = (http.clone(), url.clone(), codes.clone(), next.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(code) = codes.get(i) else { break };
                    let query = [
                        ("appid", DEMO_APPID),
                        ("secret", DEMO_SECRET),
                        ("js_code", code),
                    ];
                    let resp = http.get(&url).query(&query).send().await?;
                    resp.bytes().await?;
                }
                Ok::<_, reqwest::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let done = next.load(Ordering::Relaxed).min(codes.len() as u64);
    let elapsed = t0.elapsed().as_secs_f64();
    eprintln!(
        "built-in load: {done} calls in {elapsed:.2} s = {:.0} answers/s",
        done as f64 / elapsed
    );
    Ok(())
}
