//! 8259A programmable interrupt controller pair, cascaded as on a PC (slave on master IR2),
//! with the PIIX/ICH edge/level control registers (ELCR) at 0x4d0/0x4d1.
//!
//! [`IsaInterrupts`] is what the rest of the machine holds: devices raise lines through it
//! ([`IrqSink`]), the CPU asks it for INTR and runs the acknowledge cycle through it
//! ([`InterruptController`]), and [`PicPorts`] gives the guest its I/O ports. All three share
//! one `Arc<IsaInterrupts>`, and every change to the pair refreshes an atomic INTR cache so
//! that the engines' per-block check is a single load.
//!
//! Multi-byte port accesses touch consecutive ports; ports beyond a range read as 0xff.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::bus::{lock, Device};
use crate::irq::{InterruptController, IrqSink};

pub const PIC_MASTER_BASE: u64 = 0x20;
pub const PIC_SLAVE_BASE: u64 = 0xa0;
pub const ELCR_BASE: u64 = 0x4d0;
/// Length of each of the three port ranges.
pub const PIC_PORT_LEN: u64 = 2;

const CASCADE_IRQ: u8 = 2;
/// IRQs 0, 1, 2 (timer, keyboard, cascade) and 8, 13 (RTC, FPU) are edge-only on a PC.
const ELCR_MASK: [u8; 2] = [0xf8, 0xde];

/// One 8259A, as plain data.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PicChipState {
    /// Current input levels, kept apart from IRR so that edges can be detected.
    pub lines: u8,
    pub irr: u8,
    pub imr: u8,
    pub isr: u8,
    /// The IR that currently has the highest priority (rotation).
    pub lowest_priority_plus_one: u8,
    pub vector_base: u8,
    pub read_isr: bool,
    pub poll: bool,
    pub special_mask: bool,
    /// 0 when initialised; 1..=3 while waiting for ICW2..ICW4.
    pub init_step: u8,
    pub expect_icw4: bool,
    pub single: bool,
    pub level_all: bool,
    pub auto_eoi: bool,
    pub rotate_on_auto_eoi: bool,
    pub special_fully_nested: bool,
    pub elcr: u8,
}

impl PicChipState {
    fn level_mask(&self) -> u8 {
        if self.level_all {
            0xff
        } else {
            self.elcr
        }
    }

    /// Priority (0 = highest) of the highest-priority bit in `mask`, or 8 if none.
    fn priority(&self, mask: u8) -> u8 {
        (0..8)
            .find(|p| mask & (1 << ((p + self.lowest_priority_plus_one) & 7)) != 0)
            .unwrap_or(8)
    }

    /// The IR this chip would present to the CPU now, if any.
    fn highest_request(&self, is_master: bool) -> Option<u8> {
        let req = self.priority(self.irr & !self.imr);
        if req == 8 {
            return None;
        }
        let mut in_service = self.isr;
        if self.special_mask {
            in_service &= !self.imr;
        }
        // In special fully nested mode the master lets further slave requests through
        // while one is in service, so that the slave's own priorities apply.
        if self.special_fully_nested && is_master {
            in_service &= !(1 << CASCADE_IRQ);
        }
        (req < self.priority(in_service)).then_some((req + self.lowest_priority_plus_one) & 7)
    }

    fn set_input(&mut self, ir: u8, level: bool) {
        let bit = 1 << ir;
        if self.level_mask() & bit != 0 {
            if level {
                self.irr |= bit;
            } else {
                self.irr &= !bit;
            }
        } else if level && self.lines & bit == 0 {
            self.irr |= bit;
        }
        if level {
            self.lines |= bit;
        } else {
            self.lines &= !bit;
        }
    }

    /// The chip's part of INTA: IRR to ISR (or straight through, in auto-EOI mode).
    fn intack(&mut self, ir: u8) {
        let bit = 1 << ir;
        if self.auto_eoi {
            if self.rotate_on_auto_eoi {
                self.lowest_priority_plus_one = (ir + 1) & 7;
            }
        } else {
            self.isr |= bit;
        }
        // A level-triggered request stays in IRR for as long as the line is held.
        if self.level_mask() & bit == 0 {
            self.irr &= !bit;
        }
    }

