//! TLS per terminal, against a real TLS server on 127.0.0.1 that presents a `*.kaspipos.kz`
//! certificate from a private CA, as real terminals present theirs: reached by IP, the name check
//! fails unless the client verifies as `pos.kaspipos.kz`.

// Test code: a panic is a failed assertion with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use byfly_terminal::{Terminal, TerminalConfig, TerminalError, TlsMode, Tokens};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A TLS server answering every request with a `deviceinfo` success. Returns its port and the CA's PEM.
async fn tls_terminal() -> (u16, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["*.kaspipos.kz".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();

    let chain = vec![
        CertificateDer::from(leaf.der().to_vec()),
        CertificateDer::from(ca.der().to_vec()),
    ];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut request = [0u8; 4096];
                let _ = tls.read(&mut request).await;
                let body = r#"{"statusCode":0,"data":{"posNum":"1","serialNum":"S1","terminalId":"T-TLS"}}"#;
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, ca.pem())
}

fn terminal(port: u16, tls: TlsMode, ca: Option<&str>) -> Terminal {
    let mut config = TerminalConfig::new(format!("https://127.0.0.1:{port}"));
    config.tls = tls;
    config.ca_certificates_pem = ca.map(str::to_owned);
    let tokens = Tokens {
        access_token: "a".into(),
        refresh_token: "r".into(),
        expires_at: None,
    };
    Terminal::new(&config, Some(tokens)).unwrap()
}

#[tokio::test]
async fn verify_as_the_certificates_name_while_connecting_by_ip() {
    let (port, ca) = tls_terminal().await;
    let verify_as = TlsMode::VerifyAs {
        server_name: "pos.kaspipos.kz".into(),
    };
    let info = terminal(port, verify_as, Some(&ca)).device_info().await.unwrap();
    assert_eq!(info.terminal_id.as_deref(), Some("T-TLS"));
}

#[tokio::test]
async fn plain_verification_by_ip_fails_the_name_check() {
    let (port, ca) = tls_terminal().await;
    let by_ip = terminal(port, TlsMode::Verify, Some(&ca)).device_info().await;
    assert!(
        matches!(by_ip, Err(TerminalError::Unreachable(ref text)) if text.to_lowercase().contains("certificate")),
        "{by_ip:?}"
    );
}

#[tokio::test]
async fn an_untrusted_ca_fails_and_insecure_accepts_anything() {
    let (port, _ca) = tls_terminal().await;
    let verify_as = TlsMode::VerifyAs {
        server_name: "pos.kaspipos.kz".into(),
    };
    let untrusted = terminal(port, verify_as, None).device_info().await;
    assert!(
        matches!(untrusted, Err(TerminalError::Unreachable(_))),
        "{untrusted:?}"
    );
    let insecure = terminal(port, TlsMode::Insecure, None)
        .device_info()
        .await
        .unwrap();
    assert_eq!(insecure.terminal_id.as_deref(), Some("T-TLS"));
}

#[tokio::test]
async fn a_ca_bundle_without_certificates_is_a_configuration_error() {
    let mut config = TerminalConfig::new("https://127.0.0.1:8080");
    config.ca_certificates_pem = Some("not a certificate".into());
    assert!(matches!(
        Terminal::new(&config, None),
        Err(TerminalError::Config(_))
    ));
}
