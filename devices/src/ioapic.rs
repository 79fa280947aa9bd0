//! I/O APIC (82093AA-style, version 0x20): 24 redirection entries behind the IOREGSEL /
//! IOWIN window at 0xFEC00000, plus the EOI register at +0x40.
//!
//! Pins take electrical levels; an entry's polarity bit (active low) inverts its pin.
//! Edge-triggered entries deliver on the asserting edge (edges on masked pins are lost, as
//! the datasheet says). Level-triggered entries deliver while asserted and remote IRR is
//! clear, set remote IRR, and are looked at again when a LAPIC broadcasts the EOI of their
//! vector (or the guest writes it to the EOI register), or the entry is rewritten.
//!
//! Messages go to the [`ApicBus`] after the IOAPIC's lock is released, so that a LAPIC's EOI
//! coming back into the IOAPIC cannot deadlock.

use std::sync::{Arc, Mutex};

use crate::bus::{lock, Device};
use crate::irq::IrqSink;
use crate::lapic::{ApicBus, ApicMessage, DeliveryMode, Destination, EoiListener};

pub const IOAPIC_BASE: u64 = 0xfec0_0000;
pub const IOAPIC_MMIO_LEN: u64 = 0x1000;
pub const IOAPIC_PINS: usize = 24;
pub const IOAPIC_VERSION: u32 = 0x20 | ((IOAPIC_PINS as u32 - 1) << 16);

const REG_ID: u32 = 0x00;
const REG_VERSION: u32 = 0x01;
const REG_ARB: u32 = 0x02;
const REG_REDIR: u32 = 0x10;

const RTE_DELIVERY_STATUS: u64 = 1 << 12;
const RTE_POLARITY_LOW: u64 = 1 << 13;
const RTE_REMOTE_IRR: u64 = 1 << 14;
const RTE_LEVEL: u64 = 1 << 15;
const RTE_MASKED: u64 = 1 << 16;
/// Vector, delivery mode, destination mode, polarity, trigger mode, mask, destination.
const RTE_WRITABLE: u64 = 0xff00_0000_0001_afff;

/// The IOAPIC as plain data.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct IoApicState {
    /// The 4-bit IOAPIC ID (register bits 27:24).
    pub id: u8,
    pub ioregsel: u8,
    pub redir: [u64; IOAPIC_PINS],
    /// Electrical pin levels, one bit per pin.
    pub pins: u32,
}

impl IoApicState {
    /// The reset state: every entry masked.
    pub fn reset() -> Self {
        IoApicState { redir: [RTE_MASKED; IOAPIC_PINS], ..Default::default() }
    }

    fn asserted(&self, pin: usize) -> bool {
        let level = self.pins & (1 << pin) != 0;
        level != (self.redir[pin] & RTE_POLARITY_LOW != 0)
    }

    fn message(&self, pin: usize) -> ApicMessage {
        let e = self.redir[pin];
        let dest = ((e >> 56) & 0xff) as u32;
        ApicMessage {
            vector: e as u8,
            mode: DeliveryMode::from_bits(e >> 8),
            dest: if e & (1 << 11) != 0 {
                Destination::Logical { mda: dest, x2apic: false }
            } else {
                Destination::Physical { id: dest, x2apic: false }
            },
            level_triggered: e & RTE_LEVEL != 0,
        }
    }

    /// A level-triggered pin that should deliver now: asserted, unmasked, remote IRR clear.
    /// Sets remote IRR for fixed and lowest-priority messages (the ones an EOI answers).
    fn service_level(&mut self, pin: usize, out: &mut Vec<ApicMessage>) {
        let e = self.redir[pin];
        if e & RTE_LEVEL == 0 || e & RTE_MASKED != 0 || e & RTE_REMOTE_IRR != 0 || !self.asserted(pin) {
            return;
        }
        let m = self.message(pin);
        if matches!(m.mode, DeliveryMode::Fixed | DeliveryMode::LowestPriority) {
            self.redir[pin] |= RTE_REMOTE_IRR;
        }
        out.push(m);
    }

    fn set_pin(&mut self, pin: usize, level: bool, out: &mut Vec<ApicMessage>) {
        let was = self.asserted(pin);
        if level {
            self.pins |= 1 << pin;
        } else {
            self.pins &= !(1 << pin);
        }
        let e = self.redir[pin];
        if e & RTE_LEVEL != 0 {
            self.service_level(pin, out);
        } else if !was && self.asserted(pin) && e & RTE_MASKED == 0 {
            out.push(self.message(pin));
        }
    }

