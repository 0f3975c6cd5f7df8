//! TLS and mutual TLS on the gRPC listener, with certificates made in the test by `rcgen`.

use std::path::Path;

use crate::common::TestServer;
use phonecheck::config::{Config, TlsConfig};
use phonecheck::pb;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

struct Pki {
    ca_pem: String,
    ca: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Pki {
            ca_pem: cert.pem(),
            ca: Issuer::new(params, key),
        }
    }

    /// A certificate for `names` signed by the CA: (certificate PEM, key PEM).
    fn issue(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

async fn tls_server(dir: &Path, pki: &Pki, mutual: bool) -> TestServer {
    let (cert, key) = pki.issue(&["localhost"]);
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let mut config = Config::from_toml("").unwrap();
    config.server.tls = Some(TlsConfig {
        cert: write("server.pem", &cert),
        key: write("server.key", &key),
        client_ca: mutual.then(|| write("ca.pem", &pki.ca_pem)),
    });
    TestServer::start_in(config, dir).await
}

async fn lookup(
    server: &TestServer,
    tls: ClientTlsConfig,
) -> Result<pb::LookupNumberResponse, tonic::Status> {
    let channel = Channel::from_shared(format!("https://localhost:{}", server.addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("{e:?}")))?;
    let mut client = pb::phone_check_service_client::PhoneCheckServiceClient::new(channel);
    client
        .lookup_number(pb::LookupNumberRequest {
            number: "13800138000".into(),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn tls_serves_clients_that_trust_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let server = tls_server(dir.path(), &pki, false).await;
    let trusted = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost");
    let report = lookup(&server, trusted).await.unwrap().report.unwrap();
    assert_eq!(report.info.unwrap().e164, "+8613800138000");
    // A client that does not trust the server's CA does not get through.
    let other = Pki::new();
    let untrusted = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&other.ca_pem))
        .domain_name("localhost");
    assert!(lookup(&server, untrusted).await.is_err());
    // Nor does plaintext.
    let plain = server
        .client()
        .lookup_number(pb::LookupNumberRequest {
            number: "13800138000".into(),
            ..Default::default()
        })
        .await;
    assert!(plain.is_err());
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let server = tls_server(dir.path(), &pki, true).await;
    let base = || {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&pki.ca_pem))
            .domain_name("localhost")
    };
    let (cert, key) = pki.issue(&["client.example"]);
    let with_identity = base().identity(Identity::from_pem(cert, key));
    lookup(&server, with_identity).await.unwrap();
    assert!(
        lookup(&server, base()).await.is_err(),
        "no client certificate"
    );
    let stranger = Pki::new();
    let (cert, key) = stranger.issue(&["client.example"]);
    let foreign = base().identity(Identity::from_pem(cert, key));
    assert!(
        lookup(&server, foreign).await.is_err(),
        "a certificate from another CA"
    );
}

#[test]
fn unreadable_or_non_pem_files_are_reported_at_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), "not pem").unwrap();
    let err = Config::from_toml(&format!(
        "[server.tls]\ncert = \"{0}/cert.pem\"\nkey = \"{0}/missing.key\"\n",
        dir.path().display()
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("server.tls.cert") && err.contains("not a PEM file"),
        "{err}"
    );
    assert!(
        err.contains("server.tls.key") && err.contains("cannot read"),
        "{err}"
    );
}
