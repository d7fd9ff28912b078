//! Standard output of the commands. A reader that goes away (`| head -1`)
//! ends the command quietly, its call cancelled, instead of a panic from
//! `println!` or a call that runs on with nobody reading.

use std::fmt::Display;
use std::io::Write;

use super::Exit;

/// Writes `text` and a line break to standard output, flushed.
pub fn line(text: impl Display) -> Result<(), Exit> {
    write(format_args!("{text}\n"))
}

/// Writes `text` to standard output, flushed.
pub fn write(text: impl Display) -> Result<(), Exit> {
    let mut out = std::io::stdout().lock();
    write!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Exit::OutputClosed,
            _ => Exit::Service(format!("cannot write to standard output: {e}")),
        })
}

/// Resolves when the reader of standard output has gone (a pipe whose other
/// end closed), so that a command waiting for frames or events ends then,
/// not at its next write; never, for a file or a terminal.
pub fn reader_gone() -> impl std::future::Future<Output = ()> + Send {
    use rustix::event::{PollFd, PollFlags};
    let (gone, wait) = tokio::sync::oneshot::channel();
    // poll(2) reports an error or hang-up with no event asked for. It
    // blocks: a thread of its own, left behind when the process ends.
    std::thread::spawn(move || {
        let stdout = std::io::stdout();
        loop {
            let mut fds = [PollFd::new(&stdout, PollFlags::empty())];
            match rustix::event::poll(&mut fds, None) {
                Err(rustix::io::Errno::INTR) => continue,
                Ok(_) if fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP) => {
                    let _ = gone.send(());
                    return;
                }
                // Nothing to watch (not open, or no such answer): never.
                _ => return,
            }
        }
    });
    async move {
        if wait.await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
