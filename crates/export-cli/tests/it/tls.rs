//! `exportctl` over HTTPS to a server whose certificate a private CA issued: refused
//! without `--ca-file`, accepted with it (or `EXPORTCTL_CA_FILE`); a bad CA file is an
//! error naming the file.

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::support::{run, Server, ServerOptions};

/// A private CA's certificate (PEM) and a TLS server config for `localhost` issued by it.
fn private_ca() -> (String, ServerConfig) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    (ca_cert.pem(), config)
}

/// Terminates TLS on `listener` and forwards each connection to `backend` (a real
/// `export-center serve`, which speaks plain HTTP behind it), on a thread of its own.
fn serve_tls(listener: std::net::TcpListener, config: ServerConfig, backend: SocketAddr) {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = TcpListener::from_std(listener).unwrap();
            let acceptor = TlsAcceptor::from(Arc::new(config));
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that refuses the certificate ends the handshake.
                    let Ok(mut client) = acceptor.accept(client).await else {
                        return;
                    };
                    let Ok(mut server) = TcpStream::connect(backend).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
    });
}

#[test]
fn a_server_with_a_private_ca_is_reached_only_with_its_ca_file() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let https = format!("https://localhost:{}", listener.local_addr().unwrap().port());
    let server = Server::start_with(ServerOptions {
        public_base_url: Some(https.clone()),
        ..ServerOptions::default()
    });
    let backend = server.url().trim_start_matches("http://").parse().unwrap();
    let (ca_pem, config) = private_ca();
    serve_tls(listener, config, backend);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();

    let refused = server.run(&["--server", &https, "profiles"]);
    assert_ne!(refused.code, 0, "{refused}");
    assert!(refused.stderr.contains("certificate"), "{refused}");

    let listed = server.run(&[
        "--server",
        &https,
        "--ca-file",
        ca_file.to_str().unwrap(),
        "--json",
        "profiles",
    ]);
    listed.success();
    assert_eq!(
        listed.json()["items"][0]["id"],
        "export-profile::tenant-default::default",
        "{listed}"
    );

    let mut command = server.exportctl();
    command
        .env("EXPORTCTL_CA_FILE", &ca_file)
        .args(["--server", &https, "profiles"]);
    run(command).success();
}

#[test]
fn a_bad_ca_file_is_an_error_naming_the_file_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let token = crate::support::offline_token(dir.path());
    let missing = dir.path().join("missing.pem");
    let not_pem = dir.path().join("not-pem.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    for (file, reason) in [(&missing, "No such file"), (&not_pem, "no PEM certificate")] {
        let mut command = std::process::Command::new(crate::support::exportctl_binary());
        command
            .env_remove("EXPORTCTL_CA_FILE")
            .args(["--server", "https://localhost:1", "--token-file"])
            .arg(&token)
            .arg("--ca-file")
            .arg(file)
            .arg("profiles");
        let failed = run(command);
        assert_eq!(failed.code, 1, "{failed}");
        assert!(
            failed.stderr.contains(&format!("--ca-file {}", file.display())),
            "{failed}"
        );
        assert!(failed.stderr.contains(reason), "{failed}");
    }
}
