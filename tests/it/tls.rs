//! TLS verification toward WeChat stays on. The simulator is served over HTTPS by a TLS front
//! with a certificate from a private, self-signed CA: the exchange fails while that CA is
//! unknown (no request ever reaches the simulator), and succeeds once the CA is configured
//! through `wechat_ca_file` (`WXLOGIN_WECHAT_CA_FILE`), the setting for private deployments.

use std::{path::PathBuf, sync::atomic::Ordering, time::Duration};

use crate::helpers::{
    Db, Options, SettingsTweak, TestApp, spawn_app,
    tls::{TlsFront, pki, tls_front},
};

/// The app with WeChat behind the TLS front; `ca_file` is given to `wechat_ca_file` if any.
async fn app_behind_tls(front: &TlsFront, ca_file: Option<PathBuf>) -> TestApp {
    let mut opts = Options::new(Db::Sqlite);
    // Short, so that a code that can never be exchanged fails in seconds.
    opts.code_ttl = Duration::from_secs(10);
    let base = format!("https://{}", front.addr);
    opts.tweak = SettingsTweak::new(move |s| {
        s.wechat_base_url = base.clone();
        s.wechat_ca_file = ca_file.clone();
    });
    let app = spawn_app(opts).await;
    front.upstream.set(app.sim.addr()).unwrap();
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_with_a_server_whose_ca_we_do_not_trust_fails_and_reaches_nobody() {
    let pki = pki();
    let front = tls_front(&pki).await;
    let app = app_behind_tls(&front, None).await;
    let code = app.mint("alice").await;
    let (status, body) = app.login_following_tickets(&code).await;
    assert_eq!(
        (status, body["errcode"].as_i64()),
        (503, Some(-1)),
        "{body}"
    );
    assert!(
        front.handshakes_failed.load(Ordering::SeqCst) >= 1,
        "the worker did try"
    );
    assert_eq!(front.handshakes_ok.load(Ordering::SeqCst), 0);
    // Neither the code nor the AppSecret crossed the untrusted connection.
    assert_eq!(app.control.stats().await.unwrap().calls, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_succeeds_once_the_private_ca_is_configured_as_wechat_ca_file() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("private-ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let front = tls_front(&pki).await;
    let app = app_behind_tls(&front, Some(ca_file)).await;
    let code = app.mint("bob").await;
    let (status, body) = app.login_following_tickets(&code).await;
    assert_eq!(status, 200, "{body}");
    assert!(front.handshakes_ok.load(Ordering::SeqCst) >= 1);
    assert_eq!(front.handshakes_failed.load(Ordering::SeqCst), 0);
    assert_eq!(app.control.stats().await.unwrap().calls, 1);
    app.stop().await;
}
