//! Logging: `tracing` to stderr, level from `RUST_LOG` (default `info`), JSON lines when
//! `WXLOGIN_LOG_FORMAT=json`.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

pub fn init() {
    init_with_default("info");
}

/// Like [`init`], with another level when `RUST_LOG` is unset (tests use `warn`).
pub fn init_with_default(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let json = std::env::var("WXLOGIN_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let registry = tracing_subscriber::registry().with(filter);
    // try_init: tests and embedders may have installed a subscriber already.
    let _ = if json {
        registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init()
    } else {
        registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init()
    };
}
