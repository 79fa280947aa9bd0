//! 8254 programmable interval timer (0x40–0x43) and the timer-2 half of port 0x61.
//!
//! Counters are not ticked: each channel keeps the virtual time at which it was (re)loaded,
//! and its count and OUT are computed from the time elapsed since, so a timer costs nothing
//! while nobody looks. Channel 0's OUT drives IRQ 0: [`Pit::poll`] sends one edge per rising
//! edge of OUT that fell due (at most one per poll, however late the poll is).
//!
//! After a guest write to the PIT ports the next deadline may have moved, so the platform
//! should poll the PIT again after such writes. Multi-byte accesses touch consecutive ports;
//! ports beyond a range read as 0xff.

use std::sync::{Arc, Mutex};

use crate::bus::{lock, Device};
use crate::clock::{Clock, Timed};
use crate::irq::IrqLine;

pub const PIT_BASE: u64 = 0x40;
pub const PIT_PORT_LEN: u64 = 4;
pub const PIT_IRQ: u32 = 0;
/// System control port B: timer 2 gate and output, speaker enable, refresh toggle.
pub const PORT61: u64 = 0x61;
pub const PIT_FREQ_HZ: u64 = 1_193_182;

/// Half-period of the DRAM refresh toggle (port 0x61 bit 4) that old delay loops watch.
const REFRESH_HALF_PERIOD_NS: u64 = 15_085;

/// One counter, as plain data. Times are virtual-clock nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PitChannelState {
    /// Mode as programmed (0–7; 6 and 7 behave as 2 and 3).
    pub mode: u8,
    /// 1 = LSB only, 2 = MSB only, 3 = LSB then MSB. 0 (never programmed) acts as 3.
    pub access: u8,
    pub bcd: bool,
    /// The count register, decoded: 1..=65536 (1..=10000 in BCD).
    pub reload: u32,
    pub gate: bool,
    /// A complete count has been written since the control word.
    pub armed: bool,
    /// Counting; when false, `frozen_count` and `frozen_out` are what the guest sees.
    pub running: bool,
    pub anchor_ns: u64,
    /// Modes 0, 1, 4, 5: ticks after `anchor_ns` at which the count reaches zero.
    pub tc: i64,
    /// Modes 2, 3: the period in effect.
    pub period: u32,
    /// Modes 2, 3: a count written while counting, loaded at the end of the period.
    pub pending: Option<(u64, u32)>,
    pub frozen_count: u32,
    pub frozen_out: bool,
    pub null_count: bool,
    pub latched_count: Option<u16>,
    pub latched_status: Option<u8>,
    pub read_hi: bool,
    pub write_hi: bool,
    pub write_lo: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PitState {
    pub channels: [PitChannelState; 3],
    /// Port 0x61 bits 0–3 as written (gate 2, speaker, parity/IOCHK enables).
    pub port61: u8,
    /// The next IRQ 0 edge not yet delivered.
    pub irq_deadline: Option<u64>,
}

fn ticks_between(from: u64, to: u64) -> u64 {
    (to.saturating_sub(from) as u128 * PIT_FREQ_HZ as u128 / 1_000_000_000) as u64
}

/// The first nanosecond at which `ticks` whole ticks have elapsed.
fn ticks_to_ns(ticks: u64) -> u64 {
    let ns = (ticks as u128 * 1_000_000_000).div_ceil(PIT_FREQ_HZ as u128);
    ns.min(u64::MAX as u128) as u64
}

fn from_bcd(v: u16) -> u32 {
    (0..4)
        .map(|i| ((v >> (4 * i)) & 0xf) as u32 * 10u32.pow(i))
        .sum()
}

fn to_bcd(v: u32) -> u16 {
    (0..4)
        .map(|i| (((v / 10u32.pow(i)) % 10) as u16) << (4 * i))
        .sum()
}

impl PitChannelState {
    fn kind(&self) -> u8 {
        match self.mode & 7 {
            6 => 2,
            7 => 3,
            m => m,
        }
    }

