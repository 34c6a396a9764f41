//! A command's output on standard output: when its reader goes away (`sluice log tail |
//! head -1`), the command ends quietly with exit status 0, as other Unix tools do, instead of
//! failing with "Broken pipe".

use std::fmt;

/// The reader of standard output closed it (a write failed with `EPIPE`). The binary ends
/// with exit status 0 and no message when a command fails with this error ([`is_closed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputClosed;

impl fmt::Display for OutputClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard output was closed by its reader")
    }
}

impl std::error::Error for OutputClosed {}

/// The error of a failed write of a command's output: [`OutputClosed`] for a broken pipe,
/// else `e` with the context "could not write the output".
pub fn write_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe { anyhow::Error::new(OutputClosed) } else { anyhow::Error::new(e).context("could not write the output") }
}

/// Writes `text` to standard output and flushes it (the commands' `println!`, which panics
/// on a closed output).
///
/// Errors: [`write_error`] of a failed write ([`OutputClosed`] when the reader went away).
pub fn print(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).map_err(write_error)
}

/// [`print`] of `text` and a newline.
///
/// Errors: as [`print`].
pub fn println(text: &str) -> anyhow::Result<()> {
    print(&format!("{text}\n"))
}

/// Whether `e` is (or wraps) [`OutputClosed`].
pub fn is_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<OutputClosed>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_broken_pipe_is_a_closed_output() {
        let closed = write_error(std::io::ErrorKind::BrokenPipe.into());
        assert!(is_closed(&closed));
        assert!(is_closed(&closed.context("while printing")), "found under context");
        let full = write_error(std::io::Error::from_raw_os_error(28));
        assert!(!is_closed(&full));
        assert!(full.to_string() == "could not write the output", "{full}");
        assert!(!is_closed(&anyhow::anyhow!("broken pipe")));
    }
}
