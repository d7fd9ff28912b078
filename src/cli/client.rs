//! Client commands against a running bus: invoke, stream, publish, subscribe.
//! They reach it over NATS, or through a service's HTTP gateway when `--bus`
//! is an `http://` URL.

use std::io::Read;
use std::time::Duration;

use futures::StreamExt;
use openagentio_core::{Bus, BusError, CallOptions, Envelope};
use openagentio_nats::{ConnectError, NatsAuth, NatsOptions, NatsTls, NatsTransport, OptionNames};
use serde_json::Value;

use super::gateway::{self, Gateway};
use super::output;
use super::{
    BusArgs, CallArgs, Exit, Interruption, PublishArgs, StreamArgs, SubscribeArgs, TargetsArgs,
};

/// Where a client command goes.
enum Remote {
    /// The bus itself (NATS, or an empty in-process bus).
    Bus(Bus),
    /// A service's HTTP gateway.
    Gateway(Gateway),
}

/// Where `args` point; `limit` (the command's `--timeout`) bounds the
/// NATS handshake as well as the call, when it is shorter than the
/// handshake's own limit.
async fn remote(args: &BusArgs, limit: Option<Duration>) -> Result<Remote, Exit> {
    if gateway::is_gateway_url(&args.bus) {
        return Gateway::new(args).map(Remote::Gateway);
    }
    connect(args, limit).await.map(Remote::Bus)
}

/// Unread frames the CLI's one call may hold. Reference-SDK handlers send
/// without flow control: a burst of thousands of frames can arrive while the
/// terminal holds up the printing (or the OS holds up this process on a busy
/// machine), and the bus's default (4,096) then ends the stream with
/// `BACKPRESSURE_DROP`. The queue grows only as frames wait.
const CLI_FRAME_BUFFER: usize = 1 << 16;

async fn connect(args: &BusArgs, limit: Option<Duration>) -> Result<Bus, Exit> {
    openagentio_core::subject::check_name("--subject-prefix", &args.subject_prefix, false)
        .map_err(|e| Exit::usage(e.to_string()))?;
    let builder = Bus::builder()
        .agent_id("openagentio-cli")
        .subject_prefix(&args.subject_prefix)
        .frame_buffer(CLI_FRAME_BUFFER);
    if args.bus == "memory" {
        if let Some(flag) = args.nats_only_option() {
            return Err(Exit::usage(format!("{flag} needs a NATS --bus")));
        }
        return Ok(builder.build());
    }
    const SCHEMES: [&str; 4] = ["nats://", "tls://", "ws://", "wss://"];
    if !SCHEMES.iter().any(|scheme| args.bus.starts_with(scheme)) {
        return Err(Exit::usage(format!(
            "--bus {:?}: expected `memory`, a NATS URL (nats://, tls://, ws://, wss://) \
             or a service's http:// gateway",
            args.bus
        )));
    }
    let mut opts = nats_options(args)?;
    if let Some(limit) = limit {
        opts.connect_timeout = opts
            .connect_timeout
            .min(limit.max(Duration::from_millis(1)));
    }
    let nats = NatsTransport::connect(opts).await.map_err(|e| {
        Exit::Bus(BusError::unavailable(match e {
            // Only when no server answered: otherwise the hint would mislead.
            ConnectError::Unreachable { .. } => format!(
                "{e}. A service on the in-memory bus (like examples/quickstart.yaml) is \
                     reached through its HTTP gateway: --bus http://127.0.0.1:8080"
            ),
            _ => e.to_string(),
        }))
    })?;
    Ok(builder.transport(nats).build())
}

/// How the CLI's messages name the NATS options: by their flags.
const FLAG_NAMES: OptionNames = OptionNames {
    credentials_file: "--nats-creds",
    ca_file: "--nats-ca",
    cert_file: "--nats-cert",
    key_file: "--nats-key",
    tls_required: None,
};