    fn access(&self) -> u8 {
        if self.access == 0 {
            3
        } else {
            self.access
        }
    }

    fn modulus(&self) -> i64 {
        if self.bcd {
            10_000
        } else {
            65_536
        }
    }

    fn elapsed(&self, now: u64) -> u64 {
        ticks_between(self.anchor_ns, now)
    }

    fn apply_pending(&mut self, now: u64) {
        if let Some((t, n)) = self.pending {
            if now >= t {
                self.anchor_ns = t;
                self.period = n;
                self.pending = None;
                self.null_count = false;
            }
        }
    }

    fn count(&self, now: u64) -> u32 {
        if !self.running {
            return self.frozen_count;
        }
        let d = self.elapsed(now);
        let n = self.period.max(1) as u64;
        match self.kind() {
            2 => (n - d % n) as u32,
            3 => {
                // Mode 3 counts down by two, once per half period; exact to within one tick.
                let p = d % n;
                let high = n.div_ceil(2);
                (if p < high {
                    n - 2 * p
                } else {
                    n - 2 * (p - high)
                }) as u32
            }
            _ => (self.tc - d as i64).rem_euclid(self.modulus()) as u32,
        }
    }

    fn out(&self, now: u64) -> bool {
        if !self.running {
            return self.frozen_out;
        }
        let d = self.elapsed(now);
        let n = self.period.max(1) as u64;
        match self.kind() {
            0 | 1 => d as i64 >= self.tc,
            2 => d % n != n - 1,
            3 => d % n < n.div_ceil(2),
            _ => d as i64 != self.tc,
        }
    }

    /// When OUT next rises after `now`.
    fn next_rise_ns(&self, now: u64) -> Option<u64> {
        if !self.running {
            return None;
        }
        let d = self.elapsed(now);
        let tick = match self.kind() {
            0 | 1 => u64::try_from(self.tc).ok().filter(|&t| t > d)?,
            2 | 3 => {
                let n = self.period.max(1) as u64;
                (d / n + 1) * n
            }
            _ => u64::try_from(self.tc + 1).ok().filter(|&t| t > d)?,
        };
        Some(self.anchor_ns.saturating_add(ticks_to_ns(tick)))
    }

    fn encoded(&self, now: u64) -> u16 {
        let c = self.count(now);
        if self.bcd {
            to_bcd(c % 10_000)
        } else {
            c as u16
        }
    }

    fn status(&self, now: u64) -> u8 {
        (self.out(now) as u8) << 7
            | (self.null_count as u8) << 6
            | self.access << 4
            | (self.mode & 7) << 1
            | self.bcd as u8
    }

    fn freeze(&mut self, now: u64) {
        self.frozen_count = self.count(now);
        self.frozen_out = self.out(now);
        if self.running {
            self.tc -= self.elapsed(now) as i64;
        }
        self.running = false;
    }

    fn start(&mut self, now: u64) {
        self.running = true;
        self.anchor_ns = now;
        self.null_count = false;
    }

    fn write_control(&mut self, v: u8) {
        *self = PitChannelState {
            mode: (v >> 1) & 7,
            access: (v >> 4) & 3,
            bcd: v & 1 != 0,
            gate: self.gate,
            null_count: true,
            // OUT starts low in mode 0 and high in every other mode.
            frozen_out: (v >> 1) & 7 != 0,
            ..Default::default()
        };
    }

    fn write_data(&mut self, b: u8, now: u64) {
        let value = match self.access() {
            1 => b as u16,
            2 => (b as u16) << 8,
            _ if !self.write_hi => {
                self.write_lo = b;
                self.write_hi = true;
                // In mode 0 the first byte stops the count and drops OUT at once.
                if self.kind() == 0 && self.running {
                    self.freeze(now);
                    self.frozen_out = false;
                }
                return;
            }
            _ => {
                self.write_hi = false;
                self.write_lo as u16 | (b as u16) << 8
            }
        };
        self.load(value, now);
    }

