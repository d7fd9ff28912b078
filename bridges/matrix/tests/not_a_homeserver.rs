//! A `homeserver_url` where no homeserver answers (a web server that says 404
//! to every path) fails the start at once, saying so, rather than as a
//! refused login or a network error retried forever.

use std::time::{Duration, Instant};

use openagentio_core::{Bridge, Bus};
use openagentio_matrix::{MatrixAuth, MatrixBridge, MatrixConfig, Secret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A web server that answers every request with a plain 404 page.
async fn not_found_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let body = "<html><body>Not Found</body></html>";
                let resp = format!(
                    "HTTP/1.1 404 Not Found\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_without_a_homeserver_is_a_config_error() {
    let url = not_found_server().await;
    let state = tempfile::tempdir().unwrap();
    for auth in [
        MatrixAuth::AccessToken {
            token: Secret::new("t".to_owned()),
            user_id: "@bot:example.org".into(),
            device_id: None,
        },
        MatrixAuth::Password {
            user_id: "@bot:example.org".into(),
            password: Secret::new("pw".to_owned()),
            device_id: None,
        },
    ] {
        let cfg = MatrixConfig::new(
            url.clone(),
            auth,
            vec!["!r:example.org".into()],
            state.path(),
        );
        let mut bridge = MatrixBridge::new("mx", cfg);
        let started = Instant::now();
        let err = bridge.start(&Bus::memory()).await.unwrap_err();
        assert!(err.permanent, "{err}");
        assert!(
            err.message.contains("homeserver_url") && err.message.contains("404"),
            "{err}"
        );
        assert!(!err.message.contains("refused"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
}
