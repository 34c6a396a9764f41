//! CPU scheduling of the threads that answer requests.
//!
//! Linux's fair scheduler (EEVDF, since 6.6) gives each task a virtual deadline of
//! `vruntime + slice / weight`; since 6.12 a task may request its own slice
//! (`sched_setattr(2)` with `sched_runtime` under `SCHED_OTHER`, 0.1–100 ms), and a waking
//! task with a shorter slice than the running one may preempt it at once (`PREEMPT_SHORT`).
//! Sluice's background threads (the click log append thread, the dataflow's timely workers,
//! SQLite's) run bursts of up to a few ms; with the default slice (a few ms) a tokio worker
//! waking for a request that lands while one of them runs on its CPU waits for the burst to
//! end. `sluice bench redirect` showed that wait as the tail (run-queue wait of the worker
//! 326–422 ms per 5-second paced run, against 41–65 ms for nginx's worker). Giving the
//! request threads a short slice ([`request_thread_slice`], `[server] worker-slice`) lets
//! them preempt those bursts without changing anyone's CPU share.
//!
//! Source of the semantics: `Documentation/scheduler/sched-eevdf.rst` and
//! `kernel/sched/syscalls.c` (`__setscheduler_params`) in Linux 6.12+.

use std::time::Duration;

/// Shortest and longest slice the kernel accepts (it clamps to this range).
pub const SLICE_RANGE: (Duration, Duration) = (Duration::from_micros(100), Duration::from_millis(100));

/// Requests a fair-scheduler slice of `slice` (clamped to [`SLICE_RANGE`]) for the calling
/// thread, keeping its policy (`SCHED_OTHER`) and niceness. `Duration::ZERO` returns the
/// thread to the kernel's default slice.
///
/// Errors: the `sched_setattr` error (e.g. `EINVAL` on kernels before 6.12 that reject a
/// runtime for `SCHED_OTHER`, `EPERM` under a seccomp filter); `Unsupported` off Linux.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn set_thread_slice(slice: Duration) -> std::io::Result<()> {
    let tid = rustix::thread::gettid();
    let nice = rustix::process::getpriority_process(Some(tid))?;
    let runtime = if slice.is_zero() { 0 } else { slice.clamp(SLICE_RANGE.0, SLICE_RANGE.1).as_nanos() as u64 };
    let attr = libc::sched_attr {
        size: std::mem::size_of::<libc::sched_attr>() as u32,
        sched_policy: libc::SCHED_OTHER as u32,
        sched_flags: 0,
        sched_nice: nice,
        sched_priority: 0,
        sched_runtime: runtime,
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: `attr` is a valid, fully initialised `sched_attr` whose `size` field is its
    // size; pid 0 is the calling thread; the kernel only reads it during the call.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const libc::sched_attr, 0u32) };
    if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// The calling thread's requested slice (`sched_runtime` from `sched_getattr(2)`), zero when
/// it uses the kernel's default.
///
/// Errors: the `sched_getattr` error; `Unsupported` off Linux.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn thread_slice() -> std::io::Result<Duration> {
    // SAFETY: all-zero bytes are a valid `sched_attr` (plain integers).
    let mut attr: libc::sched_attr = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::sched_attr>() as u32;
    // SAFETY: `attr` is writable for `size` bytes; pid 0 is the calling thread.
    let r = unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &mut attr as *mut libc::sched_attr, size, 0u32) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Before 6.12 the kernel reports 0 for SCHED_OTHER; since, the slice in effect (custom or
    // default) is reported, so a custom one is recognisable only by comparing.
    Ok(Duration::from_nanos(attr.sched_runtime))
}

/// Off Linux: unsupported.
#[cfg(not(target_os = "linux"))]
pub fn set_thread_slice(_slice: Duration) -> std::io::Result<()> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "per-thread slices are set on Linux only"))
}

/// Off Linux: unsupported.
#[cfg(not(target_os = "linux"))]
pub fn thread_slice() -> std::io::Result<Duration> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "per-thread slices are read on Linux only"))
}

