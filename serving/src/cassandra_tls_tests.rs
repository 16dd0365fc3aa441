//! TLS to Cassandra: the context built from the settings, and a real handshake with a
//! local TLS server (not a CQL server: the handshake is what is tested; the session
//! fails after it). Certificates are made here, with OpenSSL.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::mpsc;

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::ssl::{SslAcceptor, SslMethod, SslVerifyMode};
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509, X509NameBuilder};

use super::*;

fn key() -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
}

/// A certificate for `cn`, signed by `issuer` (self-signed when `None`), for
/// 127.0.0.1 when `server`.
fn cert(cn: &str, key: &PKey<Private>, issuer: Option<(&X509, &PKey<Private>)>, ca: bool) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(
        &BigNum::from_u32(rand_serial())
            .unwrap()
            .to_asn1_integer()
            .unwrap(),
    )
    .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(issuer.map_or(&name, |(c, _)| c.subject_name()))
        .unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    if ca {
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
    } else {
        let san = SubjectAlternativeName::new()
            .ip("127.0.0.1")
            .build(&b.x509v3_context(issuer.map(|(c, _)| c.as_ref()), None))
            .unwrap();
        b.append_extension(san).unwrap();
    }
    b.sign(issuer.map_or(key, |(_, k)| k), MessageDigest::sha256())
        .unwrap();
    b.build()
}

fn rand_serial() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

struct Pki {
    ca: X509,
    server: (X509, PKey<Private>),
    /// Files: ca.pem, client.pem, client.key, other-ca.pem, other.key.
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = key();
        let ca = cert("test ca", &ca_key, None, true);
        let server_key = key();
        let server = cert("127.0.0.1", &server_key, Some((&ca, &ca_key)), false);
        let client_key = key();
        let client = cert("pipeline-client", &client_key, Some((&ca, &ca_key)), false);
        let other_key = key();
        let other_ca = cert("another ca", &other_key, None, true);
        let write = |name: &str, pem: Vec<u8>| std::fs::write(dir.path().join(name), pem).unwrap();
        write("ca.pem", ca.to_pem().unwrap());
        write("client.pem", client.to_pem().unwrap());
        write("client.key", client_key.private_key_to_pem_pkcs8().unwrap());
        write("other-ca.pem", other_ca.to_pem().unwrap());
        write("other.key", other_key.private_key_to_pem_pkcs8().unwrap());
        Pki {
            ca,
            server: (server, server_key),
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn settings(&self, port: u16, ca: &str, client: Option<(&str, &str)>) -> CassandraSettings {
        let mut s =
            CassandraSettings::from_env(&format!("cassandra://127.0.0.1:{port}/ks"), |_| None)
                .unwrap();
        s.tls_ca = Some(self.path(ca));
        if let Some((c, k)) = client {
            s.tls_cert = Some(self.path(c));
            s.tls_key = Some(self.path(k));
        }
        s
    }
}

/// A TLS server on loopback that requires a client certificate signed by `ca`, does
/// one handshake and reports the client certificate's common name (or the error).
fn tls_server(pki: &Pki) -> (u16, mpsc::Receiver<Result<String, String>>) {
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    acceptor.set_certificate(&pki.server.0).unwrap();
    acceptor.set_private_key(&pki.server.1).unwrap();
    acceptor.cert_store_mut().add_cert(pki.ca.clone()).unwrap();
    acceptor.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    let acceptor = acceptor.build();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // The driver may open more than one connection; report the first handshake.
        if let Ok((stream, _)) = listener.accept() {
            let r = acceptor
                .accept(stream)
                .map(|s| {
                    s.ssl()
                        .peer_certificate()
                        .and_then(|c| {
                            c.subject_name()
                                .entries()
                                .next()
                                .map(|e| String::from_utf8_lossy(e.data().as_slice()).into_owned())
                        })
                        .unwrap_or_default()
                })
                .map_err(|e| e.to_string());
            let _ = tx.send(r);
        }
    });
    (port, rx)
}

fn handshake(pki: &Pki, ca: &str, client: Option<(&str, &str)>) -> Result<String, String> {
    let (port, rx) = tls_server(pki);
    let settings = pki.settings(port, ca, client);
    // Not a CQL server: the session fails once the handshake is done (or refused).
    assert!(CassandraStore::connect(settings).is_err());
    rx.recv_timeout(std::time::Duration::from_secs(30))
        .unwrap_or_else(|_| Err("no handshake".into()))
}

#[test]
fn mutual_tls_reaches_the_server_with_the_client_certificate() {
    let pki = Pki::new();
    assert_eq!(
        handshake(&pki, "ca.pem", Some(("client.pem", "client.key"))),
        Ok("pipeline-client".to_owned())
    );
}

#[test]
fn a_cluster_certificate_from_another_ca_is_refused() {
    let pki = Pki::new();
    let r = handshake(&pki, "other-ca.pem", Some(("client.pem", "client.key")));
    assert!(
        r.is_err(),
        "the client accepted a server its CA did not sign: {r:?}"
    );
}

#[test]
fn a_server_that_wants_a_client_certificate_gets_none_without_one() {
    let pki = Pki::new();
    assert!(handshake(&pki, "ca.pem", None).is_err());
}

#[test]
fn tls_settings_errors_name_the_file() {
    let pki = Pki::new();
    assert!(
        tls_context(&pki.settings(9042, "ca.pem", None))
            .unwrap()
            .is_some()
    );
    let mut plain = pki.settings(9042, "ca.pem", None);
    plain.tls_ca = None;
    assert!(
        tls_context(&plain).unwrap().is_none(),
        "no TLS without a CA or certificate"
    );
    let err = |s: CassandraSettings| match tls_context(&s) {
        Ok(_) => panic!("accepted"),
        Err(e) => format!("{e:#}"),
    };
    let e = err(pki.settings(9042, "missing.pem", None));
    assert!(e.contains("missing.pem"), "{e}");
    let e = err(pki.settings(9042, "client.key", None));
    assert!(e.contains("no PEM certificate"), "{e}");
    let e = err(pki.settings(9042, "ca.pem", Some(("client.pem", "other.key"))));
    assert!(e.contains("does not belong"), "{e}");
    let e = err(pki.settings(9042, "ca.pem", Some(("missing.pem", "client.key"))));
    assert!(e.contains("missing.pem"), "{e}");
}
