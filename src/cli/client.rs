//! Client commands against a running bus: invoke, stream, publish, subscribe.

use std::io::{Read, Write};

use openagentio_core::{Bus, BusError, CallOptions, Envelope};
use openagentio_nats::{NatsOptions, NatsTransport};
use serde_json::Value;

use super::{BusArgs, CallArgs, Exit, PublishArgs, StreamArgs, SubscribeArgs, TargetsArgs};

async fn connect(args: &BusArgs) -> Result<Bus, Exit> {
    let builder = Bus::builder()
        .agent_id("openagentio-cli")
        .subject_prefix(&args.subject_prefix);
    if args.bus == "memory" {
        return Ok(builder.build());
    }
    if !args.bus.starts_with("nats://") && !args.bus.starts_with("tls://") {
        return Err(Exit::usage(format!(
            "--bus {:?}: expected `memory` or a nats:// URL",
            args.bus
        )));
    }
    let nats = NatsTransport::connect(NatsOptions::new(&args.bus).name("openagentio-cli"))
        .await
        .map_err(|e| {
            Exit::Bus(BusError::unavailable(format!(
                "{e}. Client commands reach a service through NATS; one on the in-memory \
                 bus (like examples/quickstart.yaml) answers over its HTTP gateway instead: \
                 curl -X POST http://127.0.0.1:8080/v1/agents/TARGET/invoke -d '{{...}}'"
            )))
        })?;
    Ok(builder.transport(nats).build())
}

fn payload(arg: Option<&str>, text: Option<&str>) -> Result<Value, Exit> {
    if let Some(t) = text {
        return Ok(serde_json::json!({ "text": t }));
    }
    let raw = match arg {
        None => return Ok(Value::Null),
        Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| Exit::usage(format!("cannot read standard input: {e}")))?;
            s
        }
        Some(s) => s.to_owned(),
    };
    serde_json::from_str(&raw).map_err(|e| {
        Exit::usage(format!(
            "the payload is not JSON ({e}); quote it, e.g. '{{\"text\": \"hi\"}}', or use --text"
        ))
    })
}

fn options(args: &BusArgs) -> Result<CallOptions, Exit> {
    let mut o = CallOptions::new();
    if let Some(t) = &args.tenant {
        o = o.tenant(t);
    }
    if let Some(s) = &args.session {
        o = o.session(s);
    }
    for kv in &args.meta {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| Exit::usage(format!("--meta {kv:?}: expected KEY=VALUE")))?;
        let v = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
        o = o.meta(k, v);
    }
    Ok(o)
}

fn call_setup(a: &CallArgs) -> Result<(Value, CallOptions), Exit> {
    let p = payload(a.payload.as_deref(), a.text.as_deref())?;
    Ok((p, options(&a.bus)?.timeout(a.timeout)))
}

/// `openagentio invoke`.
pub async fn invoke(a: CallArgs) -> Exit {
    let run = async {
        let (p, opts) = call_setup(&a)?;
        let bus = connect(&a.bus).await?;
        let reply = bus.invoke_with(&a.target, p, opts).await;
        bus.close().await;
        let reply = reply?;
        println!("{}", reply.payload_or_null());
        Ok::<_, Exit>(Exit::Ok)
    };
    run.await.unwrap_or_else(|e| e)
}

