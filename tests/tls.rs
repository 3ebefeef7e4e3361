//! Built-in HTTPS: the API served over TLS with a certificate made for the test.

mod common;

use std::time::Duration;

use herald::Herald;

#[tokio::test]
async fn the_api_is_served_over_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();

    let config = common::test_config(dir.path());
    let tls = herald::tls::server_config(&cert_path, &key_path).unwrap();
    let herald = Herald::open(config).unwrap();
    let token = herald.service().create_token("t", None).await.unwrap().text;
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let listener = herald::tls::TlsListener::new(tcp, tls).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(herald.serve(listener, async move {
        let _ = stopped.await;
    }));

    // A client that trusts only this certificate, resolving localhost to the test server.
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let r = client
        .get(format!("https://localhost:{port}/api/v1/app"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A client that does not trust the certificate cannot connect, and the server keeps
    // serving afterwards.
    let untrusting = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    assert!(
        untrusting
            .get(format!("https://localhost:{port}/api/v1/health"))
            .send()
            .await
            .is_err()
    );
    let r = client
        .get(format!("https://localhost:{port}/api/v1/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[test]
fn a_missing_certificate_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err =
        herald::tls::server_config(&dir.path().join("nope.pem"), &dir.path().join("nope.key"))
            .unwrap_err();
    assert!(err.to_string().contains("nope.pem"), "{err}");
}
