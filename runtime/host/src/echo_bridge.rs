//! The built-in `echo` bridge: a target that answers with its payload, and
//! streams the `text` of its payload (or the payload itself, when it is a
//! string) back word by word. For trying the service and the gateway with
//! nothing else installed.
//!
//! Its frames go only to callers that ask for them (`stream_invoke`, the
//! gateway's `/stream`): a caller that does not say, as reference-SDK callers
//! do not, gets the answer alone, since a reference `invoke` keeps the first
//! frame it gets (as for the MCP bridge's tools).

use std::time::Duration;

use async_trait::async_trait;
use openagentio_core::{
    Bridge, BridgeError, BridgeHealth, Bus, BusError, Registration, StreamWriter, TargetInfo,
};
use serde_json::{Value, json};

/// Config of an `echo` bridge.
#[derive(Clone, Debug)]
pub struct EchoConfig {
    /// The target it serves.
    pub target: String,
    /// Pause between streamed words.
    pub word_delay: Duration,
}

/// The `echo` bridge.
pub struct EchoBridge {
    name: String,
    config: EchoConfig,
    registration: Option<Registration>,
}

impl EchoBridge {
    /// A bridge named `name`.
    pub fn new(name: impl Into<String>, config: EchoConfig) -> Self {
        EchoBridge {
            name: name.into(),
            config,
            registration: None,
        }
    }
}

#[async_trait]
impl Bridge for EchoBridge {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "echo"
    }

    async fn start(&mut self, bus: &Bus) -> Result<(), BridgeError> {
        let delay = self.config.word_delay;
        let reg = bus
            .handle_stream(&self.config.target, move |req, w: StreamWriter| async move {
                let payload = req.payload().clone();
                let text = text_of(&payload).to_owned();
                if req.stream_requested() != Some(true) {
                    return w.send(openagentio_core::FrameKind::Final, Some(payload)).await;
                }
                w.started(json!({"bridge": "echo"})).await?;
                for (i, word) in text.split_whitespace().enumerate() {
                    tokio::select! {
                        _ = req.cancelled() => return Err(BusError::unavailable(if req.bus().is_draining() {
                            "the service is shutting down"
                        } else {
                            "the caller went away"
                        })),
                        _ = tokio::time::sleep(delay) => {}
                    }
                    let sep = if i == 0 { "" } else { " " };
                    w.delta_text(format!("{sep}{word}")).await?;
                }
                w.finish(payload).await
            })
            .await
            .map_err(|e| BridgeError::transient(&self.name, e.to_string()))?;
        self.registration = Some(reg);
        Ok(())
    }

    async fn stop(&mut self) -> Result<(), BridgeError> {
        if let Some(r) = self.registration.take() {
            r.unsubscribe()
                .await
                .map_err(|e| BridgeError::transient(&self.name, e.to_string()))?;
        }
        Ok(())
    }

    fn health(&self) -> BridgeHealth {
        if self.registration.is_some() {
            BridgeHealth::healthy()
        } else {
            BridgeHealth::unhealthy("not started")
        }
    }

    fn targets(&self) -> Vec<TargetInfo> {
        vec![TargetInfo {
            name: self.config.target.clone(),
            description:
                "Answers with its payload; streams the payload's `text` (or a string payload) back word by word.".into(),
            streaming: true,
            input_schema: Some(json!({"anyOf": [
                {"type": "object", "properties": {"text": {"type": "string"}}},
                {"type": "string"}
            ]})),
            bridge: self.name.clone(),
            upstream_name: None,
        }]
    }
}

/// What the stream sends back word by word: a string payload, or the
/// `text` of an object payload; nothing otherwise.
fn text_of(payload: &Value) -> &str {
    payload
        .as_str()
        .or_else(|| payload.get("text").and_then(Value::as_str))
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn deltas(bus: &Bus, payload: Value) -> (Vec<String>, Value) {
        let mut stream = bus.stream_invoke("echo", payload).await.unwrap();
        let mut words = Vec::new();
        while let Some(frame) = stream.next().await {
            let frame = frame.unwrap();
            if let Some(delta) = frame.payload.as_ref().and_then(|p| p.get("delta")) {
                words.push(delta.as_str().unwrap().to_owned());
            }
            if frame.is_terminal() {
                return (words, frame.payload.unwrap_or(Value::Null));
            }
        }
        panic!("no terminal frame");
    }

    #[tokio::test]
    async fn streams_the_text_of_an_object_or_a_string_payload() {
        let bus = Bus::memory();
        let config = EchoConfig {
            target: "echo".into(),
            word_delay: Duration::ZERO,
        };
        let mut bridge = EchoBridge::new("echo", config);
        bridge.start(&bus).await.unwrap();
        let (words, last) = deltas(&bus, json!({"text": "one two"})).await;
        assert_eq!(words, ["one", " two"]);
        assert_eq!(last, json!({"result": {"text": "one two"}}));
        let (words, last) = deltas(&bus, json!("three four five")).await;
        assert_eq!(words, ["three", " four", " five"]);
        assert_eq!(last, json!({"result": "three four five"}));
        let (words, _) = deltas(&bus, json!({"n": 1})).await;
        assert!(words.is_empty());
        let answer = bus.invoke("echo", json!("as is")).await.unwrap();
        assert_eq!(answer.payload, Some(json!("as is")));
        bridge.stop().await.unwrap();
    }

    #[tokio::test]
    async fn a_caller_that_does_not_ask_for_frames_gets_the_answer_alone() {
        // As a reference-SDK caller: no `acp.stream` on its requests.
        let bus = Bus::builder()
            .preparer(|env: &mut openagentio_core::Envelope| {
                env.metadata.remove(openagentio_core::context::STREAM_KEY);
            })
            .build();
        let config = EchoConfig {
            target: "echo".into(),
            word_delay: Duration::ZERO,
        };
        let mut bridge = EchoBridge::new("echo", config);
        bridge.start(&bus).await.unwrap();
        let mut stream = bus
            .stream_invoke("echo", json!({"text": "one two"}))
            .await
            .unwrap();
        let first = stream.next().await.unwrap().unwrap();
        assert!(first.is_final, "the first frame is the answer: {first:?}");
        assert_eq!(first.seq, 0);
        assert_eq!(first.payload, Some(json!({"text": "one two"})));
        assert!(stream.next().await.is_none());
        bridge.stop().await.unwrap();
    }
}
