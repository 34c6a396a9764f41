//! Waking parked timely workers when new input arrives.
//!
//! An idle worker parks for up to [`crate::pipeline::IDLE_PARK`] (so an idle process costs
//! almost no CPU). Whatever hands the workers new input (a source's feeder, the link-metadata
//! feed) registers the threads that read it in a [`WakeSlot`] and calls [`WakeSlot::wake`]
//! after each delivery, so the input is picked up at once rather than after the park.

use std::sync::Arc;
use std::thread::Thread;

use parking_lot::Mutex;

/// Threads to unpark when new input is available. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct WakeSlot(Arc<Mutex<Vec<Thread>>>);

impl WakeSlot {
    /// An empty slot (waking it does nothing until a thread registers).
    pub fn new() -> WakeSlot {
        WakeSlot::default()
    }

    /// Registers the calling thread (idempotent; call it from the reading worker's thread).
    pub fn register(&self) {
        let me = std::thread::current();
        let mut threads = self.0.lock();
        if !threads.iter().any(|t| t.id() == me.id()) {
            threads.push(me);
        }
    }

    /// Unparks every registered thread (a no-op for a thread that is not parked, except that
    /// its next park returns at once).
    pub fn wake(&self) {
        for t in self.0.lock().iter() {
            t.unpark();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WakeSlot;
    use std::time::{Duration, Instant};

    #[test]
    fn wake_unparks_a_registered_thread_before_its_timeout() {
        let slot = WakeSlot::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let s2 = slot.clone();
        let h = std::thread::spawn(move || {
            s2.register();
            tx.send(()).expect("send");
            let t0 = Instant::now();
            // Spurious wake-ups aside, only the unpark ends this park before 30 s.
            std::thread::park_timeout(Duration::from_secs(30));
            t0.elapsed()
        });
        rx.recv().expect("registered");
        std::thread::sleep(Duration::from_millis(20));
        slot.wake();
        let parked = h.join().expect("join");
        assert!(parked < Duration::from_secs(10), "woken after {parked:?}");
    }
}
