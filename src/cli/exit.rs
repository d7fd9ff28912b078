//! Exit codes: 0 success; 1 a failure: a bus error (its wire code is printed),
//! an invalid config file (every error printed with its path) or a service
//! failure; 2 a usage error (bad arguments, payload that is not JSON); 130
//! interrupted by Ctrl-C, 143 by SIGTERM (the call in flight was cancelled).
//! A reader of the output that went away (`| head -1`) ends the command
//! quietly with 0.

use std::process::ExitCode;

use openagentio_core::BusError;

/// How the command ended.
#[derive(Debug)]
pub enum Exit {
    /// Success.
    Ok,
    /// A bus or call failure.
    Bus(BusError),
    /// Bad arguments.
    Usage(String),
    /// An invalid config file (the errors were printed).
    Config,
    /// A failure of the service itself (start-up, bind, connect).
    Service(String),
    /// A failure of the service already reported as a log event.
    Logged,
    /// A signal (Ctrl-C or SIGTERM) while a call was in flight; the handler
    /// was told to stop.
    Interrupted(Interruption),
    /// Standard output was closed by its reader; the call was ended.
    OutputClosed,
}

impl Exit {
    /// A usage error.
    pub fn usage(msg: impl Into<String>) -> Self {
        Exit::Usage(msg.into())
    }

    /// Prints the error, if any, and gives the process exit code.
    pub fn report(self) -> ExitCode {
        match self {
            Exit::Ok => ExitCode::SUCCESS,
            Exit::Bus(e) => {
                eprintln!("error: {}: {}", e.code(), e.message());
                ExitCode::from(1)
            }
            Exit::Service(m) => {
                eprintln!("error: {m}");
                ExitCode::from(1)
            }
            Exit::Usage(m) => {
                eprintln!("usage error: {m}");
                ExitCode::from(2)
            }
            Exit::Config | Exit::Logged => ExitCode::from(1),
            Exit::Interrupted(by) => {
                eprintln!("interrupted: the call was cancelled");
                ExitCode::from(by.exit_code())
            }
            Exit::OutputClosed => ExitCode::SUCCESS,
        }
    }
}

/// The signal that interrupted a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interruption {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM (`kill`, `timeout`, systemd, `docker stop`).
    Terminate,
}

impl Interruption {
    /// 128 plus the signal's number, as a shell reports a process it ended.
    fn exit_code(self) -> u8 {
        match self {
            Interruption::Interrupt => 130,
            Interruption::Terminate => 143,
        }
    }
}

impl From<BusError> for Exit {
    fn from(e: BusError) -> Self {
        Exit::Bus(e)
    }
}
