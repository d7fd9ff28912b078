//! `GET /v1/events/{event_type}`: bus events as SSE, with wildcards, tenants,
//! queue groups, a subscription that ends with its client, and a slow client
//! told what it lost.

use std::time::Duration;

use futures::StreamExt;
use openagentio_core::Envelope;
use openagentio_http_gateway::GatewayConfig;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Gateway, expect_error};

/// The envelopes of an SSE body read so far, by their `data:` lines.
struct Feed {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>,
    text: String,
}

impl Feed {
    async fn open(gw: &Gateway, path: &str, tenant: Option<&str>) -> Feed {
        let mut req = gw.get(path);
        if let Some(t) = tenant {
            req = req.header("X-Tenant-Id", t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        assert_eq!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/event-stream")
        );
        Feed {
            body: Box::pin(resp.bytes_stream()),
            text: String::new(),
        }
    }

    /// The next event's envelope, within 5 s.
    async fn next(&mut self) -> Envelope {
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                    return serde_json::from_str(data).unwrap();
                }
                continue; // a keep-alive comment
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), self.body.next())
                .await
                .expect("an event within 5 s")
                .expect("the feed is open")
                .unwrap();
            self.text.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// A feed of `event_type` whose client reads nothing past the response head,
/// with a small receive buffer: events pile up for it at the gateway.
async fn unread_feed(gw: &Gateway, event_type: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut sock = socket.connect(gw.addr).await.unwrap();
    let request = format!("GET /v1/events/{event_type} HTTP/1.1\r\nHost: gw\r\n\r\n");
    sock.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(3), sock.read(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
    sock
}

/// Reads what the gateway sends on `sock` until its `BACKPRESSURE_DROP`
/// error (or the end), within `limit`.
async fn read_to_the_drop(sock: &mut tokio::net::TcpStream, limit: Duration) -> Vec<u8> {
    let mut body = Vec::new();
    let read = async {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = sock.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&body[body.len().saturating_sub(4096)..])
                .contains("BACKPRESSURE_DROP")
            {
                break;
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .expect("the feed ends with its error");
    body
}

async fn publish(gw: &Gateway, event_type: &str, n: u64, tenant: Option<&str>) {
    let mut env = Envelope::new(event_type).with_payload(json!({ "n": n }));
    if let Some(t) = tenant {
        env.tenant_id = t.into();
    }
    gw.bus.publish(env).await.unwrap();
}

#[tokio::test]
async fn events_arrive_as_sse_with_wildcards_and_tenants() {
    let gw = Gateway::start_default().await;
    let mut all = Feed::open(&gw, "/v1/events/agent.%3E", None).await;
    let mut one = Feed::open(&gw, "/v1/events/agent.*.done", None).await;
    let mut acme = Feed::open(&gw, "/v1/events/agent.>", Some("acme")).await;

    publish(&gw, "agent.task.done", 1, None).await;
    publish(&gw, "agent.note", 2, None).await;
    publish(&gw, "agent.note", 3, Some("acme")).await;
    // Over HTTP too.
    let resp = gw
        .post("/v1/events/agent.task.done")
        .json(&json!({"n": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);

    let seen: Vec<(String, Value)> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            let e = all.next().await;
            v.push((e.event_type.to_string(), e.payload_or_null().clone()));
        }
        v
    };
    assert_eq!(
        seen,
        [
            ("agent.task.done".to_owned(), json!({"n": 1})),
            ("agent.note".to_owned(), json!({"n": 2})),
            ("agent.task.done".to_owned(), json!({"n": 4})),
        ]
    );
    assert_eq!(one.next().await.payload_or_null(), &json!({"n": 1}));
    assert_eq!(one.next().await.payload_or_null(), &json!({"n": 4}));
    let e = acme.next().await;
    assert_eq!(e.payload_or_null(), &json!({"n": 3}), "only acme's event");
    assert_eq!(e.tenant_id, "acme");
}

#[tokio::test]
async fn bad_patterns_tenants_and_queries_are_400_and_auth_applies() {
    let gw = Gateway::start(GatewayConfig {
        tokens: vec![
            openagentio_http_gateway::ApiToken::new("t"),
            openagentio_http_gateway::ApiToken::for_tenant("a", "acme"),
        ],
        ..GatewayConfig::default()
    })
    .await;
    let get = |path: &str, token: Option<&str>, tenant: Option<&str>| {
        let mut req = gw.get(path);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(t) = tenant {
            req = req.header("X-Tenant-Id", t);
        }
        req.send()
    };
    let cases = [
        ("/v1/events/agent.x", None, None, 401, "AUTH_FAILURE"),
        ("/v1/events/a%20b", Some("t"), None, 400, "INVALID_REQUEST"),
        (
            "/v1/events/agent.x?group=1",
            Some("t"),
            None,
            400,
            "INVALID_REQUEST",
        ),
        (
            "/v1/events/agent.x",
            Some("a"),
            Some("other"),
            403,
            "AUTH_FAILURE",
        ),
    ];
    for (path, token, tenant, status, code) in cases {
        expect_error(get(path, token, tenant).await.unwrap(), status, code).await;
    }
}

#[tokio::test]
async fn a_feed_that_leaves_ends_its_subscription_and_queue_groups_share() {
    let gw = Gateway::start_default().await;
    // Two feeds in one queue group share the events.
    let mut a = Feed::open(&gw, "/v1/events/job.*?queue=workers", None).await;
    let mut b = Feed::open(&gw, "/v1/events/job.*?queue=workers", None).await;
    for n in 0..40 {
        publish(&gw, "job.run", n, None).await;
    }
    // The group got each event once: read until every n was seen.
    let (mut got_a, mut got_b) = (0, 0);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 40 {
        tokio::select! {
            e = a.next() => { got_a += 1; assert!(seen.insert(e.payload_or_null()["n"].as_u64().unwrap())); }
            e = b.next() => { got_b += 1; assert!(seen.insert(e.payload_or_null()["n"].as_u64().unwrap())); }
        }
    }
    assert!(
        got_a > 0 && got_b > 0,
        "both members served: {got_a} and {got_b}"
    );

    // `a` leaves; once its subscription is gone, `b` gets every event.
    drop(a);
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 50, "the departed feed kept its share");
        publish(&gw, "job.run", 1000 + rounds, None).await;
        let e = tokio::time::timeout(Duration::from_millis(100), b.next()).await;
        if e.is_ok() {
            // b got this one; are the next twenty all b's?
            let start = 2000 + rounds * 100;
            for n in start..start + 20 {
                publish(&gw, "job.run", n, None).await;
            }
            let mut all_b = true;
            for n in start..start + 20 {
                match tokio::time::timeout(Duration::from_millis(500), b.next()).await {
                    Ok(e) if e.payload_or_null()["n"] == n => {}
                    _ => {
                        all_b = false;
                        break;
                    }
                }
            }
            if all_b {
                break;
            }
        }
    }
}

