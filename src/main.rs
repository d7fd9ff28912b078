//! The `openagentio` command: runs the service and is the client of a running bus.

fn main() {
    println!("openagentio {}: the service command line is being built; see README.md", env!("CARGO_PKG_VERSION"));
}
