//! Interrupt lines from devices to the interrupt controllers, and the CPU's INTR input.

use std::sync::Arc;

/// Something that receives ISA/GSI interrupt line changes: the platform's router, which
/// feeds the PIC (and, with the system-CPU work, the IOAPIC).
pub trait IrqSink: Send + Sync {
    fn set_irq(&self, irq: u32, level: bool);
}

/// One device's interrupt line. Cloning gives another handle to the same line.
#[derive(Clone)]
pub struct IrqLine {
    sink: Arc<dyn IrqSink>,
    irq: u32,
}

impl IrqLine {
    pub fn new(sink: Arc<dyn IrqSink>, irq: u32) -> Self {
        IrqLine { sink, irq }
    }
    pub fn irq(&self) -> u32 {
        self.irq
    }
    pub fn set_level(&self, level: bool) {
        self.sink.set_irq(self.irq, level);
    }
    pub fn raise(&self) {
        self.set_level(true);
    }
    pub fn lower(&self) {
        self.set_level(false);
    }
    /// An edge: raise then lower, as ISA edge-triggered devices signal.
    pub fn pulse(&self) {
        self.set_level(true);
        self.set_level(false);
    }
}

/// What the CPU sees of the interrupt controllers: the INTR pin and the acknowledge cycle.
pub trait InterruptController: Send + Sync {
    /// Whether INTR is asserted. Cheap: engines call it at every block boundary.
    fn intr_pending(&self) -> bool;
    /// The INTA cycle: the vector of the interrupt the CPU now takes, if one is still
    /// pending (it may have been withdrawn since `intr_pending`).
    fn acknowledge(&self) -> Option<u8>;
}

/// A sink that ignores everything, for devices tested on their own.
pub struct NullSink;

impl IrqSink for NullSink {
    fn set_irq(&self, _irq: u32, _level: bool) {}
}

#[cfg(test)]
pub mod test_util {
    use super::*;
    use std::sync::Mutex;

    /// Records every level change, for device unit tests.
    #[derive(Default)]
    pub struct RecordingSink {
        pub events: Mutex<Vec<(u32, bool)>>,
    }

    impl IrqSink for RecordingSink {
        fn set_irq(&self, irq: u32, level: bool) {
            self.events.lock().unwrap().push((irq, level));
        }
    }

    impl RecordingSink {
        pub fn level(&self, irq: u32) -> bool {
            self.events
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|(i, _)| *i == irq)
                .map(|(_, l)| *l)
                .unwrap_or(false)
        }
    }
}
