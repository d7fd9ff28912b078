//! The string type of envelope fields.
//!
//! Envelope fields are copied into every reply frame, so they use a string that
//! is cheap to clone: up to 23 bytes inline, longer text shared by reference
//! count, constants (`"acp/1.0"`, event types) borrowed. It reads as a `&str`
//! and converts from `String` and `&str`.

/// An immutable string that clones without copying: [`smol_str::SmolStr`].
///
/// ```
/// use openagentio_core::{Envelope, Text};
/// let mut env = Envelope::new("agent.message.received");
/// env.session_id = "s-1".into();
/// env.user_id = String::from("u-1").into();
/// let copy: Text = env.session_id.clone();
/// assert_eq!(copy, "s-1");
/// assert_eq!(env.user_id.as_str(), "u-1");
/// ```
pub type Text = smol_str::SmolStr;
