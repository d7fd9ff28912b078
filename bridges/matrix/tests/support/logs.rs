//! Captures the tracing output of the whole test binary (to check that no
//! secret is ever logged). Set `OAIO_TEST_LOG=1` to also print it.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if std::env::var_os("OAIO_TEST_LOG").is_some() {
            let _ = std::io::stderr().write_all(buf);
        }
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static LOGS: OnceLock<Buffer> = OnceLock::new();

/// Installs the capturing subscriber (once per binary).
pub fn capture() {
    LOGS.get_or_init(|| {
        let buf = Buffer::default();
        let writer = buf.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,openagentio_matrix=trace,openagentio_core=trace",
            ))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .init();
        buf
    });
}

/// Everything logged so far.
pub fn captured() -> String {
    let buf = LOGS.get().expect("logs::capture() first");
    String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned()
}
