//! Recorded chat-completion streams replayed to the bridge; each case asserts
//! the exact frames a bus caller receives.

mod common;

use std::time::Duration;

use common::{Replay, bus_with, config, error, f, stream_frames};
use openagentio_core::CallOptions;
use serde_json::{Value, json};
use tokio::time::Instant;

/// Replays `fixtures` and streams `{"text": "hi"}` with the test config
/// adjusted by `tweak`.
async fn replay(
    fixtures: &[&str],
    tweak: impl FnOnce(&mut openagentio_openai_sse::SseConfig),
) -> (Vec<common::Frame>, Replay) {
    let server = Replay::start(fixtures).await;
    let mut cfg = config(server.base_url());
    tweak(&mut cfg);
    let (bus, _bridge) = bus_with(cfg).await;
    let frames = stream_frames(&bus, json!({"text": "hi"}), CallOptions::new()).await;
    (frames, server)
}

fn started(model: &str, id: &str) -> common::Frame {
    f("started", json!({"meta": {"model": model, "id": id}}))
}

fn delta(text: &str) -> common::Frame {
    f("delta", json!({"delta": text}))
}

fn data(data: Value) -> common::Frame {
    f("delta", json!({"data": data}))
}

fn fin(result: Value) -> common::Frame {
    f("final", json!({"result": result}))
}

fn content_result() -> Value {
    json!({
        "text": "Hello", "reasoning": null, "tool_calls": [], "finish_reason": "stop",
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        "model": "gpt-x", "id": "chatcmpl-1",
    })
}

fn content_frames() -> Vec<common::Frame> {
    vec![
        started("gpt-x", "chatcmpl-1"),
        delta("Hel"),
        delta("lo"),
        fin(content_result()),
    ]
}

#[tokio::test]
async fn content_with_usage_and_the_request_mapping() {
    let server = Replay::start(&["content"]).await;
    let mut cfg = config(server.base_url()).with_openclaw_defaults();
    cfg.headers.insert("x-extra".into(), "1".into());
    cfg.params.insert("temperature".into(), json!(0.3));
    let (bus, _bridge) = bus_with(cfg).await;
    let opts = CallOptions::new()
        .session("s-1")
        .meta("openclaw.channel_type", "dm")
        .meta("openclaw.temperature", 0.5)
        .meta("other", "ignored");
    let frames = stream_frames(&bus, json!({"text": "Say hello", "max_tokens": 9}), opts).await;
    assert_eq!(frames, content_frames());

    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.line, "POST /v1/chat/completions");
    assert_eq!(r.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(r.header("x-openclaw-session-key"), Some("s-1"));
    assert_eq!(r.header("accept"), Some("text/event-stream"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-extra"), Some("1"));
    assert_eq!(
        r.body,
        json!({
            "model": "test-model",
            "messages": [{"role": "user", "content": "Say hello"}],
            "stream": true,
            "stream_options": {"include_usage": true},
            "user": "s-1",
            "channel_type": "dm",
            "temperature": 0.5,
            "max_tokens": 9,
        })
    );
}

#[tokio::test]
async fn messages_pass_through_with_model_and_stream_under_bridge_control() {
    let server = Replay::start(&["content"]).await;
    let mut cfg = config(server.base_url());
    cfg.system_prompt = Some("You are terse.".into());
    let (bus, _bridge) = bus_with(cfg).await;
    let payload = json!({
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "q2"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": "auto", "temperature": 0.2, "model": "caller-model", "stream": false,
    });
    let frames = stream_frames(&bus, payload, CallOptions::new()).await;
    assert_eq!(frames, content_frames());
    assert_eq!(
        server.requests()[0].body,
        json!({
            "model": "test-model",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "q2"},
            ],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "tool_choice": "auto", "temperature": 0.2,
            "stream": true, "stream_options": {"include_usage": true},
        })
    );
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some("Bearer sk-test")
    );
}

#[tokio::test]
async fn invoke_gets_only_the_final_result() {
    let server = Replay::start(&["content"]).await;
    let (bus, _bridge) = bus_with(config(server.base_url())).await;
    let reply = bus.invoke("chat", json!({"text": "hi"})).await.unwrap();
    assert_eq!(reply.effective_frame_type(), "response.final");
    assert_eq!(reply.seq, 0, "no frame before the final one");
    assert_eq!(reply.payload, Some(json!({"result": content_result()})));
}

