//! The interrupt router of an APIC PC: every device line goes to both the 8259 pair (ISA
//! IRQs 0–15) and the IOAPIC (GSIs 0–23), as on a PIIX/ICH chipset. ISA IRQs map 1:1 to
//! IOAPIC pins except IRQ 0, which goes to pin 2 (the MADT carries the matching interrupt
//! source override); IRQ 2, the cascade, reaches the PIC only.
//!
//! Every line is wired active high: the ACPI tables must describe PCI GSIs (16–23) as
//! level, active high (as QEMU's do), or the IOAPIC's polarity bit would invert them.

use std::sync::Arc;

use crate::ioapic::{IoApic, IOAPIC_PINS};
use crate::irq::IrqSink;
use crate::pic::IsaInterrupts;

pub struct GsiRouter {
    pic: Arc<IsaInterrupts>,
    ioapic: Arc<IoApic>,
}

impl GsiRouter {
    pub fn new(pic: Arc<IsaInterrupts>, ioapic: Arc<IoApic>) -> Arc<Self> {
        Arc::new(GsiRouter { pic, ioapic })
    }

    /// The IOAPIC pin an IRQ/GSI reaches, if any.
    pub fn ioapic_pin(irq: u32) -> Option<usize> {
        let pin = match irq {
            0 => 2,
            2 => return None,
            n => n as usize,
        };
        (pin < IOAPIC_PINS).then_some(pin)
    }
}

impl IrqSink for GsiRouter {
    fn set_irq(&self, irq: u32, level: bool) {
        if irq < 16 {
            self.pic.set_irq(irq, level);
        }
        if let Some(pin) = Self::ioapic_pin(irq) {
            self.ioapic.set_pin(pin, level);
        }
    }
}
