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

/// `parts` joined into a [`Text`] with one allocation at most: on the stack
/// first, on the heap only when the result is longer than 128 bytes. Reply
/// subjects and trace parents are made this way on every call, where the
/// formatting machinery of `format!` showed in profiles.
pub(crate) fn concat_text(parts: &[&str]) -> Text {
    const CAP: usize = 128;
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > CAP {
        return Text::from(parts.concat());
    }
    let mut buf = [0u8; CAP];
    let mut at = 0;
    for p in parts {
        buf[at..at + p.len()].copy_from_slice(p.as_bytes());
        at += p.len();
    }
    Text::new(std::str::from_utf8(&buf[..len]).expect("joined from str"))
}

/// The decimal digits of `n`, on the stack.
pub(crate) fn decimal(n: u64, buf: &mut [u8; 20]) -> &str {
    let mut at = buf.len();
    let mut n = n;
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[at..]).expect("digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_results_are_whole() {
        assert_eq!(concat_text(&["a.", "7"]), "a.7");
        let long = "x".repeat(300);
        assert_eq!(concat_text(&[&long, ".1"]), format!("{long}.1"));
        let mut buf = [0u8; 20];
        assert_eq!(decimal(0, &mut buf), "0");
        assert_eq!(decimal(u64::MAX, &mut buf), u64::MAX.to_string());
    }
}