#[tokio::test]
async fn tool_calls_by_index() {
    let (frames, _s) = replay(&["tool_calls_indexed"], |_| {}).await;
    assert_eq!(
        frames,
        vec![
            started("gpt-x", "chatcmpl-2"),
            data(
                json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]})
            ),
            data(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]})),
            data(
                json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]})
            ),
            data(json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]})),
            fin(json!({
                "text": "", "reasoning": null, "finish_reason": "tool_calls", "usage": null,
                "model": "gpt-x", "id": "chatcmpl-2",
                "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
                ],
            })),
        ]
    );
}

#[tokio::test]
async fn tool_calls_with_a_repeated_index_and_a_clean_end_without_done() {
    let (frames, _s) = replay(&["tool_calls_repeated_index"], |_| {}).await;
    let t1 = json!({"index": 0, "id": "t1", "type": "function", "function": {"name": "search", "arguments": "{\"q\":\"a\"}"}});
    let t2 = json!({"index": 0, "id": "t2", "type": "function", "function": {"name": "search", "arguments": "{\"q\":\"b\"}"}});
    assert_eq!(
        frames,
        vec![
            started("gemini-x", "chatcmpl-3"),
            data(json!({"tool_calls": [t1]})),
            data(json!({"tool_calls": [t2]})),
            fin(json!({
                "text": "", "reasoning": null, "finish_reason": "tool_calls", "usage": null,
                "model": "gemini-x", "id": "chatcmpl-3",
                "tool_calls": [
                    {"id": "t1", "type": "function", "function": {"name": "search", "arguments": "{\"q\":\"a\"}"}},
                    {"id": "t2", "type": "function", "function": {"name": "search", "arguments": "{\"q\":\"b\"}"}},
                ],
            })),
        ]
    );
}

#[tokio::test]
async fn tool_calls_without_index() {
    let (frames, _s) = replay(&["tool_calls_no_index"], |_| {}).await;
    assert_eq!(
        frames,
        vec![
            started("local", "chatcmpl-4"),
            data(
                json!({"tool_calls": [{"id": "x1", "type": "function", "function": {"name": "add", "arguments": "{\"a\":1,"}}]})
            ),
            data(json!({"tool_calls": [{"function": {"arguments": "\"b\":2}"}}]})),
            fin(json!({
                "text": "", "reasoning": null, "finish_reason": "tool_calls", "usage": null,
                "model": "local", "id": "chatcmpl-4",
                "tool_calls": [{"id": "x1", "type": "function", "function": {"name": "add", "arguments": "{\"a\":1,\"b\":2}"}}],
            })),
        ]
    );
}

#[tokio::test]
async fn reasoning_in_reasoning_content() {
    let (frames, _s) = replay(&["reasoning_content"], |_| {}).await;
    assert_eq!(
        frames,
        vec![
            started("deepseek-reasoner", "r1"),
            data(json!({"reasoning": "Think"})),
            data(json!({"reasoning": "ing."})),
            delta("42"),
            fin(json!({
                "text": "42", "reasoning": "Thinking.", "tool_calls": [], "finish_reason": "stop",
                "usage": null, "model": "deepseek-reasoner", "id": "r1",
            })),
        ]
    );
}

#[tokio::test]
async fn reasoning_in_reasoning() {
    let (frames, _s) = replay(&["reasoning_field"], |_| {}).await;
    assert_eq!(
        frames,
        vec![
            started("qwen3", "r2"),
            data(json!({"reasoning": "Hmm"})),
            f("delta", json!({"delta": "Yes", "data": {"reasoning": "."}})),
            fin(json!({
                "text": "Yes", "reasoning": "Hmm.", "tool_calls": [], "finish_reason": "stop",
                "usage": null, "model": "qwen3", "id": "r2",
            })),
        ]
    );
}

fn two_letter_result(id: &str, text: &str, finish: &str) -> Value {
    json!({"text": text, "reasoning": null, "tool_calls": [], "finish_reason": finish,
           "usage": null, "model": "m", "id": id})
}

#[tokio::test]
async fn crlf_comments_and_multi_line_data() {
    let (frames, _s) = replay(&["crlf_comments_multiline"], |_| {}).await;
    assert_eq!(
        frames,
        vec![
            started("m", "c5"),
            delta("a"),
            delta("b"),
            fin(two_letter_result("c5", "ab", "stop")),
        ]
    );
}

#[tokio::test]
async fn cr_line_ends() {
    let (frames, _s) = replay(&["cr_only"], |_| {}).await;
    assert_eq!(
        frames,
        vec![
            started("m", "c6"),
            delta("x"),
            delta("y"),
            fin(two_letter_result("c6", "xy", "length")),
        ]
    );
}