    fn write_command(&mut self, v: u8) {
        if v & 0x10 != 0 {
            // ICW1 resets the edge detectors: a line already high must go low and high again.
            let level = if v & 0x08 != 0 { 0xff } else { self.elcr };
            *self = PicChipState {
                lines: self.lines,
                irr: self.lines & level,
                elcr: self.elcr,
                init_step: 1,
                expect_icw4: v & 0x01 != 0,
                single: v & 0x02 != 0,
                level_all: v & 0x08 != 0,
                ..Default::default()
            };
        } else if v & 0x08 != 0 {
            // OCW3
            if v & 0x04 != 0 {
                self.poll = true;
            }
            if v & 0x02 != 0 {
                self.read_isr = v & 0x01 != 0;
            }
            if v & 0x40 != 0 {
                self.special_mask = v & 0x20 != 0;
            }
        } else {
            self.write_ocw2(v);
        }
    }

    fn write_ocw2(&mut self, v: u8) {
        let ir = v & 7;
        match v >> 5 {
            0 => self.rotate_on_auto_eoi = false,
            4 => self.rotate_on_auto_eoi = true,
            // Non-specific EOI, optionally rotating.
            1 | 5 => {
                let p = self.priority(self.isr);
                if p != 8 {
                    let served = (p + self.lowest_priority_plus_one) & 7;
                    self.isr &= !(1 << served);
                    if v >> 5 == 5 {
                        self.lowest_priority_plus_one = (served + 1) & 7;
                    }
                }
            }
            3 => self.isr &= !(1 << ir),
            6 => self.lowest_priority_plus_one = (ir + 1) & 7,
            7 => {
                self.isr &= !(1 << ir);
                self.lowest_priority_plus_one = (ir + 1) & 7;
            }
            _ => {}
        }
    }

    fn write_data(&mut self, v: u8) {
        match self.init_step {
            1 => {
                self.vector_base = v & 0xf8;
                self.init_step = if !self.single {
                    2
                } else if self.expect_icw4 {
                    3
                } else {
                    0
                };
            }
            // ICW3: the cascade wiring is fixed, so there is nothing to configure.
            2 => self.init_step = if self.expect_icw4 { 3 } else { 0 },
            3 => {
                self.auto_eoi = v & 0x02 != 0;
                self.special_fully_nested = v & 0x10 != 0;
                self.init_step = 0;
            }
            _ => self.imr = v,
        }
    }

    fn set_elcr(&mut self, v: u8, mask: u8) {
        self.elcr = v & mask;
        let level = self.level_mask();
        self.irr = (self.irr & !level) | (self.lines & level);
    }
}

/// The master/slave pair.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PicState {
    pub master: PicChipState,
    pub slave: PicChipState,
}

#[derive(Default)]
pub struct PicPair {
    s: PicState,
}

impl PicPair {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn save_state(&self) -> PicState {
        self.s.clone()
    }

    pub fn restore_state(&mut self, s: &PicState) {
        self.s = s.clone();
    }

    /// Sets the level of ISA IRQ `irq` (0–15); other numbers are ignored.
    pub fn set_irq(&mut self, irq: u32, level: bool) {
        match irq {
            0..=7 => self.s.master.set_input(irq as u8, level),
            8..=15 => {
                self.s.slave.set_input(irq as u8 - 8, level);
                self.sync_cascade();
            }
            _ => {}
        }
    }

    /// The slave's INT output drives master IR2.
    fn sync_cascade(&mut self) {
        let out = self.s.slave.highest_request(false).is_some();
        self.s.master.set_input(CASCADE_IRQ, out);
    }

    /// The master's INT output: the CPU's INTR pin.
    pub fn intr_pending(&self) -> bool {
        self.s.master.highest_request(true).is_some()
    }

