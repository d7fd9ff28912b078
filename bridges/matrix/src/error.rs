//! The bridge's error type, mapped to [`BridgeError`] and [`BusError`] at the edges.

use std::time::Duration;

use openagentio_core::{BridgeError, BusError};

/// What went wrong talking to the homeserver or keeping state. Messages never
/// hold the access token or password.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MatrixError {
    /// The homeserver does not accept the access token (wrong, expired or
    /// revoked by a logout).
    #[error(
        "the homeserver rejected the access token of {user_id} ({errcode}: {message}); it is invalid or has been revoked (logged out): configure a new access token"
    )]
    UnknownToken {
        /// The account the token was for.
        user_id: String,
        /// `M_UNKNOWN_TOKEN` or `M_MISSING_TOKEN`.
        errcode: String,
        /// The homeserver's explanation.
        message: String,
        /// Whether the server says a new login (same device) would do.
        soft_logout: bool,
    },
    /// Login with the password was refused.
    #[error("the homeserver refused the password login of {user_id} ({errcode}: {message})")]
    LoginRefused {
        /// The account.
        user_id: String,
        /// Usually `M_FORBIDDEN`.
        errcode: String,
        /// The homeserver's explanation.
        message: String,
    },
    /// Any other error answer.
    #[error("the homeserver answered HTTP {status} {errcode}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Matrix error code, e.g. `M_FORBIDDEN`.
        errcode: String,
        /// The homeserver's explanation.
        message: String,
    },
    /// Rate limited for longer than the bridge waits.
    #[error("rate limited by the homeserver for more than {0:?}")]
    RateLimited(Duration),
    /// The homeserver could not be reached or the connection broke.
    #[error("cannot reach the homeserver: {0}")]
    Network(String),
    /// An answer that does not fit the client-server API.
    #[error("unexpected answer from the homeserver: {0}")]
    Protocol(String),
    /// The state directory cannot be read or written.
    #[error("state directory: {0}")]
    State(String),
    /// Another bridge (in this process or another) holds the state
    /// directory: both would publish every message.
    #[error(
        "state directory {dir} is in use by another running Matrix bridge{}: two bridges \
         on one state directory would each publish every message; stop the other, or \
         give each its own `state_dir`",
        holder.map(|pid| format!(" (process {pid})")).unwrap_or_default()
    )]
    StateInUse {
        /// The directory.
        dir: String,
        /// The process that holds it, when it says.
        holder: Option<u32>,
    },
    /// A request the bridge cannot serve (bad payload, unknown room).
    #[error("{0}")]
    Invalid(String),
    /// The configuration does not work with this homeserver or account.
    #[error("config: {0}")]
    Config(String),
    /// Something other than a homeserver answered at `homeserver_url` (a bare
    /// 404 or 405). At start that is a wrong URL; once the homeserver has
    /// served, a proxy in front of it that is restarting.
    #[error("{0}")]
    NotAHomeserver(String),
}

impl MatrixError {
    /// Whether retrying cannot help (credentials, config, state directory).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            MatrixError::UnknownToken { .. }
                | MatrixError::LoginRefused { .. }
                | MatrixError::Config(_)
                | MatrixError::NotAHomeserver(_)
                | MatrixError::State(_)
                | MatrixError::StateInUse { .. }
        )
    }

    /// Whether a retry of the same request may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            MatrixError::Network(_) | MatrixError::RateLimited(_) => true,
            MatrixError::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// The matching bus error for invoke answers and event handlers.
    pub fn to_bus_error(&self) -> BusError {
        let msg = self.to_string();
        match self {
            MatrixError::UnknownToken { .. } | MatrixError::LoginRefused { .. } => {
                BusError::auth(msg)
            }
            MatrixError::Api { status, .. } if *status >= 500 => BusError::transport(msg),
            MatrixError::Api { status: 429, .. } | MatrixError::RateLimited(_) => {
                BusError::backpressure(msg)
            }
            MatrixError::Api { .. } | MatrixError::Invalid(_) | MatrixError::Config(_) => {
                BusError::invalid(msg)
            }
            MatrixError::NotAHomeserver(_) => BusError::unavailable(msg),
            MatrixError::Network(_) => BusError::unavailable(msg),
            MatrixError::Protocol(_) | MatrixError::State(_) => BusError::transport(msg),
            MatrixError::StateInUse { .. } => BusError::unavailable(msg),
        }
    }

    /// The matching bridge error, permanent or transient.
    pub fn to_bridge_error(&self, bridge: &str) -> BridgeError {
        if self.is_permanent() {
            BridgeError::permanent(bridge, self.to_string())
        } else {
            BridgeError::transient(bridge, self.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openagentio_core::ErrorCode;

    #[test]
    fn credentials_are_permanent_network_is_not() {
        let e = MatrixError::UnknownToken {
            user_id: "@bot:x".into(),
            errcode: "M_UNKNOWN_TOKEN".into(),
            message: "Invalid access token passed.".into(),
            soft_logout: false,
        };
        assert!(e.is_permanent());
        assert!(e.to_bridge_error("m").permanent);
        assert_eq!(e.to_bus_error().code(), ErrorCode::AuthFailure);
        assert!(e.to_string().contains("revoked"));
        let n = MatrixError::Network("refused".into());
        assert!(!n.is_permanent() && n.is_retryable());
        assert_eq!(n.to_bus_error().code(), ErrorCode::AgentUnavailable);
    }
}