/// Hook for the request runtime's threads (`tokio::runtime::Builder::on_thread_start`):
/// requests `slice` for the starting thread; `None` keeps the kernel's default. A kernel that
/// refuses is logged once per thread at debug level and the thread keeps its default.
pub fn request_thread_slice(slice: Option<Duration>) -> impl Fn() + Send + Sync + 'static {
    move || {
        if let Some(s) = slice
            && let Err(e) = set_thread_slice(s)
        {
            tracing::debug!(error = %e, slice_us = s.as_micros() as u64, "could not request a scheduler slice; the thread keeps the default");
        }
    }
}

/// Runs `f` on a new thread that first returns to the kernel's default slice, and waits for
/// it: threads `f` spawns (the dataflow's timely workers) inherit the default, not the short
/// slice of the request thread calling this. Where the kernel refuses, `f` still runs.
///
/// # Panics
/// If `f` panics (the panic is propagated).
pub fn run_with_default_slice<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let h = std::thread::Builder::new()
            .name("sluice-spawner".into())
            .spawn_scoped(s, || {
                if let Err(e) = set_thread_slice(Duration::ZERO) {
                    tracing::debug!(error = %e, "could not return to the default scheduler slice");
                }
                f()
            })
            .expect("spawn a thread");
        match h.join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Whether this kernel takes custom slices (6.12+): it reports the slice it applied.
    fn supported() -> bool {
        std::thread::spawn(|| set_thread_slice(Duration::from_micros(700)).is_ok() && thread_slice().ok() == Some(Duration::from_micros(700)))
            .join()
            .unwrap_or(false)
    }

    #[test]
    fn a_requested_slice_is_applied_clamped_and_keeps_the_niceness() {
        if !supported() {
            eprintln!("kernel before 6.12: custom slices not supported, nothing to check");
            return;
        }
        std::thread::spawn(|| {
            let tid = rustix::thread::gettid();
            let nice = rustix::process::getpriority_process(Some(tid)).expect("nice");
            rustix::process::setpriority_process(Some(tid), (nice + 3).min(19)).expect("raise nice");
            let want = (nice + 3).min(19);
            set_thread_slice(Duration::from_micros(250)).expect("set");
            assert_eq!(thread_slice().expect("get"), Duration::from_micros(250));
            assert_eq!(rustix::process::getpriority_process(Some(tid)).expect("nice"), want, "niceness kept");
            set_thread_slice(Duration::from_micros(5)).expect("set");
            assert_eq!(thread_slice().expect("get"), SLICE_RANGE.0, "clamped up to 0.1 ms");
            set_thread_slice(Duration::from_secs(1)).expect("set");
            assert_eq!(thread_slice().expect("get"), SLICE_RANGE.1, "clamped down to 100 ms");
        })
        .join()
        .expect("thread");
    }

    #[test]
    fn the_runtime_hook_applies_the_slice_to_every_worker() {
        if !supported() {
            return;
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .on_thread_start(request_thread_slice(Some(Duration::from_micros(150))))
            .build()
            .expect("runtime");
        let got: Vec<Duration> = rt.block_on(async {
            let mut v = Vec::new();
            for _ in 0..8 {
                v.push(tokio::spawn(async { thread_slice().expect("get") }).await.expect("task"));
            }
            v.push(tokio::task::spawn_blocking(|| thread_slice().expect("get")).await.expect("blocking"));
            v
        });
        assert!(got.iter().all(|&d| d == Duration::from_micros(150)), "{got:?}");
        // Background threads started through `run_with_default_slice` from a request
        // thread get the kernel's default, and so do the threads they spawn.
        let default = std::thread::spawn(|| thread_slice().expect("get")).join().expect("thread");
        assert_ne!(default, Duration::from_micros(150));
        let (own, child) = rt.block_on(async {
            tokio::spawn(async {
                run_with_default_slice(|| (thread_slice().expect("get"), std::thread::spawn(|| thread_slice().expect("get")).join().expect("child")))
            })
            .await
            .expect("task")
        });
        assert_eq!((own, child), (default, default));
    }
}