    /// The INTA cycle. A request that went away since INTR was sampled is answered with the
    /// spurious vector of IR7 (of the slave, if the master saw the cascade request).
    pub fn acknowledge(&mut self) -> Option<u8> {
        let Some(ir) = self.s.master.highest_request(true) else {
            return Some(self.s.master.vector_base.wrapping_add(7));
        };
        let vector = if ir == CASCADE_IRQ {
            let sir = match self.s.slave.highest_request(false) {
                Some(sir) => {
                    self.s.slave.intack(sir);
                    sir
                }
                None => 7,
            };
            self.s.slave.vector_base.wrapping_add(sir)
        } else {
            self.s.master.vector_base.wrapping_add(ir)
        };
        self.s.master.intack(ir);
        if ir == CASCADE_IRQ {
            // The slave drops INT during INTA and raises it again for its next request,
            // which gives the master a new edge on IR2.
            self.s.master.set_input(CASCADE_IRQ, false);
            self.sync_cascade();
        }
        Some(vector)
    }

    /// A poll-mode read: acknowledges like INTA but answers with 0x80 | IR, or 0.
    fn poll_read(&mut self, slave: bool) -> u8 {
        let chip = if slave {
            &mut self.s.slave
        } else {
            &mut self.s.master
        };
        chip.poll = false;
        match chip.highest_request(!slave) {
            Some(ir) => {
                chip.intack(ir);
                0x80 | ir
            }
            None => 0,
        }
    }

    /// Reads port `offset` (0 or 1) of the master or slave.
    pub fn read_port(&mut self, slave: bool, offset: u64) -> u8 {
        let chip = if slave { &self.s.slave } else { &self.s.master };
        let v = if chip.poll {
            self.poll_read(slave)
        } else {
            match (offset, chip.read_isr) {
                (0, true) => chip.isr,
                (0, false) => chip.irr,
                (1, _) => chip.imr,
                _ => return 0xff,
            }
        };
        if slave {
            self.sync_cascade();
        }
        v
    }

    pub fn write_port(&mut self, slave: bool, offset: u64, v: u8) {
        let chip = if slave {
            &mut self.s.slave
        } else {
            &mut self.s.master
        };
        match offset {
            0 => chip.write_command(v),
            1 => chip.write_data(v),
            _ => return,
        }
        if slave {
            self.sync_cascade();
        } else if offset == 0 && v & 0x10 != 0 {
            // The cascade is an internal wire: re-present a request the slave still holds
            // rather than lose it until the slave's output next toggles.
            self.s.master.lines &= !(1 << CASCADE_IRQ);
            self.sync_cascade();
        }
    }

    pub fn read_elcr(&self, offset: u64) -> u8 {
        match offset {
            0 => self.s.master.elcr,
            1 => self.s.slave.elcr,
            _ => 0xff,
        }
    }

    pub fn write_elcr(&mut self, offset: u64, v: u8) {
        match offset {
            0 => self.s.master.set_elcr(v, ELCR_MASK[0]),
            1 => {
                self.s.slave.set_elcr(v, ELCR_MASK[1]);
                self.sync_cascade();
            }
            _ => {}
        }
    }
}

/// The PIC pair as the machine shares it. Hold it as `Arc<IsaInterrupts>`.
#[derive(Default)]
pub struct IsaInterrupts {
    pic: Mutex<PicPair>,
    intr: AtomicBool,
}

impl IsaInterrupts {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Runs `f` on the pair and refreshes the INTR cache before the lock is released, so
    /// that the cache never lags a change another thread could observe.
    pub fn with_pic<R>(&self, f: impl FnOnce(&mut PicPair) -> R) -> R {
        let mut pic = lock(&self.pic);
        let r = f(&mut pic);
        self.intr.store(pic.intr_pending(), Ordering::Release);
        r
    }

    pub fn save_state(&self) -> PicState {
        self.with_pic(|p| p.save_state())
    }

    pub fn restore_state(&self, s: &PicState) {
        self.with_pic(|p| p.restore_state(s))
    }
}

impl IrqSink for IsaInterrupts {
    fn set_irq(&self, irq: u32, level: bool) {
        self.with_pic(|p| p.set_irq(irq, level));
    }
}

impl InterruptController for IsaInterrupts {
    fn intr_pending(&self) -> bool {
        self.intr.load(Ordering::Acquire)
    }

    fn acknowledge(&self) -> Option<u8> {
        self.with_pic(|p| p.acknowledge())
    }
}

/// Which of the three port ranges a [`PicPorts`] serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PicPortRange {
    /// 0x20–0x21
    Master,
    /// 0xa0–0xa1
    Slave,
    /// 0x4d0–0x4d1
    Elcr,
}

