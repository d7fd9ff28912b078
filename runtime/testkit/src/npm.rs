//! Peers installed from npm: where `scripts/test` puts them.

use std::path::PathBuf;

/// What to run when mock-llm is missing.
pub const MOCK_LLM_INSTALL_HINT: &str = "mock-llm (npm @dwmkerr/mock-llm@0.1.29) is not installed: run ./scripts/test, \
     or `npm install --prefix ~/.cache/openagentio/npm @dwmkerr/mock-llm@0.1.29`, \
     or set MOCK_LLM_BIN to its mock-llm script (node must be on PATH)";

/// The `mock-llm` script (an OpenAI-compatible server from npm):
/// `$MOCK_LLM_BIN`, else `mock-llm` on PATH, else the npm prefix of
/// `scripts/test`. Panics with an install hint when it is missing.
pub fn mock_llm_bin() -> PathBuf {
    if let Ok(p) = std::env::var("MOCK_LLM_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "MOCK_LLM_BIN={} does not exist; {MOCK_LLM_INSTALL_HINT}",
            p.display()
        );
        return p;
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("mock-llm"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let cached = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/openagentio/npm/node_modules/.bin/mock-llm"));
    on_path
        .into_iter()
        .chain(cached)
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{MOCK_LLM_INSTALL_HINT}"))
}
