//! Hostile input at the ingress: 10,000 malformed requests that must each get a clear 4xx while
//! nothing is published and WeChat hears nothing; the per-client login quota (429 with
//! Retry-After) and whom `X-Forwarded-For` is believed from; the in-flight bound (503 at once).
//! Everything stays on 127.0.0.1.

mod bodies;
mod catalogue;
mod flood;
mod limits;

use crate::helpers::TestApp;

/// How many codes were ever published to the codes stream (a work queue forgets acked ones,
/// its last sequence does not).
async fn codes_published(app: &TestApp) -> u64 {
    let client = async_nats::connect(app.nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let name = app.topology().codes_stream();
    let mut stream = js.get_stream(name).await.unwrap();
    stream.info().await.unwrap().state.last_sequence
}
