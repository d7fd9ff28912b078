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

/// Formats `args` into a [`Text`] with one allocation at most: on the stack
/// first, on the heap only when the result is longer than 128 bytes.
/// (`smol_str::format_smolstr!` grows a `String` step by step past 23 bytes.)
pub(crate) fn format_text(args: std::fmt::Arguments<'_>) -> Text {
    use std::io::Write;
    const CAP: usize = 128;
    let mut buf = [0u8; CAP];
    let mut rest = &mut buf[..];
    match rest.write_fmt(args) {
        Ok(()) => {
            let len = CAP - rest.len();
            Text::new(std::str::from_utf8(&buf[..len]).expect("formatted from str"))
        }
        Err(_) => Text::from(args.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_results_are_whole() {
        assert_eq!(format_text(format_args!("a.{}", 7)), "a.7");
        let long = "x".repeat(300);
        assert_eq!(format_text(format_args!("{long}.1")), format!("{long}.1"));
    }
}
