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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::bus::Device;
    use crate::ioapic::IoApicMmio;
    use crate::irq::{InterruptController, IrqLine};
    use crate::lapic::{ApicBus, LocalApic, VcpuApic};
    use std::sync::Mutex;

    #[test]
    fn pin_mapping() {
        assert_eq!(GsiRouter::ioapic_pin(0), Some(2));
        assert_eq!(GsiRouter::ioapic_pin(1), Some(1));
        assert_eq!(GsiRouter::ioapic_pin(2), None);
        assert_eq!(GsiRouter::ioapic_pin(8), Some(8));
        assert_eq!(GsiRouter::ioapic_pin(23), Some(23));
        assert_eq!(GsiRouter::ioapic_pin(24), None);
    }

    #[test]
    fn lines_reach_pic_and_ioapic() {
        let clock = Arc::new(ManualClock::default());
        let lapic = Arc::new(Mutex::new(LocalApic::new(0, true, clock, 0)));
        let bus = ApicBus::new(vec![lapic]);
        let pic = IsaInterrupts::new();
        let cpu = VcpuApic::new(&bus, 0, Some(pic.clone())).unwrap();
        let ioapic = IoApic::new(bus.clone());
        let router = GsiRouter::new(pic.clone(), ioapic.clone());
        // PIC: vectors 0x20.., IOAPIC pin 2 → vector 0x30, pin 20 → 0x40.
        pic.with_pic(|p| {
            for (slave, base, icw3) in [(false, 0x20, 0x04), (true, 0x28, 0x02)] {
                p.write_port(slave, 0, 0x11);
                p.write_port(slave, 1, base);
                p.write_port(slave, 1, icw3);
                p.write_port(slave, 1, 0x01);
            }
        });
        let mut mmio = IoApicMmio::new(ioapic.clone());
        for (pin, vector) in [(2u8, 0x30u32), (20, 0x40)] {
            mmio.write(0, &[0x10 + 2 * pin]);
            mmio.write(0x10, &vector.to_le_bytes());
        }
        let timer = IrqLine::new(router.clone(), 0);
        // Virtual wire: the PIC's IRQ 0 reaches the CPU; the IOAPIC's delivery is dropped
        // by the software-disabled LAPIC.
        timer.pulse();
        assert_eq!(cpu.acknowledge(), Some(0x20));
        pic.with_pic(|p| p.write_port(false, 0, 0x20));
        // APIC mode: LAPIC enabled, LINT0 masked, the PIC masked.
        cpu.mmio_write(0xf0, &0x1ffu32.to_le_bytes());
        pic.with_pic(|p| {
            p.write_port(false, 1, 0xff);
            p.write_port(true, 1, 0xff);
        });
        timer.pulse();
        assert_eq!(cpu.acknowledge(), Some(0x30));
        cpu.mmio_write(0xb0, &[0; 4]);
        IrqLine::new(router.clone(), 20).raise();
        assert_eq!(cpu.acknowledge(), Some(0x40));
        // IRQ 2 reaches the PIC only; nothing else is pending.
        IrqLine::new(router, 2).pulse();
        assert!(!cpu.intr_pending());
    }
}
