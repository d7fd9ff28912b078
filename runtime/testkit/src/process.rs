//! Child processes of a test: killed on drop, and `openagentio run` started
//! as a user starts it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A child process, killed and reaped when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `{bin} run -c {config} {extra...}` in `cwd` and returns once the
/// service printed its summary (the line "stop with Ctrl-C"), with the summary.
/// Panics if the service ends before that.
pub fn run_service(bin: &str, config: &Path, extra: &[&str], cwd: &Path) -> (ChildGuard, String) {
    let mut child = Command::new(bin)
        .args(["run", "-c", config.to_str().expect("a UTF-8 config path")])
        .args(extra)
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start openagentio run");
    let stdout = child.stdout.take().expect("piped stdout");
    let guard = ChildGuard(child);
    let mut summary = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read the service's output");
        summary.push_str(&line);
        summary.push('\n');
        if line.contains("stop with Ctrl-C") {
            return (guard, summary);
        }
    }
    panic!("the service ended before it started: {summary}");
}

/// The path of the workspace example `name`, as `cargo test` builds it next
/// to the test binaries (`target/<profile>/examples/<name>`).
///
/// Panics, naming the command that builds it, when it is not there.
pub fn example_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test> -> target/<profile>/examples/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test binary under target/<profile>/deps");
    let bin = profile_dir.join("examples").join(name);
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build --example {name}`",
        bin.display()
    );
    bin
}
