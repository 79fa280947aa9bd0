//! Getting a runaway stream out of KVM_RUN: a thread that kicks the vCPU only when a run
//! has been armed for longer than its time-out. Unlike the engine's `Kicker` (a kick every
//! 10 ms) it leaves well-behaved streams alone: an entry is never interrupted unless it
//! is already late.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_bindings::kvm_run;

use crate::kvm::kick;

/// How often the thread looks at the deadline.
const POLL: Duration = Duration::from_millis(100);

struct Shared {
    /// (deadline of the current run, stop the thread)
    state: Mutex<(Option<Instant>, bool)>,
    wake: Condvar,
}

#[derive(Clone, Copy)]
struct Target(*mut kvm_run, libc::pthread_t);
// SAFETY: the page and the thread outlive the watchdog (it is joined on drop, before the
// vCPU it belongs to is closed); the kick only stores a byte and sends a signal.
unsafe impl Send for Target {}

pub struct Watchdog {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// A watchdog for the calling thread's vCPU (`run`: its kvm_run page).
    pub fn start(run: *mut kvm_run) -> Watchdog {
        kick::install_handler();
        // SAFETY: pthread_self has no preconditions.
        let target = Target(run, unsafe { libc::pthread_self() });
        let shared = Arc::new(Shared {
            state: Mutex::new((None, false)),
            wake: Condvar::new(),
        });
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fuzz-watchdog".into())
            .spawn(move || watch(&sh, target))
            .ok();
        Watchdog { shared, thread }
    }

    /// Arms (Some(time-out)) or disarms (None) the watchdog. No wake-up: the thread looks
    /// every `POLL`, so arming costs a lock, not a context switch per stream.
    pub fn arm(&self, timeout: Option<Duration>) {
        twinvm_devices::bus::lock(&self.shared.state).0 = timeout.map(|t| Instant::now() + t);
    }
}

fn watch(sh: &Shared, target: Target) {
    let mut g = twinvm_devices::bus::lock(&sh.state);
    loop {
        if g.1 {
            return;
        }
        let wait = match g.0 {
            Some(d) if Instant::now() >= d => {
                // Late: kick, and again every 10 ms until the run loop disarms.
                // SAFETY: see `Target`.
                unsafe { kick::kick_vcpu(target.0, target.1) };
                Duration::from_millis(10)
            }
            Some(d) => (d - Instant::now()).min(POLL),
            None => POLL,
        };
        g = sh
            .wake
            .wait_timeout(g, wait)
            .map(|(g, _)| g)
            .unwrap_or_else(|e| e.into_inner().0);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        twinvm_devices::bus::lock(&self.shared.state).1 = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