#[tokio::test]
async fn json_completion_instead_of_a_stream() {
    let (frames, _s) = replay(&["json_completion"], |_| {}).await;
    assert_eq!(
        frames,
        vec![
            started("m9", "cmpl-9"),
            delta("whole"),
            fin(
                json!({"text": "whole", "reasoning": null, "tool_calls": [], "finish_reason": "stop",
                       "usage": {"total_tokens": 3}, "model": "m9", "id": "cmpl-9"})
            ),
        ]
    );
}

#[tokio::test]
async fn error_object_mid_stream() {
    let (frames, _s) = replay(&["error_mid_stream"], |_| {}).await;
    assert_eq!(
        frames,
        vec![
            started("m", "e1"),
            delta("Par"),
            error(
                "AGENT_UNAVAILABLE",
                "upstream error: The server had an error while processing your request.",
                true
            ),
        ]
    );
}

#[tokio::test]
async fn error_event_mid_stream() {
    let (frames, _s) = replay(&["error_event"], |_| {}).await;
    assert_eq!(
        frames,
        vec![
            started("m", "e2"),
            delta("Hi"),
            error("AGENT_UNAVAILABLE", "upstream error: Overloaded", true),
        ]
    );
}

#[tokio::test]
async fn early_cut_is_a_transport_failure_and_is_not_retried_after_a_delta() {
    let (frames, server) = replay(&["early_cut", "content"], |c| c.retries = 3).await;
    assert_eq!(
        frames,
        vec![
            started("m", "k1"),
            delta("Once"),
            error(
                "TRANSPORT_FAILURE",
                "upstream transport failure: the connection failed mid-stream: error decoding response body",
                true
            ),
        ]
    );
    assert_eq!(server.requests().len(), 1, "no retry once a delta went out");
}

#[tokio::test]
async fn clean_end_before_finish_is_a_transport_failure() {
    let (frames, _s) = replay(&["early_end"], |_| {}).await;
    assert_eq!(
        frames,
        vec![
            started("m", "k2"),
            delta("Once"),
            error(
                "TRANSPORT_FAILURE",
                "upstream transport failure: the upstream closed the stream before it finished",
                true
            ),
        ]
    );
}

#[tokio::test]
async fn a_web_page_is_named_as_such_and_not_retried() {
    let (frames, _s) = replay(&["html_page"], |_| {}).await;
    assert_eq!(
        frames,
        vec![error(
            "CODEC_FAILURE",
            "upstream stream is not decodable: the upstream answered with text/html, not an \
             event stream (text/event-stream): is base_url the API's address, such as \
             http://host/v1?",
            false
        )]
    );
}

#[tokio::test]
async fn non_json_data_is_a_codec_failure() {
    let (frames, _s) = replay(&["not_json"], |_| {}).await;
    assert_eq!(
        frames,
        vec![
            started("m", "j1"),
            delta("ok"),
            error(
                "CODEC_FAILURE",
                "upstream stream is not decodable: a data line is not JSON (key must be a string at line 1 column 2): {not json}",
                false
            ),
        ]
    );
}

#[tokio::test]
async fn a_lone_surrogate_reads_as_the_replacement_character() {
    let (frames, _s) = replay(&["lone_surrogate"], |_| {}).await;
    assert_eq!(frames.len(), 3, "{frames:?}");
    assert_eq!(frames[..2], [started("m", "s1"), delta("cut \u{FFFD}")]);
    assert_eq!(frames[2].0, "final", "{frames:?}");
}

#[tokio::test]
async fn slow_first_token_times_out_despite_keep_alives() {
    let t0 = Instant::now();
    let (frames, _s) = replay(&["slow_first_token"], |_| {}).await;
    assert_eq!(
        frames,
        vec![error(
            "AGENT_TIMEOUT",
            "no first token from the upstream in time",
            true
        )]
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(1500),
        "{took:?}"
    );
}

#[tokio::test]
async fn stall_between_chunks_times_out() {
    let (frames, _s) = replay(&["stall"], |_| {}).await;
    assert_eq!(
        frames,
        vec![
            started("m", "s2"),
            delta("Hmm"),
            error("AGENT_TIMEOUT", "the upstream stalled between chunks", true),
        ]
    );
}