    fn eoi(&mut self, vector: u8, out: &mut Vec<ApicMessage>) {
        for pin in 0..IOAPIC_PINS {
            let e = self.redir[pin];
            if e & RTE_LEVEL != 0 && e & RTE_REMOTE_IRR != 0 && e as u8 == vector {
                self.redir[pin] &= !RTE_REMOTE_IRR;
                self.service_level(pin, out);
            }
        }
    }

    fn read_reg(&self) -> u32 {
        match self.ioregsel as u32 {
            REG_ID | REG_ARB => (self.id as u32 & 0xf) << 24,
            REG_VERSION => IOAPIC_VERSION,
            r @ REG_REDIR.. => {
                let i = ((r - REG_REDIR) / 2) as usize;
                match self.redir.get(i) {
                    Some(e) if r & 1 == 0 => *e as u32,
                    Some(e) => (*e >> 32) as u32,
                    None => 0,
                }
            }
            _ => 0,
        }
    }

    fn write_reg(&mut self, v: u32, out: &mut Vec<ApicMessage>) {
        match self.ioregsel as u32 {
            REG_ID => self.id = ((v >> 24) & 0xf) as u8,
            r @ REG_REDIR.. => {
                let i = ((r - REG_REDIR) / 2) as usize;
                let Some(e) = self.redir.get(i).copied() else {
                    return;
                };
                let new = if r & 1 == 0 {
                    (e & !0xffff_ffff) | v as u64
                } else {
                    (e & 0xffff_ffff) | (v as u64) << 32
                };
                let mut new = (new & RTE_WRITABLE) | (e & (RTE_REMOTE_IRR | RTE_DELIVERY_STATUS));
                if new & RTE_LEVEL == 0 {
                    new &= !RTE_REMOTE_IRR;
                }
                self.redir[i] = new;
                self.service_level(i, out);
            }
            _ => {}
        }
    }
}

/// The IOAPIC as the machine shares it (`Arc<IoApic>`): devices' lines arrive through
/// [`IrqSink`] (pin = GSI) or [`crate::gsi::GsiRouter`], the guest reaches it through
/// [`IoApicMmio`], and LAPIC EOIs through [`EoiListener`].
pub struct IoApic {
    s: Mutex<IoApicState>,
    bus: Arc<ApicBus>,
}

impl IoApic {
    /// A reset IOAPIC delivering to `bus`, registered there for EOI broadcasts.
    pub fn new(bus: Arc<ApicBus>) -> Arc<Self> {
        let io = Arc::new(IoApic { s: Mutex::new(IoApicState::reset()), bus: bus.clone() });
        let weak: std::sync::Weak<dyn EoiListener> = Arc::downgrade(&io) as _;
        bus.add_eoi_listener(weak);
        io
    }

    fn with<R>(&self, f: impl FnOnce(&mut IoApicState, &mut Vec<ApicMessage>) -> R) -> R {
        let mut out = Vec::new();
        let r = f(&mut lock(&self.s), &mut out);
        for m in &out {
            self.bus.deliver(m, None);
        }
        r
    }

    /// Sets the electrical level of `pin`; pins past 23 are ignored.
    pub fn set_pin(&self, pin: usize, level: bool) {
        if pin < IOAPIC_PINS {
            self.with(|s, out| s.set_pin(pin, level, out));
        }
    }

    pub fn save_state(&self) -> IoApicState {
        lock(&self.s).clone()
    }

    pub fn restore_state(&self, s: &IoApicState) {
        *lock(&self.s) = s.clone();
    }

    fn mmio_read(&self, offset: u64, data: &mut [u8]) {
        let s = lock(&self.s);
        let v = match offset & !3 {
            0x00 => s.ioregsel as u32,
            0x10 => s.read_reg(),
            _ => 0,
        };
        let bytes = v.to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = bytes.get((offset & 3) as usize + i).copied().unwrap_or(0);
        }
    }

    fn mmio_write(&self, offset: u64, data: &[u8]) {
        let Some(&b0) = data.first() else {
            return;
        };
        match offset {
            0x00 => lock(&self.s).ioregsel = b0,
            0x10 if data.len() >= 4 => {
                let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                self.with(|s, out| s.write_reg(v, out));
            }
            0x40 => self.with(|s, out| s.eoi(b0, out)),
            _ => {}
        }
    }
}

impl EoiListener for IoApic {
    fn eoi(&self, vector: u8) {
        self.with(|s, out| s.eoi(vector, out));
    }
}

impl IrqSink for IoApic {
    fn set_irq(&self, irq: u32, level: bool) {
        self.set_pin(irq as usize, level);
    }
}

/// The IOAPIC's MMIO page; register it at [`IOAPIC_BASE`] with [`IOAPIC_MMIO_LEN`].
pub struct IoApicMmio {
    ioapic: Arc<IoApic>,
}

