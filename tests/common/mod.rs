//! What several of these test files share.

/// `openagentio` with `args` (a client command), run to its end, with none
/// of the environment's `OPENAGENTIO_BUS` or `SSL_CERT_FILE` to change it.
pub fn cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_openagentio"))
        .args(args)
        .env_remove("OPENAGENTIO_BUS")
        .env_remove("SSL_CERT_FILE")
        .output()
        .expect("run the openagentio client")
}
