//! TLS on its own port (rustls): a client that trusts the server's certificate runs commands
//! over it, the plain port keeps working, and a bad certificate file is refused at start.

mod common;

use std::sync::Arc;

use quipu::server::{Server, ServerConfig, TlsConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_run_over_tls_and_plain_alike() {
    let dir = common::tempdir();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, generated.cert.pem()).unwrap();
    std::fs::write(&key_path, generated.signing_key.serialize_pem()).unwrap();
    let server = Server::start(ServerConfig {
        data_dir: dir.path().join("data"),
        port: 0,
        http_enabled: false,
        tls: Some(TlsConfig {
            port: 0,
            cert: cert_path,
            key: key_path,
        }),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let tls_addr = server.tls_addr().unwrap();

    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(generated.cert.der().to_vec()))
        .unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let client_config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(client_config));
    let tcp = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(
        b"*3\r\n$3\r\nSET\r\n$4\r\ncard\r\n$4\r\n4242\r\n*2\r\n$3\r\nGET\r\n$4\r\ncard\r\n",
    )
    .await
    .unwrap();
    let want = b"+OK\r\n$4\r\n4242\r\n";
    let mut got = vec![0u8; want.len()];
    tls.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, want);

    // The same key through the plain port.
    let mut plain = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    plain.write_all(b"GET card\r\n").await.unwrap();
    let mut got = vec![0u8; 10];
    plain.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"$4\r\n4242\r\n");

    // A client speaking plain RESP to the TLS port gets nothing served and the server stays up.
    let mut wrong = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
    wrong.write_all(b"PING\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(15), wrong.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert!(!buf[..n].starts_with(b"+PONG"));
    plain.write_all(b"PING\r\n").await.unwrap();
    let mut got = vec![0u8; 7];
    plain.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"+PONG\r\n");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_missing_or_bad_certificate_is_refused_at_start() {
    let dir = common::tempdir();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    for cert in [dir.path().join("missing.pem"), garbage] {
        let e = Server::start(ServerConfig {
            data_dir: dir.path().join("data"),
            port: 0,
            http_enabled: false,
            tls: Some(TlsConfig {
                port: 0,
                cert: cert.clone(),
                key: cert,
            }),
            ..ServerConfig::default()
        })
        .await
        .unwrap_err();
        assert!(e.to_string().contains("tls"), "{e}");
    }
}