    fn load(&mut self, value: u16, now: u64) {
        let v = if self.bcd {
            from_bcd(value)
        } else {
            value as u32
        };
        self.reload = if v == 0 { self.modulus() as u32 } else { v };
        self.armed = true;
        self.null_count = true;
        match self.kind() {
            0 | 4 => {
                self.tc = self.reload as i64;
                self.frozen_count = self.reload;
                self.frozen_out = self.kind() == 4;
                if self.gate {
                    self.start(now);
                } else {
                    self.running = false;
                    self.null_count = false;
                }
            }
            // Hardware-triggered modes wait for a gate edge; a new count only applies then.
            1 | 5 => {
                if !self.running {
                    self.frozen_out = true;
                }
            }
            _ => {
                // Counts of 1 are illegal in modes 2 and 3; treat them as 2 so OUT still moves.
                let n = self.reload.max(2);
                if self.running {
                    let d = self.elapsed(now);
                    let p = self.period.max(1) as u64;
                    let end = self.anchor_ns.saturating_add(ticks_to_ns((d / p + 1) * p));
                    self.pending = Some((end, n));
                } else {
                    self.period = n;
                    self.frozen_count = n;
                    self.frozen_out = true;
                    if self.gate {
                        self.start(now);
                    } else {
                        self.null_count = false;
                    }
                }
            }
        }
    }

    fn set_gate(&mut self, level: bool, now: u64) {
        if level == self.gate {
            return;
        }
        self.apply_pending(now);
        self.gate = level;
        match self.kind() {
            0 | 4 => {
                if !level && self.running {
                    self.freeze(now);
                } else if level && self.armed && !self.running {
                    self.running = true;
                    self.anchor_ns = now;
                }
            }
            1 | 5 => {
                if level && self.armed {
                    self.tc = self.reload as i64;
                    self.start(now);
                }
            }
            _ => {
                if level && self.armed {
                    self.period = self.reload.max(2);
                    self.pending = None;
                    self.start(now);
                } else if !level && self.running {
                    self.freeze(now);
                    self.pending = None;
                    self.frozen_out = true;
                }
            }
        }
    }

    fn read_data(&mut self, now: u64) -> u8 {
        if let Some(s) = self.latched_status.take() {
            return s;
        }
        let (v, latched) = match self.latched_count {
            Some(v) => (v, true),
            None => (self.encoded(now), false),
        };
        let (byte, done) = match self.access() {
            1 => (v as u8, true),
            2 => ((v >> 8) as u8, true),
            _ if !self.read_hi => {
                self.read_hi = true;
                (v as u8, false)
            }
            _ => {
                self.read_hi = false;
                ((v >> 8) as u8, true)
            }
        };
        if latched && done {
            self.latched_count = None;
        }
        byte
    }

    fn latch_count(&mut self, now: u64) {
        // A second latch before the first was read is ignored.
        if self.latched_count.is_none() {
            self.latched_count = Some(self.encoded(now));
            self.read_hi = false;
        }
    }

    fn latch_status(&mut self, now: u64) {
        if self.latched_status.is_none() {
            self.latched_status = Some(self.status(now));
        }
    }
}

pub struct Pit {
    s: PitState,
    clock: Arc<dyn Clock>,
    irq: IrqLine,
}

impl Pit {
    pub fn new(clock: Arc<dyn Clock>, irq0: IrqLine) -> Self {
        let mut s = PitState::default();
        // Gates 0 and 1 are tied high on a PC; gate 2 comes from port 0x61.
        s.channels[0].gate = true;
        s.channels[1].gate = true;
        Pit {
            s,
            clock,
            irq: irq0,
        }
    }

    pub fn save_state(&self) -> PitState {
        self.s.clone()
    }

    pub fn restore_state(&mut self, s: &PitState) {
        self.s = s.clone();
    }