#[tokio::test]
async fn a_client_that_cannot_keep_up_is_told_what_it_lost() {
    let gw = Gateway::start_default().await;
    let mut sock = unread_feed(&gw, "flood").await;

    // Far more than the feed's buffer and the sockets' buffers hold.
    let big = "x".repeat(2000);
    let sent = 20_000u64;
    for n in 0..sent {
        let env = Envelope::new("flood").with_payload(json!({"n": n, "pad": big}));
        gw.bus.publish(env).await.unwrap();
    }

    // Now read it all: events in order from 0 with no gap, then the error.
    let body = read_to_the_drop(&mut sock, Duration::from_secs(20)).await;
    let text = String::from_utf8_lossy(&body);
    let envelopes: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let last = envelopes.last().unwrap();
    assert_eq!(last["event_type"], "agent.response.error", "{last}");
    assert_eq!(last["payload"]["code"], "BACKPRESSURE_DROP", "{last}");
    let delivered: Vec<u64> = envelopes[..envelopes.len() - 1]
        .iter()
        .map(|e| e["payload"]["n"].as_u64().unwrap())
        .collect();
    eprintln!(
        "a client that read nothing got {} of {sent} events, then the error",
        delivered.len()
    );
    assert!(
        delivered.len() < sent as usize,
        "some were dropped: {}",
        delivered.len()
    );
    let message = last["payload"]["message"].as_str().unwrap();
    assert!(message.contains("were dropped"), "{message}");
    assert!(
        delivered.iter().copied().eq(0..delivered.len() as u64),
        "what arrived is the start, in order, with no gap"
    );

    // Counted where operators look.
    let metrics = gw
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("openagentio_http_feed_events_dropped_total "))
        .expect("the counter is listed")
        .parse()
        .unwrap();
    assert!(dropped > 0, "{metrics}");

    // The bus is fine and the subscription is gone: a new feed starts clean.
    let mut again = Feed::open(&gw, "/v1/events/flood", None).await;
    gw.bus
        .publish(Envelope::new("flood").with_payload(json!({"n": "again"})))
        .await
        .unwrap();
    assert_eq!(again.next().await.payload_or_null()["n"], "again");
}

#[tokio::test]
async fn a_drain_ends_the_feeds_and_the_gateway_stops() {
    let gw = Gateway::start_default().await;
    let mut feed = Feed::open(&gw, "/v1/events/agent.>", None).await;
    publish(&gw, "agent.x", 1, None).await;
    assert_eq!(feed.next().await.payload_or_null(), &json!({"n": 1}));
    assert!(gw.bus.drain(Duration::from_secs(1)).await);
    let end = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(chunk) = feed.body.next().await {
            chunk.unwrap();
        }
    })
    .await;
    assert!(end.is_ok(), "the feed ended with the drain");
    gw.shutdown().await.unwrap();
}

/// Large events fill a slow client's share by bytes, well before its count
/// of events: one such client does not pin gigabytes.
#[tokio::test]
async fn large_events_end_a_slow_feed_by_their_size() {
    let gw = Gateway::start_default().await;
    let mut sock = unread_feed(&gw, "big").await;
    // 100 events of 1 MiB: far under the count limit, over the byte limit.
    let mib = "x".repeat(1 << 20);
    for n in 0..100u64 {
        let env = Envelope::new("big").with_payload(json!({"n": n, "pad": mib}));
        gw.bus.publish(env).await.unwrap();
    }
    let body = read_to_the_drop(&mut sock, Duration::from_secs(30)).await;
    let delivered = String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with("data: ") && l.contains("\"pad\""))
        .count();
    assert!(
        delivered < 40,
        "{delivered} events of 1 MiB were held for one slow client"
    );
}