/// `openagentio stream`.
pub async fn stream(a: StreamArgs) -> Exit {
    let run = async {
        let (p, mut opts) = call_setup(&a.call)?;
        if let Some(idle) = a.idle_timeout {
            opts = opts.idle_timeout(idle);
        }
        let bus = connect(&a.call.bus).await?;
        let mut s = bus.stream_invoke_with(&a.call.target, p, opts).await?;
        let mut out = std::io::stdout().lock();
        let mut printed_text = false;
        let mut failure = None;
        while let Some(frame) = s.next().await {
            let frame = match frame {
                Ok(f) => f,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            if a.json {
                let _ = writeln!(out, "{}", serde_json::to_string(&frame).unwrap_or_default());
            } else if let Some(text) = frame
                .payload
                .as_ref()
                .and_then(|p| p.get("delta"))
                .and_then(Value::as_str)
            {
                let _ = write!(out, "{text}");
                printed_text = true;
            } else if frame.is_terminal() && frame.error().is_none() && !printed_text {
                // Nothing streamed as text: show the result.
                let _ = writeln!(out, "{}", frame.payload_or_null());
            }
            let _ = out.flush();
            if let Some(e) = frame.error() {
                failure = Some(e);
            }
        }
        if printed_text && !a.json {
            let _ = writeln!(out);
        }
        drop(out);
        drop(s);
        bus.close().await;
        Ok::<_, Exit>(failure.map_or(Exit::Ok, Exit::Bus))
    };
    run.await.unwrap_or_else(|e| e)
}

/// `openagentio publish`.
pub async fn publish(a: PublishArgs) -> Exit {
    let run = async {
        let p = payload(a.payload.as_deref(), None)?;
        let bus = connect(&a.bus).await?;
        let mut env = Envelope::new(&a.event_type).with_payload(p);
        let opts = options(&a.bus)?;
        if let Some(t) = opts.tenant {
            env.tenant_id = t.into();
        }
        if let Some(s) = opts.session {
            env.session_id = s.into();
        }
        env.metadata = opts.metadata;
        bus.publish(env).await?;
        bus.transport()
            .flush()
            .await
            .map_err(|e| Exit::Bus(e.into()))?;
        bus.close().await;
        Ok::<_, Exit>(Exit::Ok)
    };
    run.await.unwrap_or_else(|e| e)
}

/// `openagentio subscribe`.
pub async fn subscribe(a: SubscribeArgs) -> Exit {
    let run = async {
        let bus = connect(&a.bus).await?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut opts = openagentio_core::SubscribeOptions::new();
        if let Some(t) = &a.bus.tenant {
            opts = opts.tenant(t);
        }
        bus.subscribe_with(&a.event_type, opts, move |env| {
            let _ = tx.send(env);
            async { Ok(()) }
        })
        .await?;
        eprintln!("subscribed to {}", a.event_type);
        let deadline = a.timeout.map(|t| tokio::time::Instant::now() + t);
        let mut seen = 0u64;
        loop {
            if a.count.is_some_and(|n| seen >= n) {
                break;
            }
            let next = async {
                tokio::select! {
                    e = rx.recv() => e,
                    _ = tokio::signal::ctrl_c() => None,
                }
            };
            let env = match deadline {
                Some(d) => match tokio::time::timeout_at(d, next).await {
                    Ok(e) => e,
                    Err(_) => break,
                },
                None => next.await,
            };
            let Some(env) = env else { break };
            println!("{}", serde_json::to_string(&env).unwrap_or_default());
            seen += 1;
        }
        bus.close().await;
        Ok::<_, Exit>(Exit::Ok)
    };
    run.await.unwrap_or_else(|e| e)
}

/// `openagentio targets`.
pub async fn targets(a: TargetsArgs) -> Exit {
    let run = async {
        let bus = connect(&a.bus).await?;
        let opts = options(&a.bus)?.timeout(a.timeout);
        let reply = bus
            .invoke_with(openagentio_host::CATALOG_TARGET, Value::Null, opts)
            .await;
        bus.close().await;
        let list = reply?.payload.unwrap_or(Value::Array(Vec::new()));
        if a.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&list).unwrap_or_default()
            );
            return Ok(Exit::Ok);
        }
        let items = list.as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            println!("no targets");
        }
        for t in items {
            let name = t["name"].as_str().unwrap_or("?");
            let kind = if t["streaming"].as_bool() == Some(true) {
                "stream"
            } else {
                "invoke"
            };
            let bridge = t["bridge"].as_str().unwrap_or("");
            let desc = t["description"]
                .as_str()
                .unwrap_or("")
                .lines()
                .next()
                .unwrap_or("");
            println!("{name:<32} {kind:<6} {bridge:<16} {desc}");
        }
        Ok::<_, Exit>(Exit::Ok)
    };
    run.await.unwrap_or_else(|e| e)
}
