//! Child processes of `sluice bench redirect` (sluice serve, nginx, wrk) that never outlive
//! the benchmark, even when it is killed with SIGKILL.
//!
//! Every child
//! - runs in its own process group, so that stopping it reaches everything it started
//!   (nginx's worker processes) and a Ctrl-C at the terminal reaches only the benchmark,
//!   which then stops its children itself;
//! - gets a parent-death signal (`PR_SET_PDEATHSIG`, kept across the `nice`/`taskset`
//!   exec chain) set in the forked child before it execs, followed by a check that the
//!   benchmark is still its parent (had it died between the fork and the `prctl`, no signal
//!   would come);
//! - is forked by one thread that lives as long as the process ([`spawn_tied`]): Linux
//!   sends the parent-death signal when the *thread* that forked the child exits, so a
//!   child forked by a short-lived thread (a tokio blocking thread, a test thread) would be
//!   signalled long before the benchmark ends.

use std::io;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rustix::process::{Pid, Signal};
use tokio::process::{Child, Command};

/// What a child receives when the benchmark process dies without stopping it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnParentDeath {
    /// SIGKILL: for single processes (sluice serve, wrk).
    Kill,
    /// SIGTERM: for nginx, whose master stops its worker processes on SIGTERM (a killed
    /// master would leave them running).
    Terminate,
}

impl OnParentDeath {
    fn signal(self) -> Signal {
        match self {
            OnParentDeath::Kill => Signal::KILL,
            OnParentDeath::Terminate => Signal::TERM,
        }
    }
}

/// Makes the child of `cmd` start its own process group and receive `on_death`'s signal
/// when this process dies; the spawn fails (in the child, before exec) when this process is
/// already gone by then. Spawn it with [`spawn_tied`].
#[allow(unsafe_code)]
pub fn tie_to_parent(cmd: &mut Command, on_death: OnParentDeath) {
    let parent = rustix::process::getpid();
    let signal = on_death.signal();
    // SAFETY: the closure runs in the forked child before exec and makes only raw system
    // calls (setpgid, prctl, getppid): async-signal-safe, no allocation, no locks.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::setpgid(None, None)?;
            rustix::process::set_parent_process_death_signal(Some(signal))?;
            // The benchmark died between fork and prctl: no signal will come, so do not run.
            if rustix::process::getppid() != Some(parent) {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        })
    };
}

/// A spawn request to the spawner thread: the command, the runtime its child reports to,
/// and where the result goes.
type SpawnJob = (Command, tokio::runtime::Handle, mpsc::SyncSender<io::Result<Child>>);

/// Spawns `cmd` (prepared with [`tie_to_parent`]) from one thread that lives until the
/// process exits, so that the parent-death signal fires when the process dies and not
/// when the calling thread ends. The child belongs to the calling tokio runtime.
///
/// Errors when there is no current tokio runtime, the spawner thread cannot be started, or
/// the program cannot be started.
pub fn spawn_tied(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Result<mpsc::Sender<SpawnJob>, String>> = OnceLock::new();
    let handle = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("bench-spawner".into())
            .spawn(move || {
                // The sender lives in the static: this loop (and thread) ends with the process.
                for (mut cmd, handle, reply) in rx {
                    let _rt = handle.enter();
                    let _sent = reply.send(cmd.spawn());
                }
            })
            .map(|_| tx)
            .map_err(|e| format!("could not start the spawner thread: {e}"))
    });
    let spawner = spawner.as_ref().map_err(|e| io::Error::other(e.clone()))?;
    let (reply_tx, reply_rx) = mpsc::sync_channel(1);
    spawner.send((cmd, handle, reply_tx)).map_err(|_| io::Error::other("the spawner thread is gone"))?;
    reply_rx.recv().map_err(|_| io::Error::other("the spawner thread is gone"))?
}

/// Sends `sig` to the process group `pgid`; false when it failed (no such group left).
fn signal_group(pgid: Pid, sig: Signal) -> bool {
    rustix::process::kill_process_group(pgid, sig).is_ok()
}

