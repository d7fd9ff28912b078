//! The reference Python SDK (`openagentio==0.3.0`, `nats-py`) in a virtualenv.

use std::path::PathBuf;

/// The Python interpreter of the virtualenv that has the reference SDK:
/// `$OPENAGENTIO_PYTHON`, else `~/.cache/openagentio/venv/bin/python`.
/// Panics with an install hint when it is missing.
pub fn reference_python() -> PathBuf {
    let p = std::env::var("OPENAGENTIO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
            PathBuf::from(home).join(".cache/openagentio/venv/bin/python")
        });
    assert!(
        p.is_file(),
        "the reference Python SDK is not installed at {}: run ./scripts/test, or create a virtualenv there with `pip install openagentio==0.3.0 nats-py`",
        p.display()
    );
    p
}
