//! `GET /status` in a real headless Chromium: the page fetches `/metrics` every second and fills
//! in the figures while logins run through the real pipeline: a `wxlogin up` child process of
//! its own, so that no other test's logins or quota show in its figures (one metrics recorder
//! per process).

use crate::helpers::{APPID, up::Up};

/// The page in a real headless Chromium: it fetches /metrics and fills in the figures while
/// logins run. Skipped (and said so) where no Chromium is installed (`apt-get install chromium`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_in_a_headless_browser_shows_live_figures_while_logins_run() {
    let Some(browser) = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|b| which::which(b).ok())
    else {
        eprintln!("SKIPPED: no chromium installed");
        return;
    };
    let app = Up::start("1000/1s").await;
    let (control, client) = (app.control.clone(), app.miniprogram());
    let load = tokio::spawn(async move {
        for i in 0.. {
            let code = control.mint_code(APPID, &format!("user{i}")).await.unwrap();
            let _ = client.login(&code).await;
        }
    });
    let out = tokio::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=4000",
            "--dump-dom",
        ])
        .arg(format!("{}/status", app.api))
        .output()
        .await
        .unwrap();
    load.abort();
    let dom = String::from_utf8_lossy(&out.stdout);
    let cell = |id: &str| {
        let start = dom
            .find(&format!("id=\"{id}\">"))
            .unwrap_or_else(|| panic!("{dom}"));
        let rest = &dom[start..];
        rest[rest.find('>').unwrap() + 1..rest.find("</td>").unwrap()].to_owned()
    };
    assert!(
        dom.contains("updated "),
        "the page never read /metrics: {dom}"
    );
    assert!(cell("ok").parse::<f64>().is_ok(), "{dom}");
    // Logins keep running, so the backlog may be anything, but it is a count.
    assert!(cell("queue").parse::<u64>().is_ok(), "{dom}");
    assert!(cell("quota").contains("/ 1000 per 1 s"), "{dom}");
}