/// The guest's view of the pair: one instance per port range, all sharing the same
/// [`IsaInterrupts`].
pub struct PicPorts {
    isa: Arc<IsaInterrupts>,
    range: PicPortRange,
}

impl PicPorts {
    pub fn new(isa: Arc<IsaInterrupts>, range: PicPortRange) -> Self {
        PicPorts { isa, range }
    }

    fn read_one(&self, p: &mut PicPair, offset: u64) -> u8 {
        match self.range {
            PicPortRange::Master => p.read_port(false, offset),
            PicPortRange::Slave => p.read_port(true, offset),
            PicPortRange::Elcr => p.read_elcr(offset),
        }
    }

    fn write_one(&self, p: &mut PicPair, offset: u64, v: u8) {
        match self.range {
            PicPortRange::Master => p.write_port(false, offset, v),
            PicPortRange::Slave => p.write_port(true, offset, v),
            PicPortRange::Elcr => p.write_elcr(offset, v),
        }
    }
}

impl Device for PicPorts {
    fn name(&self) -> &'static str {
        match self.range {
            PicPortRange::Master => "pic-master",
            PicPortRange::Slave => "pic-slave",
            PicPortRange::Elcr => "pic-elcr",
        }
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) {
        self.isa.with_pic(|p| {
            for (i, b) in data.iter_mut().enumerate() {
                *b = self.read_one(p, offset.wrapping_add(i as u64));
            }
        })
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        self.isa.with_pic(|p| {
            for (i, &b) in data.iter().enumerate() {
                self.write_one(p, offset.wrapping_add(i as u64), b);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The BIOS/Linux initialisation: vectors 0x20 and 0x28, cascade on IR2, 8086 mode.
    fn init(p: &mut PicPair, icw4: u8) {
        for (slave, base, icw3) in [(false, 0x20, 0x04), (true, 0x28, 0x02)] {
            p.write_port(slave, 0, 0x11);
            p.write_port(slave, 1, base);
            p.write_port(slave, 1, icw3);
            p.write_port(slave, 1, icw4);
            p.write_port(slave, 1, 0x00);
        }
    }

    fn pair() -> PicPair {
        let mut p = PicPair::new();
        init(&mut p, 0x01);
        p
    }

    #[test]
    fn edge_request_is_delivered_and_eoi_clears_isr() {
        let mut p = pair();
        assert!(!p.intr_pending());
        p.set_irq(0, true);
        p.set_irq(0, false);
        assert!(
            p.intr_pending(),
            "an edge is latched even after the line drops"
        );
        assert_eq!(p.acknowledge(), Some(0x20));
        assert!(!p.intr_pending());
        assert_eq!(p.read_port(false, 0), 0, "IRR cleared");
        p.write_port(false, 0, 0x0b);
        assert_eq!(p.read_port(false, 0), 0x01, "ISR holds IR0");
        p.write_port(false, 0, 0x20);
        assert_eq!(p.read_port(false, 0), 0);
        // Holding the line high is not a new edge.
        p.set_irq(0, true);
        assert_eq!(p.acknowledge(), Some(0x20));
        p.write_port(false, 0, 0x20);
        p.set_irq(0, true);
        assert!(!p.intr_pending());
    }

    #[test]
    fn priority_nesting_and_mask() {
        let mut p = pair();
        p.set_irq(3, true);
        assert_eq!(p.acknowledge(), Some(0x23));
        p.set_irq(4, true);
        assert!(!p.intr_pending(), "lower priority waits for IR3's EOI");
        p.set_irq(1, true);
        assert_eq!(p.acknowledge(), Some(0x21), "higher priority nests");
        p.write_port(false, 0, 0x20); // EOI for IR1
        p.write_port(false, 0, 0x20); // EOI for IR3
        p.write_port(false, 1, 0x10); // mask IR4
        assert!(!p.intr_pending());
        p.write_port(false, 1, 0x00);
        assert_eq!(p.acknowledge(), Some(0x24));
        assert_eq!(p.read_port(false, 1), 0);
    }

    #[test]
    fn cascade_delivers_slave_vector_and_needs_both_eois() {
        let mut p = pair();
        p.set_irq(8, true);
        assert!(p.intr_pending());
        assert_eq!(p.acknowledge(), Some(0x28));
        p.set_irq(8, false);
        p.write_port(false, 0, 0x0b);
        assert_eq!(p.read_port(false, 0), 0x04);
        p.write_port(true, 0, 0x0b);
        assert_eq!(p.read_port(true, 0), 0x01);
        // A higher-priority slave request nested behind it still reaches the CPU once
        // the master's IR2 is free again.
        p.set_irq(12, true);
        p.set_irq(12, false);
        p.write_port(false, 0, 0x20);
        assert!(!p.intr_pending(), "slave IR4 waits behind slave IR0");
        p.write_port(true, 0, 0x20);
        assert_eq!(p.acknowledge(), Some(0x2c));
    }

    #[test]
    fn second_slave_request_after_ack_gets_a_new_edge() {
        let mut p = pair();
        p.set_irq(12, true);
        p.set_irq(9, true);
        assert_eq!(p.acknowledge(), Some(0x29));
        p.write_port(true, 0, 0x20);
        p.write_port(false, 0, 0x20);
        assert_eq!(p.acknowledge(), Some(0x2c));
    }

    #[test]
    fn spurious_irq7_and_irq15() {
        let mut p = pair();
        p.write_elcr(0, 0x20); // IRQ5 level
        p.set_irq(5, true);
        assert!(p.intr_pending());
        p.set_irq(5, false);
        assert_eq!(p.acknowledge(), Some(0x27));
        p.write_port(false, 0, 0x0b);
        assert_eq!(p.read_port(false, 0), 0, "spurious IR7 sets no ISR bit");

        p.write_elcr(1, 0x08); // IRQ11 level
        p.set_irq(11, true);
        p.set_irq(11, false);
        // The master latched the cascade edge; the slave no longer has anything.
        assert!(p.intr_pending());
        assert_eq!(p.acknowledge(), Some(0x2f));
        assert_eq!(
            p.read_port(false, 0),
            0x04,
            "the master still needs its EOI"
        );
        p.write_port(true, 0, 0x0b);
        assert_eq!(p.read_port(true, 0), 0);
    }

    #[test]
    fn level_triggered_request_stays_until_line_drops() {
        let mut p = pair();
        p.write_elcr(1, 0xff);
        assert_eq!(p.read_elcr(1), 0xde);
        p.set_irq(10, true);
        assert_eq!(p.acknowledge(), Some(0x2a));
        p.write_port(true, 0, 0x20);
        p.write_port(false, 0, 0x20);
        assert!(p.intr_pending(), "still asserted");
        p.set_irq(10, false);
        // The master latched the cascade edge: as on QEMU, the withdrawn request ends as
        // a spurious IRQ15.
        assert_eq!(p.acknowledge(), Some(0x2f));
        p.write_port(false, 0, 0x20);
        assert!(!p.intr_pending());
    }

    #[test]
    fn auto_eoi_and_rotation() {
        let mut p = PicPair::new();
        init(&mut p, 0x03);
        p.write_port(false, 0, 0x80); // rotate on auto-EOI
        p.set_irq(1, true);
        assert_eq!(p.acknowledge(), Some(0x21));
        p.write_port(false, 0, 0x0b);
        assert_eq!(p.read_port(false, 0), 0, "auto-EOI leaves ISR clear");
        // IR1 is now lowest priority: IR2..IR7, IR0, IR1.
        p.set_irq(0, true);
        p.set_irq(6, true);
        assert_eq!(p.acknowledge(), Some(0x26));
        assert_eq!(p.acknowledge(), Some(0x20));
    }

    #[test]
    fn specific_eoi_set_priority_and_rotate_on_eoi() {
        let mut p = pair();
        p.set_irq(5, true);
        assert_eq!(p.acknowledge(), Some(0x25));
        p.write_port(false, 0, 0x65); // specific EOI IR5
        p.write_port(false, 0, 0x0b);
        assert_eq!(p.read_port(false, 0), 0);
        p.write_port(false, 0, 0xc4); // set priority: IR4 lowest
        p.set_irq(5, false);
        p.set_irq(3, true);
        p.set_irq(5, true);
        assert_eq!(p.acknowledge(), Some(0x25));
        p.write_port(false, 0, 0xa0); // rotate on non-specific EOI: IR5 lowest
        assert_eq!(p.acknowledge(), Some(0x23));
        p.write_port(false, 0, 0xe3); // rotate on specific EOI IR3
        assert_eq!(p.s.master.lowest_priority_plus_one, 4);
    }

    #[test]
    fn poll_mode_and_special_mask() {
        let mut p = pair();
        p.set_irq(6, true);
        p.write_port(false, 0, 0x0c);
        assert_eq!(p.read_port(false, 0), 0x86);
        p.write_port(false, 0, 0x0c);
        assert_eq!(p.read_port(false, 0), 0x00);
        // IR6 in service blocks IR7 unless special mask mode masks IR6.
        p.set_irq(7, true);
        assert!(!p.intr_pending());
        p.write_port(false, 1, 0x40);
        p.write_port(false, 0, 0x68);
        assert_eq!(p.acknowledge(), Some(0x27));
        p.write_port(false, 0, 0x48);
        assert!(!p.s.master.special_mask);
    }

    #[test]
    fn icw1_resets_and_requires_new_edge() {
        let mut p = pair();
        p.set_irq(4, true);
        p.write_port(false, 1, 0xff);
        init(&mut p, 0x01);
        assert!(!p.intr_pending());
        assert_eq!(p.read_port(false, 1), 0, "IMR cleared");
        p.set_irq(4, true);
        assert!(!p.intr_pending(), "line was already high");
        p.set_irq(4, false);
        p.set_irq(4, true);
        assert!(p.intr_pending());
    }

    #[test]
    fn isa_interrupts_cache_follows_ports_and_lines() {
        let isa = IsaInterrupts::new();
        let mut master = PicPorts::new(isa.clone(), PicPortRange::Master);
        let mut slave = PicPorts::new(isa.clone(), PicPortRange::Slave);
        let mut elcr = PicPorts::new(isa.clone(), PicPortRange::Elcr);
        master.write(0, &[0x11]);
        master.write(1, &[0x08]);
        master.write(1, &[0x04]);
        master.write(1, &[0x01]);
        slave.write(0, &[0x11]);
        slave.write(1, &[0x70]);
        slave.write(1, &[0x02]);
        slave.write(1, &[0x01]);
        master.write(1, &[0xff]);
        isa.set_irq(0, true);
        assert!(!isa.intr_pending());
        master.write(1, &[0xfe]);
        assert!(
            isa.intr_pending(),
            "unmasking through the port updates the cache"
        );
        assert_eq!(isa.acknowledge(), Some(0x08));
        assert!(!isa.intr_pending());
        elcr.write(0, &[0x00, 0x08]);
        let mut b = [0u8; 2];
        elcr.read(0, &mut b);
        assert_eq!(b, [0x00, 0x08]);
        let mut wide = [0u8; 4];
        master.read(1, &mut wide);
        assert_eq!(wide, [0xfe, 0xff, 0xff, 0xff]);
        isa.set_irq(99, true);
        let s = isa.save_state();
        isa.set_irq(3, true);
        assert_ne!(isa.save_state(), s);
        isa.restore_state(&s);
        assert_eq!(isa.save_state(), s);
    }

    #[test]
    fn save_and_restore() {
        let mut p = pair();
        p.set_irq(1, true);
        p.write_port(false, 1, 0x30);
        let s = p.save_state();
        p.acknowledge();
        p.write_port(true, 0, 0x11);
        assert_ne!(p.save_state(), s);
        p.restore_state(&s);
        assert_eq!(p.save_state(), s);
        assert_eq!(p.acknowledge(), Some(0x21));
    }

    #[test]
    fn random_accesses_never_panic() {
        let isa = IsaInterrupts::new();
        let mut ports = [
            PicPortRange::Master,
            PicPortRange::Slave,
            PicPortRange::Elcr,
        ]
        .map(|r| PicPorts::new(isa.clone(), r));
        crate::test_util::random_accesses(3, |s| {
            s.apply(&mut ports[(s.x >> 5) as usize % 3]);
            isa.set_irq((s.x >> 50) as u32 % 17, s.x & 0x20 != 0);
            if isa.intr_pending() {
                isa.acknowledge();
            }
        });
    }
}
