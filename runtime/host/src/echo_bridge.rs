//! The built-in `echo` bridge: a target that answers with its payload, and
//! streams the `text` of its payload back word by word. For trying the service
//! and the gateway with nothing else installed.

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
                let text = payload.get("text").and_then(Value::as_str).unwrap_or("").to_owned();
                if !w.is_streaming() {
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
                "Answers with its payload; streams the payload's `text` back word by word.".into(),
            streaming: true,
            input_schema: Some(
                json!({"type": "object", "properties": {"text": {"type": "string"}}}),
            ),
            bridge: self.name.clone(),
            upstream_name: None,
        }]
    }
}
