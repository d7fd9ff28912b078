//! The `openagentio` command: runs the service and is the client of a running bus.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Exit};

// Messages are built on one worker and freed on another many times a call;
// mimalloc handles that cross-thread traffic far better than the system
// allocator (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return Exit::Service(format!("cannot start the runtime: {e}")).report(),
    };
    let exit = rt.block_on(cli::dispatch(cli.command));
    exit.report()
}