/// A child process (and its process group) whose stdout and stderr go to a log file.
/// Dropped without [`ChildProc::stop`] (error, Ctrl-C), its group gets SIGTERM and up to
/// [`DROP_GRACE`] to exit, then SIGKILL; if the benchmark itself is killed, the child gets
/// its [`OnParentDeath`] signal from the kernel.
#[derive(Debug)]
pub struct ChildProc {
    name: String,
    child: Child,
    /// The child's process group (its own pid).
    pgid: Option<Pid>,
    log: PathBuf,
}

/// How long a dropped [`ChildProc`] may take to exit after SIGTERM before it is killed.
pub const DROP_GRACE: Duration = Duration::from_secs(3);

impl Drop for ChildProc {
    fn drop(&mut self) {
        let Some(pgid) = self.pgid else { return };
        if !matches!(self.child.try_wait(), Ok(None)) {
            // Exited (or waited for by `stop`): sweep anything left in its group.
            signal_group(pgid, Signal::KILL);
            return;
        }
        if signal_group(pgid, Signal::TERM) {
            let deadline = Instant::now() + DROP_GRACE;
            while Instant::now() < deadline {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    signal_group(pgid, Signal::KILL);
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!("warning: {} did not exit within {DROP_GRACE:?} of SIGTERM, killing it", self.name);
        }
        signal_group(pgid, Signal::KILL);
        // `kill_on_drop` also kills (and the runtime reaps) the child when the handle goes.
        let _killed = self.child.start_kill();
    }
}

impl ChildProc {
    /// Starts `cmd` as `name`, logging to `log`, in its own process group and tied to this
    /// process ([`tie_to_parent`], [`spawn_tied`]); must be called within a tokio runtime.
    ///
    /// Errors when the log cannot be created or the program cannot be started.
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf, on_death: OnParentDeath) -> anyhow::Result<ChildProc> {
        let out = std::fs::File::create(&log).with_context(|| format!("could not create \"{}\"", log.display()))?;
        let err = out.try_clone().context("could not share the log file")?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).kill_on_drop(true);
        tie_to_parent(&mut cmd, on_death);
        let child = spawn_tied(cmd).with_context(|| format!("could not start {name}"))?;
        let pgid = child.id().and_then(|p| i32::try_from(p).ok()).and_then(Pid::from_raw);
        Ok(ChildProc { name: name.to_owned(), child, pgid, log })
    }

    /// The process id (`None` once it has been waited for).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// CPU time used so far by the process, its threads and its children
    /// ([`super::procs::cpu_time`]).
    pub fn cpu_time(&self) -> Option<Duration> {
        super::procs::cpu_time(self.pid()?)
    }

    /// Errors (with the end of its log) if the process has exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!("{} exited ({status}); its log ends with:\n{}", self.name, self.log_tail()),
            Err(e) => bail!("could not check on {}: {e}", self.name),
        }
    }

    /// The last 20 lines of the process's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Waits until `probe` answers `Ok(true)`, checking that the process is still running
    /// every 50 ms.
    ///
    /// Errors when the process exits or `timeout` passes first.
    pub async fn wait_ready<F, Fut>(&mut self, timeout: Duration, mut probe: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            self.ensure_running()?;
            if probe().await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("{} did not become ready within {timeout:?}; its log ends with:\n{}", self.name, self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM to the process group (graceful stop: sluice drains its click channel,
    /// nginx stops its workers and exits) and waits up to `grace` for the process; kills the
    /// group after that.
    ///
    /// Errors only when the process cannot be waited for.
    pub async fn stop(mut self, grace: Duration) -> anyhow::Result<()> {
        if let Some(pgid) = self.pgid
            && self.child.id().is_some()
        {
            signal_group(pgid, Signal::TERM);
            if let Ok(r) = tokio::time::timeout(grace, self.child.wait()).await {
                r.with_context(|| format!("could not wait for {}", self.name))?;
                return Ok(()); // Drop sweeps the group.
            }
            tracing::warn!(process = %self.name, "did not stop within {grace:?}, killing it");
            signal_group(pgid, Signal::KILL);
        }
        let _killed = self.child.kill().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
