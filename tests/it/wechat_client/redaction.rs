//! The AppSecret never leaks: not in errors, sessions, the client's Debug, or any log line.

use std::{
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use wxlogin_sim::Faults;

use super::{
    APPID, SECRET, assert_no_secret, assert_no_secret_in, client, harness_with_timeout, secret,
};

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_secret_never_appears_in_errors_sessions_or_logs() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = harness_with_timeout(Duration::from_millis(300)).await;
    let mut errors = Vec::new();
    // Answers of every kind, each echoing the secret in errmsg to tempt a careless logger.
    let echo = format!(r#"{{"errcode":40125,"errmsg":"invalid appsecret {SECRET}, rid: 1"}}"#);
    for (status, body) in [
        (200, echo.as_str()),
        (502, "<html>502</html>"),
        (200, "{\"openid\":"),
        (200, r#"{"errcode":-1}"#),
    ] {
        errors.push(h.scripted(status, "text/plain", body).await.unwrap_err());
    }
    errors.push(h.exchange("unknown-code").await.unwrap_err());
    h.faults(Faults {
        hang_ratio: 1.0,
        ..Faults::default()
    })
    .await;
    errors.push(h.exchange(&h.code(APPID, "alice").await).await.unwrap_err());
    h.faults(Faults::default()).await;
    let refused = {
        let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    errors.push(
        client(&refused, Duration::from_secs(1))
            .code2session(APPID, &secret(), "code")
            .await
            .unwrap_err(),
    );
    for err in &errors {
        assert_no_secret_in(err);
    }

    let session = h.exchange(&h.code(APPID, "alice").await).await.unwrap();
    let shown = format!("{session:?}");
    assert_no_secret(&shown);
    assert!(!shown.contains(session.session_key.expose()), "{shown}");
    assert!(shown.contains("SessionKey(<redacted>)"), "{shown}");
    assert_no_secret(&format!("{:?}", h.client));
    assert!(!h.base_url.is_empty());

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("code2Session"), "logs were captured: {logs}");
    assert!(
        logs.contains("rid: 1"),
        "errmsg is logged for its request id: {logs}"
    );
    assert_no_secret(&logs);
}
