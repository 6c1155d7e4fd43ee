//! The shop as an attacker on the open internet meets it: every input a stranger controls is
//! bounded. Real server, real sandbox, loopback.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::TestApp;

/// Sends raw bytes on a fresh connection and returns what comes back (bounded wait).
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer)).await;
    answer
}

#[tokio::test]
async fn odd_methods_never_become_metric_labels() {
    let app = TestApp::spawn().await;
    for i in 0..500 {
        let method = format!("X{}{i}", "M".repeat(1000));
        let request = format!("{method} / HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n");
        raw(app.addr, request.as_bytes()).await;
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        !metrics.contains("MMMM"),
        "a client's method became a label"
    );
    assert!(
        metrics.len() < 64 * 1024,
        "/metrics is {} bytes",
        metrics.len()
    );
}
