//! Hostile input at the ingress: 10,000 malformed requests that must each get a clear 4xx while
//! nothing is published and WeChat hears nothing; the per-client login quota (429 with
//! Retry-After) and whom `X-Forwarded-For` is believed from; the in-flight bound (503 at once);
//! keep-alive that a pooled client can trust through refusals.
//! Everything stays on 127.0.0.1.

mod bodies;
mod catalogue;
mod flood;
mod keep_alive;
mod limits;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::TestApp;

/// Sends raw bytes on a connection of its own and keeps it open until the answer's head has
/// arrived; the head, as text.
async fn raw_head(api: &str, request: &[u8]) -> String {
    let addr = api.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let read = async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed without an answer");
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("an answer within 20 s");
    String::from_utf8_lossy(&buf).into_owned()
}

/// How many codes were ever published to the codes stream (a work queue forgets acked ones,
/// its last sequence does not).
async fn codes_published(app: &TestApp) -> u64 {
    let client = async_nats::connect(app.nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let name = app.topology().codes_stream();
    let mut stream = js.get_stream(name).await.unwrap();
    stream.info().await.unwrap().state.last_sequence
}
