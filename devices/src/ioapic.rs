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
