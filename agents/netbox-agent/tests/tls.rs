//! https to NetBox: a TLS front (rustls, a certificate made for 127.0.0.1
//! by rcgen) before the stateful NetBox fake on loopback. With the CA file
//! the sync works; without it the certificate is refused (verification is
//! always on) and nothing is sent.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use agent_runtime::Secret;
use fake_upstreams::NetBoxModel;
use netbox_agent::client::Client;
use netbox_agent::model::{Host, Iface, IpSpec, Source};
use netbox_agent::sync::{self, SyncRequest, SyncSettings};
use netbox_agent::transport::Endpoint;

/// Accepts TLS on a loopback port and pipes each connection to `plain`.
async fn tls_front(
    plain: std::net::SocketAddr,
    dir: &std::path::Path,
) -> (u16, std::path::PathBuf) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let der = rustls::pki_types::CertificateDer::from(cert.cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.key_pair.serialize_der()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![der], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut up) = tokio::net::TcpStream::connect(plain).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    (port, ca)
}

fn request() -> SyncRequest {
    let mut h = Host::device(Source::Inventory, "inventory:nas01", "nas01");
    h.interfaces.push(Iface {
        name: "eth0".into(),
        mac: None,
        kind: "other".into(),
        ips: vec![IpSpec {
            address: "192.168.1.20/24".into(),
            dns_name: String::new(),
        }],
    });
    SyncRequest {
        hosts: vec![h],
        authoritative: BTreeSet::from([Source::Inventory]),
        full: true,
        today: "2026-11-26".into(),
        now: time::OffsetDateTime::now_utc(),
        dry_run: false,
    }
}

fn settings() -> SyncSettings {
    SyncSettings {
        site: "Homelab".into(),
        tag: "netbox-agent".into(),
        batch_size: 100,
        prune: true,
        prune_after_days: 7,
        adopt_existing: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_ca_file_works_and_without_it_is_refused() {
    let nb = NetBoxModel::new(None)
        .unwrap()
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (port, ca) = tls_front(nb.handle.addr(), dir.path()).await;
    let url = format!("https://127.0.0.1:{port}");

    let ok = Client::new(
        Endpoint::parse(&url, Some(&ca)).unwrap(),
        Secret::new("<TOKEN>"),
        Duration::from_secs(10),
        2,
        Duration::from_millis(10),
    );
    let out = sync::run(&ok, &settings(), &request()).await.unwrap();
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(nb.model.count("dcim/devices"), 1);

    let before = nb.model.stats().requests;
    let untrusted = Client::new(
        Endpoint::parse(&url, None).unwrap(),
        Secret::new("<TOKEN>"),
        Duration::from_secs(10),
        2,
        Duration::from_millis(10),
    );
    let e = sync::run(&untrusted, &settings(), &request())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("TLS") && e.contains("certificate"), "{e}");
    assert_eq!(nb.model.stats().requests, before, "nothing reached NetBox");
}
