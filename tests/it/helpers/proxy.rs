//! A delaying TCP proxy: every byte is forwarded, in order, `delay` after it arrived, each way,
//! as if the other end were that far away (workers in another zone, an R3 leader election that
//! stalls NATS). The delay can be changed while connections are open, so a test can slow NATS
//! down in the middle of a load and speed it up again. It can also cut every connection and
//! refuse new ones for a while ([`DelayProxy::cut`]): the chaos run's database outage, without
//! touching the machine's shared PostgreSQL.

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
    sync::{mpsc, watch},
    time::Instant,
};

/// A proxy on `127.0.0.1:<random port>` in front of one TCP address; stops on drop.
pub struct DelayProxy {
    port: u16,
    delay_us: Arc<AtomicU64>,
    /// Until when (ms on the proxy's own clock, 0: not) connections are cut and refused.
    cut: watch::Sender<Option<Instant>>,
    accept: tokio::task::JoinHandle<()>,
}

impl DelayProxy {
    /// Starts forwarding to `target` (`host:port`), each way `delay` late.
    pub async fn start(target: &str, delay: Duration) -> DelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let delay_us = Arc::new(AtomicU64::new(delay.as_micros() as u64));
        let (cut, cut_rx) = watch::channel(None);
        let (target, shared) = (target.to_string(), delay_us.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (target, delay, mut cut) = (target.clone(), shared.clone(), cut_rx.clone());
                let refusing = |until: &Option<Instant>| until.is_some_and(|u| Instant::now() < u);
                if refusing(&cut.borrow_and_update()) {
                    continue; // dropped: the client sees its connection closed at once
                }
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let _ = (client.set_nodelay(true), server.set_nodelay(true));
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let both = async {
                        tokio::join!(pump(cr, sw, delay.clone()), pump(sr, cw, delay));
                    };
                    // A cut drops both halves mid-stream, as a failed network or server would.
                    tokio::select! {
                        () = both => {}
                        _ = cut.wait_for(|until| until.is_some()) => {}
                    }
                });
            }
        });
        DelayProxy {
            port,
            delay_us,
            cut,
            accept,
        }
    }

    /// Cuts every open connection and refuses new ones for `down`.
    pub fn cut(&self, down: Duration) {
        self.cut.send_replace(Some(Instant::now() + down));
        // Connections made after the outage are not cut by this one.
        let cut = self.cut.clone();
        tokio::spawn(async move {
            tokio::time::sleep(down).await;
            cut.send_replace(None);
        });
    }

    /// The proxy's port (what a client connects to instead of the target's).
    pub fn port(&self) -> u16 {
        self.port
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
