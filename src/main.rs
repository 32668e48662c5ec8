//! The `wxlogin` binary: parse the command line, start logging, run. Everything else is in
//! the library (see `wxlogin::cli`).

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = wxlogin::cli::Cli::parse();
    wxlogin::telemetry::init();
    match wxlogin::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
