//! Issue #20, the HTTP half: no crowd of idle sockets locks the dashboard out (TLS handshakes,
//! half-sent requests), no web page reads the open loopback API through a rebound DNS name,
//! and no other site logs the browser in.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ember_collector::Config;

use crate::harness::Running;

/// A collector serving HTTPS with a certificate for `localhost` from a new CA: the collector,
/// and the CA's certificate (PEM).
async fn https_collector(name: &str) -> (Running, Vec<u8>) {
    let (files, ca) = crate::harness::tls_files(name);
    let c = Running::start(move |c: &mut Config| c.http.tls = Some(files)).await;
    (c, ca.into_bytes())
}

/// Issue #20 (finding 4): 64 sockets that connect and say nothing held every TLS handshake
/// slot for 10 s each, and the dashboard stopped answering. Now 200 of them leave a real client
/// its page within 2 s, each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_20_idle_sockets_do_not_starve_https() {
    let (c, ca) = https_collector("https-idle").await;
    let addr = c.collector.http_addr;
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let port = addr.port();
    let took = tokio::task::spawn_blocking(move || {
        use ureq::tls::{Certificate, RootCerts, TlsConfig};
        let roots = RootCerts::Specific(Arc::new(vec![Certificate::from_pem(&ca).unwrap()]));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            .build()
            .into();
        (0..3)
            .map(|i| {
                let started = Instant::now();
                let r = agent
                    .get(format!("https://localhost:{port}/api/health"))
                    .header("Connection", "close")
                    .call()
                    .unwrap_or_else(|e| panic!("request {i} with 200 idle sockets open: {e}"));
                assert_eq!(r.status(), 200);
                started.elapsed()
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(took.iter().all(|t| *t < Duration::from_secs(2)), "{took:?}");
    drop(idle);
}