    /// Delivers a due IRQ 0 edge and works out the next one.
    fn poll_irq(&mut self, now: u64) -> Option<u64> {
        let ch = &mut self.s.channels[0];
        ch.apply_pending(now);
        if let Some(t) = self.s.irq_deadline {
            if now >= t {
                self.irq.pulse();
                self.s.irq_deadline = ch.next_rise_ns(now);
            }
        }
        self.s.irq_deadline
    }

    fn write_control(&mut self, v: u8, now: u64) {
        let sel = (v >> 6) as usize;
        if sel == 3 {
            for (i, ch) in self.s.channels.iter_mut().enumerate() {
                if v & (2 << i) != 0 {
                    ch.apply_pending(now);
                    if v & 0x20 == 0 {
                        ch.latch_count(now);
                    }
                    if v & 0x10 == 0 {
                        ch.latch_status(now);
                    }
                }
            }
            return;
        }
        let ch = &mut self.s.channels[sel];
        ch.apply_pending(now);
        if v & 0x30 == 0 {
            ch.latch_count(now);
        } else {
            ch.write_control(v);
            if sel == 0 {
                self.s.irq_deadline = None;
            }
        }
    }

    fn read_port(&mut self, port: u64, now: u64) -> u8 {
        match self.s.channels.get_mut(port as usize) {
            Some(ch) => {
                ch.apply_pending(now);
                ch.read_data(now)
            }
            None => 0xff,
        }
    }

    fn write_port(&mut self, port: u64, v: u8, now: u64) {
        // Edges that fell due under the old programming still happen.
        self.poll_irq(now);
        match port {
            0..=2 => {
                let ch = &mut self.s.channels[port as usize];
                ch.apply_pending(now);
                ch.write_data(v, now);
                if port == 0 {
                    self.s.irq_deadline = self.s.channels[0].next_rise_ns(now);
                }
            }
            3 => self.write_control(v, now),
            _ => {}
        }
    }

    fn read_port61(&mut self, now: u64) -> u8 {
        let ch2 = &mut self.s.channels[2];
        ch2.apply_pending(now);
        let refresh = ((now / REFRESH_HALF_PERIOD_NS) & 1) as u8;
        (self.s.port61 & 0x0f) | refresh << 4 | (ch2.out(now) as u8) << 5
    }

    fn write_port61(&mut self, v: u8, now: u64) {
        self.s.port61 = v & 0x0f;
        self.s.channels[2].set_gate(v & 1 != 0, now);
    }

    /// Whether the speaker is sounding (timer 2 output enabled onto it), for a front end.
    pub fn speaker_enabled(&self) -> bool {
        self.s.port61 & 3 == 3
    }
}

impl Device for Pit {
    fn name(&self) -> &'static str {
        "pit-8254"
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let now = self.clock.now_ns();
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.read_port(offset.wrapping_add(i as u64), now);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let now = self.clock.now_ns();
        for (i, &b) in data.iter().enumerate() {
            self.write_port(offset.wrapping_add(i as u64), b, now);
        }
    }
}

impl Timed for Pit {
    fn poll(&mut self, now_ns: u64) -> Option<u64> {
        self.poll_irq(now_ns)
    }
}

/// Port 0x61 (register it with length 1), sharing the PIT's state.
pub struct Port61 {
    pit: Arc<Mutex<Pit>>,
}

impl Port61 {
    pub fn new(pit: Arc<Mutex<Pit>>) -> Self {
        Port61 { pit }
    }
}

