//! The `wxlogin` binary: parse the command line, start logging, run. Everything else is in
//! the library (see `wxlogin::app`).

use clap::Parser;

/// glibc's malloc was ~15% of `wxlogin up`'s CPU under load (arena lock contention between
/// the runtime's threads, futex wake-ups); mimalloc's thread-local heaps avoid both. Its
/// `no_thp` feature keeps transparent huge pages off for the process: with THP on (Debian's
/// default), eagerly committed arenas doubled the resident memory (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = wxlogin::app::Cli::parse();
    wxlogin::telemetry::init();
    match wxlogin::app::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
