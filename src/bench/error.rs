//! How a benchmark ends other than by finishing: refused arguments and stop signals, each
//! with its conventional process exit code.

use std::fmt;

/// A benchmark that did not run to the end for a reason the exit code should tell
/// (returned inside an `anyhow::Error`; [`exit_code`] maps any error to its code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BenchError {
    /// The arguments were refused before anything started (the message names the flag and
    /// what it accepts); exit code 2, as clap's own argument errors.
    Usage(String),
    /// Stopped by a signal after every child process was stopped; exit code 128 + the
    /// signal's number (SIGHUP 129, SIGINT 130, SIGQUIT 131, SIGTERM 143).
    Interrupted {
        /// The signal's name, e.g. `SIGTERM`.
        signal: &'static str,
        /// The signal's number (Linux), e.g. 15.
        number: i32,
    },
}

impl BenchError {
    /// The process exit code: 2 for [`BenchError::Usage`], 128 + the signal's number for
    /// [`BenchError::Interrupted`].
    pub fn exit_code(&self) -> u8 {
        match self {
            BenchError::Usage(_) => 2,
            BenchError::Interrupted { number, .. } => u8::try_from(128 + number).unwrap_or(1),
        }
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Usage(msg) => f.write_str(msg),
            BenchError::Interrupted { signal, .. } => write!(f, "interrupted by {signal}; children stopped"),
        }
    }
}

impl std::error::Error for BenchError {}

/// A usage error ([`BenchError::Usage`], exit code 2) with `message`, as an `anyhow::Error`.
pub fn usage_error(message: String) -> anyhow::Error {
    anyhow::Error::new(BenchError::Usage(message))
}

/// The exit code of a process that failed with `e`: [`BenchError::exit_code`] when `e` is
/// (or wraps) a [`BenchError`], else 1.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    e.chain().find_map(|c| c.downcast_ref::<BenchError>()).map_or(1, BenchError::exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        let sig = |signal, number| anyhow::Error::new(BenchError::Interrupted { signal, number });
        assert_eq!(exit_code(&sig("SIGHUP", 1)), 129);
        assert_eq!(exit_code(&sig("SIGINT", 2)), 130);
        assert_eq!(exit_code(&sig("SIGQUIT", 3)), 131);
        assert_eq!(exit_code(&sig("SIGTERM", 15)), 143);
        assert_eq!(sig("SIGTERM", 15).to_string(), "interrupted by SIGTERM; children stopped");
        let usage = anyhow::Error::new(BenchError::Usage("--x must be positive".into()));
        assert_eq!(exit_code(&usage), 2);
        assert_eq!(exit_code(&usage.context("while starting")), 2, "found under context");
        assert_eq!(exit_code(&anyhow::anyhow!("nginx did not start")), 1);
    }
}