impl Device for Port61 {
    fn name(&self) -> &'static str {
        "port61"
    }

    /// Only offset 0 exists; a wider access sees 0xff above it.
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let mut pit = lock(&self.pit);
        let now = pit.clock.now_ns();
        for (i, b) in data.iter_mut().enumerate() {
            *b = if offset.wrapping_add(i as u64) == 0 {
                pit.read_port61(now)
            } else {
                0xff
            };
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut pit = lock(&self.pit);
        let now = pit.clock.now_ns();
        for (i, &b) in data.iter().enumerate() {
            if offset.wrapping_add(i as u64) == 0 {
                pit.write_port61(b, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::irq::test_util::RecordingSink;

    struct Rig {
        pit: Pit,
        sink: Arc<RecordingSink>,
        clock: Arc<ManualClock>,
    }

    fn rig() -> Rig {
        let sink = Arc::new(RecordingSink::default());
        let clock = Arc::new(ManualClock::default());
        let pit = Pit::new(clock.clone(), IrqLine::new(sink.clone(), PIT_IRQ));
        Rig { pit, sink, clock }
    }

    impl Rig {
        fn at_tick(&self, t: u64) -> u64 {
            let ns = ticks_to_ns(t);
            self.clock.set(ns);
            ns
        }
        fn out(&mut self, port: u64, v: u8) {
            self.pit.write(port, &[v]);
        }
        fn inb(&mut self, port: u64) -> u8 {
            let mut b = [0];
            self.pit.read(port, &mut b);
            b[0]
        }
        fn pulses(&self) -> usize {
            self.sink
                .events
                .lock()
                .unwrap()
                .iter()
                .filter(|e| e.1)
                .count()
        }
        fn status(&mut self, ch: u8) -> u8 {
            self.out(3, 0xe0 | (2 << ch));
            self.inb(ch as u64)
        }
    }

    #[test]
    fn tick_conversion_is_exact_at_boundaries() {
        for t in [1, 1193, 65536, 1_193_182, 10_000_000_007] {
            let ns = ticks_to_ns(t);
            assert_eq!(ticks_between(0, ns), t);
            assert_eq!(ticks_between(0, ns - 1), t - 1);
        }
        assert_eq!(from_bcd(0x1234), 1234);
        assert_eq!(to_bcd(999), 0x0999);
    }

    #[test]
    fn mode2_periodic_irq_and_late_poll() {
        let mut r = rig();
        r.out(3, 0x34);
        r.out(0, 0xa9);
        r.out(0, 0x04); // 1193
        let first = r.pit.poll(0).unwrap();
        assert_eq!(first, ticks_to_ns(1193));
        assert_eq!(r.pit.poll(first - 1), Some(first));
        assert_eq!(r.pulses(), 0);
        assert_eq!(r.pit.poll(first), Some(ticks_to_ns(2 * 1193)));
        assert_eq!(r.pulses(), 1);
        assert!(!r.sink.level(PIT_IRQ), "an edge, not a held level");
        // A poll a million periods late raises one edge and looks ahead.
        let late = ticks_to_ns(1193 * 1_000_000 + 5);
        assert_eq!(r.pit.poll(late), Some(ticks_to_ns(1193 * 1_000_001)));
        assert_eq!(r.pulses(), 2);
    }

    #[test]
    fn mode0_one_shot_and_status() {
        let mut r = rig();
        r.out(3, 0x30);
        assert_eq!(r.status(0), 0x70, "OUT low, null count, lohi, mode 0");
        r.out(0, 100);
        r.out(0, 0);
        assert_eq!(r.status(0), 0x30, "count loaded");
        let t = r.pit.poll(0).unwrap();
        assert_eq!(t, ticks_to_ns(100));
        r.at_tick(99);
        assert_eq!(r.status(0) & 0x80, 0);
        assert_eq!(r.pit.poll(t), None);
        assert_eq!(r.pulses(), 1);
        r.at_tick(100);
        assert_eq!(r.status(0) & 0x80, 0x80);
        // The count wraps through 0xffff after terminal count.
        r.at_tick(101);
        r.out(3, 0x00);
        assert_eq!((r.inb(0), r.inb(0)), (0xff, 0xff));
    }

    #[test]
    fn latch_holds_value_until_read() {
        let mut r = rig();
        r.out(3, 0x34);
        r.out(0, 0xe8);
        r.out(0, 0x03); // 1000
        r.at_tick(250);
        r.out(3, 0x00);
        r.at_tick(400);
        r.out(3, 0x00); // ignored: already latched
        assert_eq!(r.inb(0), 0xee);
        r.at_tick(500);
        assert_eq!(r.inb(0), 0x02, "750 = 0x2ee");
        // Unlatched lohi reads alternate bytes of the live count.
        r.at_tick(600);
        assert_eq!((r.inb(0), r.inb(0)), (0x90, 0x01));
    }

    #[test]
    fn readback_latches_status_before_count() {
        let mut r = rig();
        r.out(3, 0xb6); // ch2 lohi mode 3
        r.out(2, 10);
        r.out(2, 0);
        r.out(3, 0xc8); // read back count and status of ch2
        assert_eq!(r.inb(2), 0xb6, "mode 3 OUT starts high; gate 2 is low");
        assert_eq!(r.inb(2), 10);
        assert_eq!(r.inb(2), 0);
    }

    #[test]
    fn access_modes_and_bcd() {
        let mut r = rig();
        r.out(3, 0x50); // ch1 lobyte mode 0
        r.out(1, 0x20);
        assert_eq!(r.inb(1), 0x20);
        r.out(3, 0x60); // ch1 hibyte mode 0
        r.out(1, 0x01);
        r.at_tick(1);
        assert_eq!(r.inb(1), 0x00, "0xff after one tick, high byte");
        r.out(3, 0x71); // ch1 lohi mode 0 BCD
        r.out(1, 0x00);
        r.out(1, 0x10); // 1000
        r.clock.set(ticks_to_ns(1) + ticks_to_ns(1));
        assert_eq!((r.inb(1), r.inb(1)), (0x99, 0x09));
        r.clock.set(0);
        r.out(3, 0x71);
        r.out(1, 0x00);
        r.out(1, 0x00); // 0 = 10000 in BCD
        r.at_tick(1);
        assert_eq!((r.inb(1), r.inb(1)), (0x99, 0x99));
    }

    #[test]
    fn mode3_square_wave_and_mode4_strobe() {
        let mut r = rig();
        r.out(3, 0x56); // ch1 lobyte mode 3
        r.out(1, 10);
        for (t, out) in [(0, true), (4, true), (5, false), (9, false), (10, true)] {
            r.at_tick(t);
            assert_eq!(r.status(1) >> 7 == 1, out, "tick {t}");
        }
        let mut r = rig();
        r.out(3, 0x18); // ch0 lobyte mode 4
        r.out(0, 5);
        assert_eq!(r.pit.poll(0), Some(ticks_to_ns(6)));
        r.at_tick(5);
        assert_eq!(r.status(0) >> 7, 0, "strobe low for one tick");
        r.at_tick(6);
        assert_eq!(r.status(0) >> 7, 1);
        assert_eq!(r.pit.poll(ticks_to_ns(6)), None);
        assert_eq!(r.pulses(), 1);
    }

    #[test]
    fn new_count_in_mode2_applies_at_period_end() {
        let mut r = rig();
        r.out(3, 0x34);
        r.out(0, 100);
        r.out(0, 0);
        r.at_tick(30);
        r.out(0, 50);
        r.out(0, 0);
        assert_eq!(r.status(0) & 0x40, 0x40, "null count until reloaded");
        assert_eq!(r.pit.poll(ticks_to_ns(30)), Some(ticks_to_ns(100)));
        r.pit.poll(ticks_to_ns(100));
        assert_eq!(r.pit.poll(ticks_to_ns(101)), Some(ticks_to_ns(150)));
        r.at_tick(120);
        assert_eq!(r.status(0) & 0x40, 0);
    }

    #[test]
    fn port61_gate_out2_and_refresh() {
        let r = rig();
        let clock = r.clock.clone();
        let pit = Arc::new(Mutex::new(r.pit));
        let mut p61 = Port61::new(pit.clone());
        let rd = |p: &mut Port61| {
            let mut b = [0];
            p.read(0, &mut b);
            b[0]
        };
        lock(&pit).write(3, &[0xb0]); // ch2 lohi mode 0
        lock(&pit).write(2, &[100]);
        lock(&pit).write(2, &[0]);
        let t0 = ticks_to_ns(500);
        clock.set(t0);
        assert_eq!(rd(&mut p61) & 0x20, 0, "gate low: not counting");
        p61.write(0, &[0x03]);
        assert_eq!(rd(&mut p61) & 0x2f, 0x03);
        clock.set(t0 + ticks_to_ns(99));
        assert_eq!(rd(&mut p61) & 0x20, 0);
        clock.set(t0 + ticks_to_ns(100));
        assert_eq!(rd(&mut p61) & 0x20, 0x20);
        assert!(lock(&pit).speaker_enabled());
        clock.set(0);
        let a = rd(&mut p61) & 0x10;
        clock.set(REFRESH_HALF_PERIOD_NS);
        assert_ne!(rd(&mut p61) & 0x10, a, "refresh bit toggles");
        let mut wide = [0u8; 2];
        p61.read(0, &mut wide);
        assert_eq!(wide[1], 0xff);
    }

    #[test]
    fn mode1_triggers_on_gate_edge() {
        let mut r = rig();
        r.out(3, 0xb2); // ch2 lohi mode 1
        r.out(2, 20);
        r.out(2, 0);
        let t = r.at_tick(50);
        assert_eq!(r.status(2) >> 7, 1, "OUT high before trigger");
        r.pit.write_port61(1, t);
        assert_eq!(r.status(2) >> 7, 0);
        r.clock.set(t + ticks_to_ns(20));
        assert_eq!(r.status(2) >> 7, 1);
    }

    #[test]
    fn mode0_gate_pauses_counting() {
        let mut r = rig();
        r.pit.write_port61(1, 0);
        r.out(3, 0xb0);
        r.out(2, 100);
        r.out(2, 0);
        r.pit.write_port61(0, ticks_to_ns(40));
        r.at_tick(1000);
        assert_eq!((r.inb(2), r.inb(2)), (60, 0));
        let t1 = ticks_to_ns(1000);
        r.pit.write_port61(1, t1);
        r.clock.set(t1 + ticks_to_ns(59));
        assert_eq!(r.status(2) >> 7, 0);
        r.clock.set(t1 + ticks_to_ns(60));
        assert_eq!(r.status(2) >> 7, 1);
    }

    #[test]
    fn odd_accesses_do_not_panic() {
        let mut r = rig();
        let mut b = [0u8; 8];
        r.pit.read(2, &mut b);
        assert_eq!(&b[2..], &[0xff; 6]);
        r.pit.write(u64::MAX - 1, &[0xff; 8]);
        r.pit.write(0, &[0xff; 8]);
        r.out(3, 0x3e); // mode 7 aliases mode 3
        r.out(0, 1);
        r.out(0, 0);
        assert!(r.pit.poll(0).is_some());
    }

    #[test]
    fn save_and_restore() {
        let mut r = rig();
        r.out(3, 0x34);
        r.out(0, 0x00);
        r.out(0, 0x10);
        r.pit.poll(0);
        let s = r.pit.save_state();
        assert!(s.irq_deadline.is_some());
        r.out(3, 0x30);
        r.out(3, 0x00);
        assert_ne!(r.pit.save_state(), s);
        r.pit.restore_state(&s);
        assert_eq!(r.pit.save_state(), s);
        assert_eq!(r.pit.poll(0), Some(ticks_to_ns(0x1000)));
    }

    #[test]
    fn random_accesses_never_panic() {
        let mut r = rig();
        crate::test_util::random_accesses(5, |s| {
            s.apply(&mut r.pit);
            r.clock.set(s.t);
            if s.x & 0x20 != 0 {
                r.pit.write_port61(s.bytes[0], s.t);
                r.pit.poll(s.t);
            }
        });
    }
}
