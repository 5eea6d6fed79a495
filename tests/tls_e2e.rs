//! Outbound TLS: certificates are verified, a per-alert `ca_file` adds trust, and
//! `tls_insecure` (explicit only, logged loudly) skips verification.

mod common;

use common::{error_trace, Daemon};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An HTTPS receiver on loopback with a fresh self-signed certificate for 127.0.0.1.
struct TlsReceiver {
    url: String,
    ca_pem: String,
    hits: Arc<AtomicUsize>,
}

async fn tls_receiver() -> TlsReceiver {
    let _ = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let ca_pem = cert.pem();
    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                break;
            };
            let acceptor = acceptor.clone();
            let h = h.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let app = axum::Router::new().fallback(move || {
                    let h = h.clone();
                    async move {
                        h.fetch_add(1, Ordering::SeqCst);
                        "ok"
                    }
                });
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
    TlsReceiver {
        url: format!("https://127.0.0.1:{}/hook", addr.port()),
        ca_pem,
        hits,
    }
}

fn alert(id: &str, url: &str, extra: &str) -> String {
    format!(
        "[[alert]]\nid = \"{id}\"\nurl = \"{url}\"\n{extra}\n[[alert.trigger]]\nevent = \"trace:errors\"\nprojects = [\"{id}\"]\nthreshold = 0\nwindow = \"5m\"\n"
    )
}

const ENGINE: &str = "[engine]\ntick = \"200ms\"\n[delivery]\nmax_retries = 0\n";

async fn wait_hits(r: &TlsReceiver, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while r.hits.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < deadline, "expected {n} TLS request(s)");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_certificate_is_refused_and_ca_file_or_tls_insecure_allow_it() {
    let dir = tempfile::tempdir().unwrap();
    let rx = tls_receiver().await;
    std::fs::write(dir.path().join("ca.pem"), &rx.ca_pem).unwrap();
    let cfg = ENGINE.to_string()
        + &alert("strict", &rx.url, "")
        + &alert("trusted", &rx.url, "ca_file = \"ca.pem\"")
        + &alert("insecure", &rx.url, "tls_insecure = true");
    let d = Daemon::start(dir.path(), &cfg).await;
    assert!(
        d.logs().contains("TLS CERTIFICATE VERIFICATION IS OFF"),
        "the insecure alert is logged loudly"
    );

    d.send(&[error_trace("trusted")]).await;
    wait_hits(&rx, 1).await;
    d.send(&[error_trace("insecure")]).await;
    wait_hits(&rx, 2).await;

    d.send(&[error_trace("strict")]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let (_, v) = d.get("/v1/deliveries?status=dead").await;
        if let Some(row) = v["deliveries"].as_array().and_then(|a| a.first().cloned()) {
            break row;
        }
        assert!(Instant::now() < deadline, "the strict alert never failed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dead["alert_id"], "strict");
    // Refused for its certificate, not for any other reason a request can fail.
    let why = dead["last_error"].as_str().unwrap_or_default();
    assert!(
        why.to_lowercase().contains("certificate"),
        "the dead letter names the certificate problem: {dead}"
    );
    assert_eq!(
        rx.hits.load(Ordering::SeqCst),
        2,
        "no request passed an unverified handshake"
    );
}

#[test]
fn a_ca_file_without_certificates_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "not a certificate").unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        common::config_text(
            7000,
            dir.path(),
            &alert("a", "https://127.0.0.1:1/", "ca_file = \"ca.pem\""),
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_alertd"))
        .args(["check-config", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("alert \"a\": ca_file") && err.contains("no PEM certificate"),
        "{err}"
    );
}
