//! Virtual time. Every timer (PIT, RTC, later the LAPIC and the TSC) reads one clock, so
//! that time can be tied to the host or, later, to instructions executed.

use std::time::Instant;

pub trait Clock: Send + Sync {
    /// Nanoseconds of virtual time since the machine was created.
    fn now_ns(&self) -> u64;
}

/// Virtual time that follows the host's monotonic clock.
pub struct HostClock {
    start: Instant,
}

impl HostClock {
    pub fn new() -> Self {
        HostClock {
            start: Instant::now(),
        }
    }
}

impl Default for HostClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for HostClock {
    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

/// A device whose behaviour depends on time passing (timer interrupts, input polling).
pub trait Timed: Send {
    /// Brings the device up to `now_ns`, raising any interrupts that fell due. Returns the
    /// next time at which it wants to be polled again, if any.
    fn poll(&mut self, now_ns: u64) -> Option<u64>;
}

/// A clock a test moves by hand.
#[derive(Default)]
pub struct ManualClock(pub std::sync::atomic::AtomicU64);

impl ManualClock {
    pub fn set(&self, ns: u64) {
        self.0.store(ns, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Virtual time that advances with instructions executed (`--icount`): the engine moves it
/// after every slice of guest execution, and jumps it to the next timer deadline when the
/// vCPU halts, so a run depends only on its inputs and repeats exactly.
#[derive(Default)]
pub struct IcountClock {
    ns: std::sync::atomic::AtomicU64,
}

impl IcountClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves time forward to `ns` (never backward).
    pub fn advance_to(&self, ns: u64) {
        self.ns.fetch_max(ns, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for IcountClock {
    fn now_ns(&self) -> u64 {
        self.ns.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icount_clock_only_moves_forward() {
        let c = IcountClock::new();
        assert_eq!(c.now_ns(), 0);
        c.advance_to(500);
        c.advance_to(100);
        assert_eq!(c.now_ns(), 500);
    }
}
