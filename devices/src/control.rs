//! Requests from devices to stop or reset the machine.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Why the machine must stop running guest code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopRequest {
    /// isa-debug-exit: the process exits with this status, `(value << 1) | 1`.
    DebugExit(i32),
    /// ACPI S5 or similar: a clean power-off.
    PowerOff,
    /// A reset through the 8042, port 0x92, 0xCF9 or ACPI.
    Reset,
    /// The user asked to quit (Ctrl-A X on the console).
    UserQuit,
}

/// Shared between devices (which request) and the engine (which polls after every I/O
/// access and at block boundaries). The first request wins until it is taken.
#[derive(Default)]
pub struct VmControl {
    pending: AtomicBool,
    request: Mutex<Option<StopRequest>>,
}

impl VmControl {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn request(&self, r: StopRequest) {
        let mut slot = crate::bus::lock(&self.request);
        if slot.is_none() {
            *slot = Some(r);
            self.pending.store(true, Ordering::Release);
        }
    }

    /// Cheap check for the engine's hot path.
    #[inline]
    pub fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    pub fn take(&self) -> Option<StopRequest> {
        let mut slot = crate::bus::lock(&self.request);
        self.pending.store(false, Ordering::Release);
        slot.take()
    }
}
