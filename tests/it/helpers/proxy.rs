//! A delaying TCP proxy: every byte is forwarded, in order, `delay` after it arrived, each way,
//! as if the other end were that far away (workers in another zone, an R3 leader election that
//! stalls NATS). The delay can be changed while connections are open, so a test can slow NATS
//! down in the middle of a load and speed it up again; chaos tests can reuse it for any TCP
//! service (NATS, the database, the simulator).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    time::Instant,
};

/// A proxy on `127.0.0.1:<random port>` in front of one TCP address; stops on drop.
pub struct DelayProxy {
    port: u16,
    delay_us: Arc<AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

impl DelayProxy {
    /// Starts forwarding to `target` (`host:port`), each way `delay` late.
    pub async fn start(target: &str, delay: Duration) -> DelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let delay_us = Arc::new(AtomicU64::new(delay.as_micros() as u64));
        let (target, shared) = (target.to_string(), delay_us.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (target, delay) = (target.clone(), shared.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let _ = (client.set_nodelay(true), server.set_nodelay(true));
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pump(cr, sw, delay.clone()), pump(sr, cw, delay));
                });
            }
        });
        DelayProxy {
            port,
            delay_us,
            accept,
        }
    }

    /// Bytes read from now on are forwarded this late (bytes already read keep their time).
    pub fn set_delay(&self, delay: Duration) {
        self.delay_us
            .store(delay.as_micros() as u64, Ordering::Relaxed);
    }

    /// The proxy's address as a NATS URL.
    pub fn nats_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies `from` to `to`, each chunk held until `delay` after it was read. Reading goes on
/// while chunks wait (a queue between the two halves), so the delay adds latency, not a
/// bandwidth limit; and never less than the last chunk's due time, so the order holds when
/// the delay is lowered.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay_us: Arc<AtomicU64>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut last_due = Instant::now();
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let delay = Duration::from_micros(delay_us.load(Ordering::Relaxed));
                    last_due = last_due.max(Instant::now() + delay);
                    if tx.send((last_due, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