fn nats_options(args: &BusArgs) -> Result<NatsOptions, Exit> {
    let mut opts = NatsOptions::new(&args.bus)
        .name("openagentio-cli")
        .option_names(FLAG_NAMES);
    if let Some(creds) = &args.nats_creds {
        // Both would leave one unused without a word.
        if openagentio_nats::has_url_credentials(&args.bus) {
            return Err(Exit::usage(
                "--nats-creds and credentials in the --bus URL: give one of them",
            ));
        }
        opts = opts.auth(NatsAuth::CredentialsFile(creds.clone()));
    }
    Ok(opts.tls(NatsTls {
        required: false,
        ca_file: args.nats_ca.clone(),
        cert_file: args.nats_cert.clone(),
        key_file: args.nats_key.clone(),
    }))
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
    // A byte-order mark (Windows editors write one) is not part of the JSON.
    let raw = raw.strip_prefix('\u{feff}').unwrap_or(&raw);
    serde_json::from_str(raw).map_err(|e| {
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
            .filter(|(k, _)| !k.is_empty())
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

/// A future that resolves on Ctrl-C or SIGTERM, with which. The signal
/// handlers are registered here, not at the first poll, and the future is
/// polled by reference from then on: a signal that comes before a call
/// starts, or between two frames, is not lost.
type Interrupt = std::pin::Pin<Box<dyn std::future::Future<Output = Interruption> + Send>>;

fn interrupt() -> Interrupt {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (sigint, sigterm) = (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        );
        // A signal whose handler could not be set never comes.
        async fn next(signal: Option<tokio::signal::unix::Signal>) {
            if let Some(mut s) = signal
                && s.recv().await.is_some()
            {
                return;
            }
            std::future::pending().await
        }
        Box::pin(async move {
            tokio::select! {
                () = next(sigint) => Interruption::Interrupt,
                () = next(sigterm) => Interruption::Terminate,
            }
        })
    }
    #[cfg(not(unix))]
    {
        Box::pin(async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            Interruption::Interrupt
        })
    }
}

/// Calls `target` over the bus and waits for its terminal frame's payload.
/// Ctrl-C cancels the call (the handler is told to stop) before returning.
async fn invoke_on_bus(
    bus: &Bus,
    target: &str,
    p: Value,
    opts: CallOptions,
    interrupted: &mut Interrupt,
) -> Result<Value, Exit> {
    let mut stream = tokio::select! {
        s = bus.start_invoke(target, p, opts) => s?,
        by = &mut *interrupted => return Err(Exit::Interrupted(by)),
    };
    let answer = tokio::select! {
        r = stream.answer() => Ok(r),
        by = &mut *interrupted => Err(by),
    };
    match answer {
        Ok(r) => Ok(r?),
        Err(by) => {
            let _ = stream.cancel().await;
            Err(Exit::Interrupted(by))
        }
    }
}

/// `openagentio invoke`.
pub async fn invoke(a: CallArgs) -> Exit {
    let mut interrupted = interrupt();
    let run = async {
        let (p, opts) = call_setup(&a)?;
        let result = match remote(&a.bus, Some(a.timeout)).await? {
            Remote::Bus(bus) => {
                let reply = invoke_on_bus(&bus, &a.target, p, opts, &mut interrupted).await;
                bus.close().await;
                reply?
            }
            Remote::Gateway(gw) => tokio::select! {
                // Ending the process closes the connection: the gateway
                // cancels the call.
                r = gw.invoke(&a.target, &p, a.timeout) => r?,
                by = &mut interrupted => return Err(Exit::Interrupted(by)),
            },
        };
        output::line(result)?;
        Ok::<_, Exit>(Exit::Ok)
    };
    run.await.unwrap_or_else(|e| e)
}

/// The frames of a stream, from the bus or from the gateway's SSE answer.
enum Frames {
    Bus(Bus, Box<openagentio_core::Stream>),
    Gateway(gateway::Envelopes, Option<Duration>),
}

impl Frames {
    /// The next frame. Over the gateway, the idle timeout is kept here, and
    /// the end of the answer is an error (the caller stops at the terminal
    /// frame, so an end it reads came before one); the bus's `Stream` does
    /// both itself.
    async fn next(&mut self) -> Option<Result<Envelope, BusError>> {
        match self {
            Frames::Bus(_, s) => s.next().await,
            Frames::Gateway(frames, idle) => {
                let next = match idle {
                    Some(idle) => match tokio::time::timeout(*idle, frames.next()).await {
                        Ok(next) => next,
                        Err(_) => {
                            return Some(Err(BusError::timeout(format!("no frame for {idle:?}"))));
                        }
                    },
                    None => frames.next().await,
                };
                Some(next.unwrap_or_else(|| {
                    Err(BusError::transport(
                        "the gateway's stream ended without a terminal frame",
                    ))
                }))
            }
        }
    }

    /// Ends the call: a stream that has not ended is cancelled (the handler
    /// told to stop) before the bus closes.
    async fn close(self) {
        if let Frames::Bus(bus, s) = self {
            let _ = s.cancel().await;
            bus.close().await;
        }
    }
}

/// `openagentio stream`.
pub async fn stream(a: StreamArgs) -> Exit {
    let mut interrupted = interrupt();
    let run = async {
        let (p, mut opts) = call_setup(&a.call)?;
        if let Some(idle) = a.idle_timeout {
            opts = opts.idle_timeout(idle);
        }
        let mut frames = match remote(&a.call.bus, Some(a.call.timeout)).await? {
            Remote::Bus(bus) => {
                let s = bus.stream_invoke_with(&a.call.target, p, opts).await;
                match s {
                    Ok(s) => Frames::Bus(bus, Box::new(s)),
                    Err(e) => {
                        bus.close().await;
                        return Err(e.into());
                    }
                }
            }
            Remote::Gateway(gw) => Frames::Gateway(
                gw.stream(&a.call.target, &p, a.call.timeout).await?,
                a.idle_timeout,
            ),
        };
        let mut printed_text = false;
        let mut failure = None;
        let reader_gone = output::reader_gone();
        tokio::pin!(reader_gone);
        loop {
            let frame = tokio::select! {
                f = frames.next() => f,
                by = &mut interrupted => {
                    failure = Some(Exit::Interrupted(by));
                    break;
                }
                () = &mut reader_gone => {
                    failure = Some(Exit::OutputClosed);
                    break;
                }
            };
            let Some(frame) = frame else { break };
            let frame = match frame {
                Ok(f) => f,
                Err(e) => {
                    failure = Some(Exit::Bus(e));
                    break;
                }
            };
            let printed = if a.json {
                output::line(serde_json::to_string(&frame).unwrap_or_default())
            } else if frame.event_type.as_str() == "agent.response.delta" {
                // `{"delta": "text"}` as this runtime sends it; other SDKs'
                // writers take any value: a bare string is text too, and
                // anything else is shown as its JSON on a line of its own.
                let payload = frame.payload_or_null();
                let delta = payload.get("delta").unwrap_or(payload);
                match delta {
                    Value::String(text) => {
                        printed_text = true;
                        output::write(text)
                    }
                    Value::Null => Ok(()),
                    other => output::line(other),
                }
            } else if frame.is_terminal() && frame.error().is_none() && !printed_text {
                // Nothing streamed as text: show the result (a final frame
                // carries `{"result": ...}`; `invoke` prints the same value).
                let payload = frame.payload_or_null();
                output::line(payload.get("result").unwrap_or(payload))
            } else {
                Ok(())
            };
            // Nobody reads on: the call ends here (and is cancelled below).
            if let Err(e) = printed {
                failure = Some(e);
                break;
            }
            if let Some(e) = frame.error() {
                failure = Some(Exit::Bus(e));
            }
            if frame.is_terminal() {
                break;
            }
        }
        if printed_text && !a.json && failure.is_none() {
            output::line("")?;
        }
        frames.close().await;
        Ok::<_, Exit>(failure.unwrap_or(Exit::Ok))
    };
    run.await.unwrap_or_else(|e| e)
}

/// `openagentio publish`.
pub async fn publish(a: PublishArgs) -> Exit {
    let run = async {
        let p = payload(a.payload.as_deref(), a.text.as_deref())?;
        let bus = match remote(&a.bus, Some(a.timeout)).await? {
            Remote::Bus(bus) => bus,
            Remote::Gateway(gw) => {
                gw.publish(&a.event_type, &p, a.timeout).await?;
                return Ok(Exit::Ok);
            }
        };
        let mut env = Envelope::new(&a.event_type).with_payload(p);
        let opts = options(&a.bus)?;
        if let Some(t) = opts.tenant {
            env.tenant_id = t.into();
        }
        if let Some(s) = opts.session {
            env.session_id = s.into();
        }
        env.metadata = opts.metadata;
        // A publish the server refuses is the command's result.
        let published = tokio::time::timeout(a.timeout, bus.publish_confirmed(env))
            .await
            .unwrap_or_else(|_| {
                Err(BusError::timeout(format!(
                    "the bus did not take the event within {:?}",
                    a.timeout
                )))
            });
        bus.close().await;
        published?;
        Ok::<_, Exit>(Exit::Ok)
    };
    run.await.unwrap_or_else(|e| e)
}

/// `openagentio subscribe`.
pub async fn subscribe(a: SubscribeArgs) -> Exit {
    let mut interrupted = interrupt();
    let run = async {
        // Both ways end in one stream of envelopes: the bus's subscription
        // through a channel, or the gateway's event feed.
        let deadline = a.timeout.map(|t| tokio::time::Instant::now() + t);
        let (mut events, bus): (gateway::Envelopes, Option<Bus>) =
            match remote(&a.bus, a.timeout).await? {
                Remote::Bus(bus) => {
                    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                    let mut opts = openagentio_core::SubscribeOptions::new();
                    if let Some(t) = &a.bus.tenant {
                        opts = opts.tenant(t);
                    }
                    bus.subscribe_with(&a.event_type, opts, move |env| {
                        let _ = tx.send(env);
                        async { Ok(()) }
                    })
                    .await?;
                    let events = futures::stream::unfold(rx, |mut rx| async move {
                        rx.recv().await.map(|env| (Ok(env), rx))
                    });
                    (Box::pin(events), Some(bus))
                }
                Remote::Gateway(gw) => {
                    // The feed's answer comes at once from a gateway: a
                    // server that holds it is not one to wait for.
                    let opening = a.timeout.unwrap_or(gateway::OPENING_LIMIT);
                    let feed = tokio::time::timeout(opening, gw.subscribe(&a.event_type))
                        .await
                        .map_err(|_| {
                            BusError::timeout(format!(
                                "the gateway did not open the event feed within {opening:?}"
                            ))
                        })??;
                    (feed, None)
                }
            };
        eprintln!("subscribed to {}", a.event_type);
        let mut seen = 0u64;
        let mut failure = None;
        let mut stopped = None;
        let reader_gone = output::reader_gone();
        tokio::pin!(reader_gone);
        // Core NATS drops what a client cannot take (a slow consumer: the
        // client drops it, or the server cuts the connection): said, not silent.
        let mut transport_seen = bus.as_ref().map(|b| b.transport().stats());
        loop {
            if let (Some(b), Some(before)) = (&bus, &mut transport_seen) {
                let now = b.transport().stats();
                if now.dropped != before.dropped || now.reconnects != before.reconnects {
                    eprintln!(
                        "warning: events may have been lost: this subscriber fell behind or its \
                         connection to NATS was cut and made again"
                    );
                    *before = now;
                }
            }
            if a.count.is_some_and(|n| seen >= n) {
                break;
            }
            let next = async {
                tokio::select! {
                    e = events.next() => Some(e),
                    _ = &mut interrupted => None,
                    () = &mut reader_gone => None,
                }
            };
            let env = match deadline {
                Some(d) => match tokio::time::timeout_at(d, next).await {
                    Ok(e) => e,
                    Err(_) => break,
                },
                None => next.await,
            };
            let env = match env {
                // Interrupted, or nobody reads on.
                None => break,
                // A bus subscription ends only when asked to; a gateway's
                // feed ends when the service stops or the connection breaks.
                Some(None) => {
                    if bus.is_none() {
                        failure = Some(BusError::transport("the gateway closed the event feed"));
                    }
                    break;
                }
                Some(Some(Err(e))) => {
                    failure = Some(e);
                    break;
                }
                Some(Some(Ok(env))) => env,
            };
            // The gateway ends a feed whose client fell behind with an error frame.
            if let Some(e) = env.error().filter(|_| bus.is_none() && env.is_terminal()) {
                failure = Some(e);
                break;
            }
            if let Err(e) = output::line(serde_json::to_string(&env).unwrap_or_default()) {
                stopped = Some(e);
                break;
            }
            seen += 1;
        }
        if let Some(bus) = bus {
            bus.close().await;
        }
        if let Some(stopped) = stopped {
            return Ok(stopped);
        }
        Ok::<_, Exit>(failure.map_or(Exit::Ok, Exit::Bus))
    };
    run.await.unwrap_or_else(|e| e)
}

/// `openagentio targets`.
pub async fn targets(a: TargetsArgs) -> Exit {
    let run = async {
        let list = match remote(&a.bus, Some(a.timeout)).await? {
            Remote::Bus(bus) => {
                let list = openagentio_core::catalog::gather(
                    &bus,
                    a.bus.tenant.as_deref(),
                    a.timeout,
                    openagentio_core::catalog::MORE_ANSWERS_GRACE,
                )
                .await;
                bus.close().await;
                serde_json::to_value(list?).unwrap_or_default()
            }
            Remote::Gateway(gw) => gw.targets(a.timeout).await?,
        };
        if a.json {
            output::line(serde_json::to_string_pretty(&list).unwrap_or_default())?;
            return Ok(Exit::Ok);
        }
        let items = list.as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            output::line("no targets")?;
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
            output::line(format_args!("{name:<32} {kind:<6} {bridge:<16} {desc}"))?;
        }
        Ok::<_, Exit>(Exit::Ok)
    };
    run.await.unwrap_or_else(|e| e)
}
