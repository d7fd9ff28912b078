//! Messages larger than the NATS server carries (`max_payload`), with a real
//! nats-server set to a 64 KiB limit.
//!
//! Proves that such a message is never lost silently nor waited for until a
//! deadline:
//! - a request too large fails at once with `INVALID_REQUEST` (not
//!   retryable: sending it again cannot help), and says why;
//! - a handler whose final answer is too large gets the error from `finish`,
//!   and its caller gets an error frame at once, not a timeout;
//! - a stream whose delta is too large ends with an error frame;
//! - messages within the limit still go through on the same buses.

use std::time::{Duration, Instant};

use openagentio_core::{Bus, CallOptions, ErrorCode, StreamWriter};
use openagentio_testkit::{NatsServer, nats_bus};
use serde_json::{Value, json};

const LIMIT: usize = 64 * 1024;
/// Far above what a fast error takes: a lost answer would show as this.
const TIMEOUT: Duration = Duration::from_secs(20);

fn text_of(bytes: usize) -> String {
    "x".repeat(bytes)
}

async fn buses(nats: &NatsServer) -> (Bus, Bus) {
    let caller = nats_bus(&nats.url(), Bus::builder().agent_id("caller")).await;
    let server = nats_bus(&nats.url(), Bus::builder().agent_id("server")).await;
    (caller, server)
}

fn opts() -> CallOptions {
    CallOptions::default().timeout(TIMEOUT)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_the_servers_limit_fail_at_once_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nats.conf");
    std::fs::write(&conf, format!("max_payload: {LIMIT}\n")).unwrap();
    let nats = NatsServer::start_with_args(&["-c", conf.to_str().unwrap()]);
    let (caller, server) = buses(&nats).await;

    server
        .handle_invoke("echo", |req| async move { Ok(req.into_payload()) })
        .await
        .unwrap();
    // Answers with `bytes` bytes of text.
    server
        .handle_invoke("grow", |req| async move {
            let bytes = req.payload()["bytes"].as_u64().unwrap_or(0) as usize;
            Ok(json!({ "text": text_of(bytes) }))
        })
        .await
        .unwrap();
    server
        .handle_stream("deltas", |req, w: StreamWriter| async move {
            let bytes = req.payload()["bytes"].as_u64().unwrap_or(0) as usize;
            w.delta_text("small").await?;
            w.delta_text(text_of(bytes)).await?;
            w.finish(json!("done")).await
        })
        .await
        .unwrap();

    // Within the limit: served.
    let small = caller
        .invoke_with("echo", json!({ "text": text_of(1000) }), opts())
        .await
        .unwrap();
    assert_eq!(
        small.payload_or_null()["text"].as_str().unwrap().len(),
        1000
    );

    // The request itself is too large.
    let started = Instant::now();
    let err = caller
        .invoke_with("echo", json!({ "text": text_of(2 * LIMIT) }), opts())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidRequest, "{err}");
    assert!(!err.retryable(), "{err}");
    assert!(err.message().contains("too large"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2), "{err}");

    // The answer is too large: the caller hears of it at once.
    let started = Instant::now();
    let err = caller
        .invoke_with("grow", json!({ "bytes": 2 * LIMIT }), opts())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidRequest, "{err}");
    assert!(
        err.message().contains("answer could not be sent") && err.message().contains("too large"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );

    // A delta too large: the handler's `?` ends the stream with an error frame.
    let started = Instant::now();
    let mut stream = caller
        .stream_invoke_with("deltas", json!({ "bytes": 2 * LIMIT }), opts())
        .await
        .unwrap();
    let mut frames: Vec<Result<openagentio_core::Envelope, _>> = Vec::new();
    while let Some(f) = stream.next().await {
        frames.push(f);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        frames[0].as_ref().unwrap().payload_or_null()["delta"],
        Value::from("small")
    );
    let last = frames.last().unwrap();
    let err = last
        .as_ref()
        .map(|f| f.error())
        .unwrap_or_else(|e| Some(e.clone()));
    let err = err.expect("the stream ends with an error");
    assert_eq!(err.code(), ErrorCode::InvalidRequest, "{err}");
    assert!(err.message().contains("too large"), "{err}");

    // The buses serve on.
    let again = caller
        .invoke_with("grow", json!({ "bytes": 10 }), opts())
        .await
        .unwrap();
    assert_eq!(again.payload_or_null()["text"], Value::from(text_of(10)));
}

/// Names too long for a subject: the server reads command lines of at most
/// 4,096 bytes and cuts the connection of a client that sends a longer one,
/// with every call on it. A long target, event type, tenant or queue group
/// is refused with `INVALID_REQUEST` naming it, and a peer's request with a
/// reply subject that long is not served; the connection stays up and
/// serves the calls around them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_too_long_for_a_subject_are_refused_and_the_connection_stays() {
    use openagentio_core::transport::Message;
    use openagentio_core::{HandleOptions, SubscribeOptions};

    let nats = NatsServer::start();
    let (caller, server) = buses(&nats).await;
    server
        .handle_invoke("echo", |req| async move { Ok(req.into_payload()) })
        .await
        .unwrap();
    server.transport().flush().await.unwrap();
    let long = "a".repeat(5000);

    let invalid = |e: openagentio_core::BusError, what: &str| {
        assert_eq!(e.code(), ErrorCode::InvalidRequest, "{what}: {e}");
        assert!(e.message().contains("5000 bytes long"), "{what}: {e}");
    };
    invalid(
        caller.invoke(&long, json!(null)).await.unwrap_err(),
        "target",
    );
    invalid(
        caller
            .invoke_with("echo", json!(null), opts().tenant(&long))
            .await
            .unwrap_err(),
        "tenant",
    );
    invalid(
        caller
            .publish(openagentio_core::Envelope::new(long.as_str()))
            .await
            .unwrap_err(),
        "event type",
    );
    invalid(
        caller
            .subscribe_with("note", SubscribeOptions::new().queue(&long), |_| async {
                Ok(())
            })
            .await
            .err()
            .expect("refused"),
        "queue group",
    );
    invalid(
        server
            .handle_invoke_with("other", HandleOptions::new().queue(&long), |_| async {
                Ok(Value::Null)
            })
            .await
            .err()
            .expect("refused"),
        "handler queue group",
    );
    // A request from a peer whose reply subject is too long to answer on.
    let mut request = openagentio_core::Envelope::new("agent.message.received");
    request.reply_to = format!("_INBOX.{long}").into();
    request.to = "echo".into();
    caller
        .transport()
        .publish(Message::envelope("acp.v1.invoke.echo", request))
        .await
        .unwrap();
    // The transport refuses what would not fit, whoever builds it.
    let e = caller
        .transport()
        .publish(Message::bytes(format!("x.{long}"), &b"{}"[..]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("NATS takes at most"), "{e}");

    let reply = caller
        .invoke_with("echo", json!({"still": "up"}), opts())
        .await
        .unwrap();
    assert_eq!(reply.payload, Some(json!({"still": "up"})));
    for bus in [&caller, &server] {
        assert_eq!(
            bus.transport().stats().reconnects,
            0,
            "the connection was cut"
        );
    }
    assert_eq!(server.stats().bad_messages, 1);
}