#[tokio::test]
async fn total_timeout_ends_a_slow_stream() {
    let (frames, _s) = replay(&["stall"], |c| {
        c.total_timeout = Duration::from_millis(300);
        c.idle_timeout = Duration::from_secs(5);
    })
    .await;
    assert_eq!(
        frames,
        vec![
            started("m", "s2"),
            delta("Hmm"),
            error(
                "AGENT_TIMEOUT",
                "the upstream call ran past its total timeout",
                true
            ),
        ]
    );
}

#[tokio::test]
async fn oversized_event_is_a_codec_failure_and_drops_the_connection() {
    let (frames, server) = replay(&["oversized_event"], |_| {}).await;
    assert_eq!(
        frames,
        vec![
            started("m", "o1"),
            delta("a"),
            error(
                "CODEC_FAILURE",
                "upstream stream is not decodable: an SSE event exceeds 1024 bytes",
                false
            ),
        ]
    );
    for _ in 0..50 {
        if !server.closed_at.lock().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the upstream connection was not closed");
}

fn http_error(code: &str, message: &str, retryable: bool, cause: Value) -> common::Frame {
    f(
        "error",
        json!({"code": code, "message": message, "retryable": retryable, "cause": cause}),
    )
}

#[tokio::test]
async fn http_401_is_an_auth_failure() {
    let (frames, _s) = replay(&["http_401"], |c| c.retries = 2).await;
    assert_eq!(
        frames,
        vec![http_error(
            "AUTH_FAILURE",
            "upstream answered HTTP 401: Unauthorized: Incorrect API key provided: sk-****.",
            false,
            json!({"status": 401})
        )]
    );
    assert!(
        !frames[0].1.to_string().contains("sk-test"),
        "the token never shows"
    );
}

#[tokio::test]
async fn http_400_404_422_are_invalid_requests_with_the_upstream_message() {
    for (fixture, message, status) in [
        (
            "http_400",
            "upstream answered HTTP 400: Bad Request: 'messages' must contain at least one message",
            400,
        ),
        (
            "http_404",
            "upstream answered HTTP 404: Not Found: Model 'nope' not found",
            404,
        ),
        (
            "http_422",
            "upstream answered HTTP 422: Unprocessable Entity: temperature must be <= 2",
            422,
        ),
    ] {
        let (frames, server) = replay(&[fixture], |c| c.retries = 2).await;
        assert_eq!(
            frames,
            vec![http_error(
                "INVALID_REQUEST",
                message,
                false,
                json!({"status": status})
            )]
        );
        assert_eq!(server.requests().len(), 1, "not retried");
    }
}

#[tokio::test]
async fn http_429_is_retryable_and_carries_retry_after() {
    let (frames, _s) = replay(&["http_429"], |_| {}).await;
    assert_eq!(
        frames,
        vec![http_error(
            "BACKPRESSURE_DROP",
            "upstream answered HTTP 429: Too Many Requests: Rate limit reached",
            true,
            json!({"status": 429, "retry_after_ms": 1000})
        )]
    );
}

#[tokio::test]
async fn http_429_retry_honours_retry_after() {
    let t0 = Instant::now();
    let (frames, server) = replay(&["http_429", "content"], |c| {
        c.retries = 1;
        c.retry_backoff = Duration::from_millis(10);
    })
    .await;
    assert_eq!(frames, content_frames());
    assert_eq!(server.requests().len(), 2);
    assert!(
        t0.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );
}

#[tokio::test]
async fn http_429_retry_after_past_the_total_timeout_is_not_awaited() {
    let t0 = Instant::now();
    let (frames, server) = replay(&["http_429", "content"], |c| {
        c.retries = 1;
        c.total_timeout = Duration::from_millis(500);
    })
    .await;
    assert_eq!(frames[0].1["code"], "BACKPRESSURE_DROP");
    assert_eq!(server.requests().len(), 1);
    assert!(t0.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn http_500_with_a_text_body_is_retryable() {
    let (frames, server) = replay(&["http_500_text"], |c| {
        c.retries = 2;
        c.retry_backoff = Duration::from_millis(10);
    })
    .await;
    assert_eq!(
        frames,
        vec![http_error(
            "AGENT_UNAVAILABLE",
            "upstream answered HTTP 500: Internal Server Error: Internal Server Error upstream worker crashed",
            true,
            json!({"status": 500})
        )]
    );
    assert_eq!(server.requests().len(), 3, "the first try and two retries");
}

#[tokio::test]
async fn http_500_then_success_after_a_retry() {
    let (frames, server) = replay(&["http_500_text", "content"], |c| {
        c.retries = 1;
        c.retry_backoff = Duration::from_millis(10);
    })
    .await;
    assert_eq!(frames, content_frames());
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn connection_refused_is_agent_unavailable() {
    let port = openagentio_testkit::free_port();
    let mut cfg = config(format!("http://127.0.0.1:{port}/v1").parse().unwrap());
    cfg.retries = 1;
    cfg.retry_backoff = Duration::from_millis(10);
    let (bus, _bridge) = bus_with(cfg).await;
    let frames = stream_frames(&bus, json!({"text": "hi"}), CallOptions::new()).await;
    assert_eq!(
        frames,
        vec![error(
            "AGENT_UNAVAILABLE",
            "upstream unavailable: error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)",
            true
        )]
    );
}

#[tokio::test]
async fn payload_without_text_or_messages_is_rejected_before_any_request() {
    let server = Replay::start(&["content"]).await;
    let (bus, _bridge) = bus_with(config(server.base_url())).await;
    let frames = stream_frames(&bus, json!({"prompt": "hi"}), CallOptions::new()).await;
    assert_eq!(
        frames,
        vec![error(
            "INVALID_REQUEST",
            "invalid request: the payload has neither \"text\" nor \"messages\"",
            false
        )]
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn a_role_only_first_chunk_is_not_the_first_token() {
    let t0 = Instant::now();
    let (frames, _s) = replay(&["role_only_first_chunk"], |_| {}).await;
    assert_eq!(
        frames,
        vec![
            started("m", "r1"),
            error(
                "AGENT_TIMEOUT",
                "no first token from the upstream in time",
                true
            ),
        ]
    );
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn a_finished_answer_without_done_ends_at_the_idle_limit_as_a_success() {
    let (frames, _s) = replay(&["finish_without_done"], |_| {}).await;
    assert_eq!(
        frames,
        vec![
            started("m", "f1"),
            delta("All done"),
            fin(
                json!({"text": "All done", "reasoning": null, "tool_calls": [], "finish_reason": "stop",
                       "usage": null, "model": "m", "id": "f1"})
            ),
        ]
    );
}

#[tokio::test]
async fn a_json_answer_without_choices_is_a_codec_failure() {
    // The content type is matched without regard to case.
    let (frames, _s) = replay(&["json_not_a_completion"], |_| {}).await;
    assert_eq!(
        frames,
        vec![error(
            "CODEC_FAILURE",
            "upstream stream is not decodable: the JSON response is not a chat completion (no `choices`): {}",
            false
        )]
    );
}

#[tokio::test]
async fn a_stalled_json_body_times_out_at_the_idle_limit() {
    let t0 = Instant::now();
    let (frames, _s) = replay(&["json_stalled_body"], |_| {}).await;
    assert_eq!(
        frames,
        vec![error(
            "AGENT_TIMEOUT",
            "the upstream stalled between chunks",
            true
        )]
    );
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn a_burst_to_a_slow_reader_is_held_back_not_dropped() {
    // 20,000 chunks, five times the caller's frame buffer, while the caller
    // reads slowly: the bridge waits for it instead of overflowing it.
    let server = Replay::start(&["burst"]).await;
    let mut cfg = config(server.base_url());
    cfg.total_timeout = Duration::from_secs(60);
    cfg.idle_timeout = Duration::from_secs(10);
    let (bus, _bridge) = bus_with(cfg).await;
    let mut s = bus
        .stream_invoke_with(
            "chat",
            json!({"text": "hi"}),
            CallOptions::new().timeout(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut text = String::new();
    let mut last = None;
    let mut n = 0u64;
    while let Some(f) = s.next().await {
        let f = f.expect("no frame is dropped");
        n += 1;
        if n.is_multiple_of(2000) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(d) = f.payload_or_null()["delta"].as_str() {
            text.push_str(d);
        }
        if f.is_terminal() {
            last = Some(f);
        }
    }
    assert_eq!(text.len(), 20_000);
    let last = last.unwrap();
    assert_eq!(last.event_type, "agent.response.final");
    assert_eq!(
        last.payload_or_null()["result"]["text"]
            .as_str()
            .unwrap()
            .len(),
        20_000
    );
}

#[tokio::test]
async fn an_answer_of_only_done_still_begins_with_started() {
    let (frames, _s) = replay(&["done_only"], |_| {}).await;
    let kinds: Vec<&str> = frames.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(kinds, ["started", "final"], "{frames:?}");
    assert_eq!(frames[1].1["result"]["text"], "");
}
