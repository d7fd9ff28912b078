//! Our own small MCP server, for the quickstart, the demo stack and the tests:
//! stdio by default, or Streamable HTTP with `--http PORT [--host ADDR] [--token T]`.
//! The server itself is [`openagentio_mcp::demo`].

#[tokio::main]
async fn main() {
    if let Err(e) = openagentio_mcp::demo::run(std::env::args().skip(1).collect()).await {
        eprintln!("{e}");
        std::process::exit(2);
    }
}