impl IoApicMmio {
    pub fn new(ioapic: Arc<IoApic>) -> Self {
        IoApicMmio { ioapic }
    }
}

impl Device for IoApicMmio {
    fn name(&self) -> &'static str {
        "ioapic"
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) {
        self.ioapic.mmio_read(offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        self.ioapic.mmio_write(offset, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::lapic::{LocalApic, VcpuApic};

    struct Rig {
        io: Arc<IoApic>,
        mmio: IoApicMmio,
        cpus: Vec<VcpuApic>,
    }

    fn rig(n: usize) -> Rig {
        let clock = Arc::new(ManualClock::default());
        let lapics = (0..n)
            .map(|i| Arc::new(Mutex::new(LocalApic::new(i as u32, i == 0, clock.clone(), 0))))
            .collect();
        let bus = ApicBus::new(lapics);
        let cpus: Vec<VcpuApic> = (0..n).map(|i| VcpuApic::new(&bus, i, None).unwrap()).collect();
        for c in &cpus {
            c.mmio_write(0xf0, &0x1ffu32.to_le_bytes());
        }
        let io = IoApic::new(bus);
        Rig { mmio: IoApicMmio::new(io.clone()), io, cpus }
    }

    impl Rig {
        fn write(&mut self, reg: u8, v: u32) {
            self.mmio.write(0, &[reg]);
            self.mmio.write(0x10, &v.to_le_bytes());
        }
        fn read(&mut self, reg: u8) -> u32 {
            self.mmio.write(0, &[reg]);
            let mut b = [0u8; 4];
            self.mmio.read(0x10, &mut b);
            u32::from_le_bytes(b)
        }
        fn route(&mut self, pin: u8, lo: u32, dest: u8) {
            self.write(0x11 + 2 * pin, (dest as u32) << 24);
            self.write(0x10 + 2 * pin, lo);
        }
        fn ack(&self, cpu: usize) -> Option<u8> {
            use crate::irq::InterruptController;
            self.cpus[cpu].acknowledge()
        }
        fn eoi(&self, cpu: usize) {
            self.cpus[cpu].mmio_write(0xb0, &[0; 4]);
        }
    }

    #[test]
    fn registers() {
        let mut r = rig(1);
        assert_eq!(r.read(0x01), 0x0017_0020);
        assert_eq!(r.read(0x00), 0);
        r.write(0x00, 0xffff_ffff);
        assert_eq!(r.read(0x00), 0x0f00_0000);
        assert_eq!(r.read(0x02), 0x0f00_0000);
        r.write(0x01, 0);
        assert_eq!(r.read(0x01), 0x0017_0020, "version is read-only");
        for pin in 0..24 {
            assert_eq!(r.read(0x10 + 2 * pin), 0x1_0000, "masked at reset");
            assert_eq!(r.read(0x11 + 2 * pin), 0);
        }
        // Delivery status and remote IRR are read-only; reserved bits read 0.
        r.write(0x10, 0xffff_ffff);
        assert_eq!(r.read(0x10), 0x1_afff);
        r.write(0x11, 0xffff_ffff);
        assert_eq!(r.read(0x11), 0xff00_0000);
        // Registers past the table read 0; IOREGSEL reads back.
        assert_eq!(r.read(0x40), 0);
        r.mmio.write(0, &[0x22]);
        let mut b = [0u8; 1];
        r.mmio.read(0, &mut b);
        assert_eq!(b, [0x22]);
        let mut b = [0u8; 2];
        r.mmio.write(0, &[0x01]);
        r.mmio.read(0x12, &mut b);
        assert_eq!(b, [0x17, 0]);
    }

    #[test]
    fn edge_delivery_and_mask() {
        let mut r = rig(2);
        r.route(4, 0x34, 1); // fixed, physical, edge, to APIC 1
        r.io.set_pin(4, true);
        assert_eq!(r.ack(1), Some(0x34));
        assert_eq!(r.ack(0), None);
        r.eoi(1);
        r.io.set_pin(4, true);
        assert_eq!(r.ack(1), None, "no new edge");
        r.io.set_pin(4, false);
        r.io.set_pin(4, true);
        assert_eq!(r.ack(1), Some(0x34));
        r.eoi(1);
        // Masked: the edge is lost, and unmasking does not bring it back.
        r.io.set_pin(4, false);
        r.route(4, 0x1_0034, 1);
        r.io.set_pin(4, true);
        r.route(4, 0x34, 1);
        assert_eq!(r.ack(1), None);
        // Logical destination, flat: both APICs.
        for (i, c) in r.cpus.iter().enumerate() {
            c.mmio_write(0xd0, &((1u32 << i) << 24).to_le_bytes());
        }
        r.route(5, 0x800 | 0x35, 0x3);
        r.io.set_pin(5, true);
        assert_eq!(r.ack(0), Some(0x35));
        assert_eq!(r.ack(1), Some(0x35));
    }

    #[test]
    fn level_remote_irr_eoi_and_redelivery() {
        let mut r = rig(1);
        r.route(9, 0x8000 | 0x49, 0); // level, active high
        r.io.set_pin(9, true);
        assert_eq!(r.read(0x10 + 18) & RTE_REMOTE_IRR as u32, RTE_REMOTE_IRR as u32);
        assert_eq!(r.ack(0), Some(0x49));
        // Still asserted, remote IRR set: nothing more.
        r.io.set_pin(9, true);
        assert_eq!(r.ack(0), None);
        // The EOI clears remote IRR and, the line still high, delivers again.
        r.eoi(0);
        assert_eq!(r.read(0x10 + 18) & RTE_REMOTE_IRR as u32, RTE_REMOTE_IRR as u32);
        assert_eq!(r.ack(0), Some(0x49));
        // The device lowers its line before the EOI: no redelivery.
        r.io.set_pin(9, false);
        r.eoi(0);
        assert_eq!(r.read(0x10 + 18) & RTE_REMOTE_IRR as u32, 0);
        assert_eq!(r.ack(0), None);
        // An EOI for another vector leaves remote IRR alone.
        r.io.set_pin(9, true);
        assert_eq!(r.ack(0), Some(0x49));
        r.io.eoi(0x50);
        assert_ne!(r.read(0x10 + 18) & RTE_REMOTE_IRR as u32, 0);
        // The IOAPIC's own EOI register (version 0x20).
        r.eoi(0);
        assert_eq!(r.ack(0), Some(0x49));
        r.io.set_pin(9, false);
        r.mmio.write(0x40, &[0x49, 0, 0, 0]);
        assert_eq!(r.read(0x10 + 18) & RTE_REMOTE_IRR as u32, 0);
        // A masked level pin delivers when unmasked while asserted.
        r.eoi(0);
        r.route(9, 0x1_8000 | 0x49, 0);
        r.io.set_pin(9, true);
        assert_eq!(r.ack(0), None);
        r.route(9, 0x8000 | 0x49, 0);
        assert_eq!(r.ack(0), Some(0x49));
        // Switching to edge clears remote IRR.
        r.route(9, 0x49, 0);
        assert_eq!(r.read(0x10 + 18) & RTE_REMOTE_IRR as u32, 0);
    }

    #[test]
    fn active_low_polarity() {
        let mut r = rig(1);
        r.io.set_pin(16, true); // idle high
        r.route(16, 0xa000 | 0x61, 0); // level, active low
        assert_eq!(r.ack(0), None);
        r.io.set_pin(16, false);
        assert_eq!(r.ack(0), Some(0x61));
        r.io.set_pin(16, true);
        r.eoi(0);
        assert_eq!(r.ack(0), None);
        // Edge, active low: the falling edge delivers.
        r.route(17, 0x2000 | 0x62, 0);
        r.io.set_pin(17, true);
        assert_eq!(r.ack(0), None);
        r.io.set_pin(17, false);
        assert_eq!(r.ack(0), Some(0x62));
    }

    #[test]
    fn nmi_and_init_delivery() {
        let mut r = rig(2);
        r.route(3, 0x400, 1);
        r.io.set_pin(3, true);
        assert!(r.cpus[1].take_nmi());
        r.route(6, 0x500, 1);
        r.io.set_pin(6, true);
        assert_eq!(r.cpus[1].take_init_sipi(), Some(crate::lapic::InitSipi::Init));
    }

    #[test]
    fn save_restore_and_bad_accesses() {
        let mut r = rig(1);
        r.route(7, 0x8000 | 0x47, 0);
        r.io.set_pin(7, true);
        let saved = r.io.save_state();
        let r2 = rig(1);
        r2.io.restore_state(&saved);
        assert_eq!(r2.io.save_state(), saved);
        assert_eq!(IoApicState::reset().redir[0], RTE_MASKED);
        for (off, len) in [(0x10u64, 1usize), (0x10, 2), (0x14, 4), (0x40, 0), (0xfff, 1), (0x20, 8)] {
            let mut b = [0u8; 8];
            r.mmio.read(off, &mut b[..len]);
            r.mmio.write(off, &b[..len]);
        }
        r.io.set_pin(100, true);
        r.write(0xff, 1);
        assert_eq!(r.read(0xff), 0);
    }
}
