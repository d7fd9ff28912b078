//! Free loopback ports.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where ports are picked from: below the kernel's ephemeral range.
const LOWEST: u16 = 20_000;

/// A TCP port on 127.0.0.1 that is free now, for a server about to be told
/// to listen there.
///
/// Picked at random below the kernel's ephemeral range, and never handed
/// out twice by one process: a port the kernel picks (`bind` to port 0)
/// comes from the range that outgoing connections take their local ports
/// from, and a test's own clients could take it in the moment before its
/// server binds it; two calls in a row could also get the same one.
///
/// ```
/// let a = openagentio_testkit::free_port();
/// let b = openagentio_testkit::free_port();
/// assert_ne!(a, b);
/// std::net::TcpListener::bind(("127.0.0.1", a)).unwrap();
/// ```
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let highest = ephemeral_start().saturating_sub(1).max(LOWEST + 1_000);
    let span = u64::from(highest - LOWEST) + 1;
    for _ in 0..1_000 {
        let port = LOWEST + (random() % span) as u16;
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    // Everything tried was taken: let the kernel pick.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind a loopback port");
    given.insert(port);
    port
}

/// The first port of the kernel's ephemeral range (32768 when unknown).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A random number: the standard library seeds each `RandomState` anew.
fn random() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// Waits until something accepts connections on `127.0.0.1:port`.
pub fn wait_for_port(port: u16, limit: Duration) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    while start.elapsed() < limit {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}
