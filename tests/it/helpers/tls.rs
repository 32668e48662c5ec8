//! A TLS front for the simulator: a private, self-signed CA, a server certificate for
//! 127.0.0.1 issued by it, and a listener that terminates TLS and relays the bytes to the
//! simulator. For the tests that show TLS verification toward WeChat is on.

use std::{
    net::SocketAddr,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};

/// A private CA (self-signed) and a server certificate for 127.0.0.1 issued by it.
pub struct Pki {
    pub ca_pem: String,
    /// The server certificate and its key as PEM, for servers that read files (nats-server).
    pub server_cert_pem: String,
    pub server_key_pem: String,
    server_cert: rustls::pki_types::CertificateDer<'static>,
    server_key: PrivateKeyDer<'static>,
}

pub fn pki() -> Pki {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "wxlogin test private CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "api.weixin.test");
    let leaf = leaf.signed_by(&key, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        server_cert_pem: leaf.pem(),
        server_key_pem: key.serialize_pem(),
        server_cert: leaf.der().clone(),
        server_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

/// An HTTPS front: terminates TLS and relays the bytes to the upstream (the simulator), which
/// is set once it exists. Counts handshakes that succeeded and failed.
pub struct TlsFront {
    pub addr: SocketAddr,
    pub upstream: Arc<OnceLock<SocketAddr>>,
    pub handshakes_ok: Arc<AtomicUsize>,
    pub handshakes_failed: Arc<AtomicUsize>,
}

pub async fn tls_front(pki: &Pki) -> TlsFront {
    // Both ring and aws-lc-rs are compiled into this test binary: name the provider.
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![pki.server_cert.clone()], pki.server_key.clone_key())
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front = TlsFront {
        addr: listener.local_addr().unwrap(),
        upstream: Arc::new(OnceLock::new()),
        handshakes_ok: Arc::default(),
        handshakes_failed: Arc::default(),
    };
    let (upstream, ok, failed) = (
        front.upstream.clone(),
        front.handshakes_ok.clone(),
        front.handshakes_failed.clone(),
    );
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, upstream, ok, failed) = (
                acceptor.clone(),
                upstream.clone(),
                ok.clone(),
                failed.clone(),
            );
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    failed.fetch_add(1, Ordering::SeqCst);
                    return;
                };
                ok.fetch_add(1, Ordering::SeqCst);
                let Some(addr) = upstream.get() else { return };
                if let Ok(mut plain) = TcpStream::connect(addr).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    front
}
