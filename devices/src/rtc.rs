//! MC146818 real-time clock and CMOS RAM (index port 0x70, data port 0x71).
//!
//! The guest's time is the host's UTC wall clock at creation, advanced by the virtual
//! [`Clock`]; a guest that sets the clock only moves its own offset. Time registers are
//! rendered on demand from that time, and the periodic, update-ended and alarm flags are
//! worked out for the interval since the last access or poll, so nothing ticks.
//!
//! Not modelled: the divider-reset bits of register A (the 32.768 kHz time base is assumed)
//! and daylight-saving adjustment (DSE is stored only). The day-of-week register follows the
//! date rather than being an independent counter.
//!
//! Multi-byte accesses touch consecutive ports (a 16-bit write to 0x70 selects an index and
//! writes it); ports beyond the range read as 0xff.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::bus::Device;
use crate::clock::{Clock, Timed};
use crate::irq::IrqLine;

pub const RTC_BASE: u64 = 0x70;
pub const RTC_PORT_LEN: u64 = 2;
pub const RTC_IRQ: u32 = 8;
/// Where PCs (and the FADT's CENTURY field) keep the century.
pub const CMOS_CENTURY: u8 = 0x32;
pub const CMOS_LEN: usize = 128;

const SEC: usize = 0x00;
const SEC_ALARM: usize = 0x01;
const MIN: usize = 0x02;
const MIN_ALARM: usize = 0x03;
const HOUR: usize = 0x04;
const HOUR_ALARM: usize = 0x05;
const WDAY: usize = 0x06;
const MDAY: usize = 0x07;
const MONTH: usize = 0x08;
const YEAR: usize = 0x09;
const REG_A: usize = 0x0a;
const REG_B: usize = 0x0b;
const REG_C: usize = 0x0c;
const REG_D: usize = 0x0d;

const A_UIP: u8 = 0x80;
const B_SET: u8 = 0x80;
const B_UIE: u8 = 0x10;
const B_BINARY: u8 = 0x04;
const B_24H: u8 = 0x02;
/// PIE, AIE, UIE in B line up with PF, AF, UF in C.
const INT_BITS: u8 = 0x70;
const C_IRQF: u8 = 0x80;
const C_PF: u8 = 0x40;
const C_AF: u8 = 0x20;
const C_UF: u8 = 0x10;
const D_VRT: u8 = 0x80;

const NS_PER_SEC: i128 = 1_000_000_000;
const BASE_HZ: i128 = 32_768;
/// UIP rises this long before each update (eight cycles of the 32.768 kHz base).
const UIP_NS: i128 = 244_141;
const SECS_PER_DAY: i64 = 86_400;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01: (year, month 1–12, day 1–31).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}

/// A broken-down UTC time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub min: u32,
    pub sec: u32,
    /// 1 = Sunday … 7 = Saturday, as the RTC counts.
    pub wday: u32,
}

impl DateTime {
    pub fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(SECS_PER_DAY);
        let tod = secs.rem_euclid(SECS_PER_DAY) as u32;
        let (year, month, day) = civil_from_days(days);
        DateTime {
            year,
            month,
            day,
            hour: tod / 3600,
            min: tod / 60 % 60,
            sec: tod % 60,
            // 1970-01-01 was a Thursday.
            wday: (days + 4).rem_euclid(7) as u32 + 1,
        }
    }

    pub fn to_unix(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * SECS_PER_DAY
            + self.hour as i64 * 3600
            + self.min as i64 * 60
            + self.sec as i64
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RtcState {
    /// All 128 bytes; the time registers hold what the guest last read or wrote.
    pub cmos: Vec<u8>,
    pub index: u8,
    pub nmi_masked: bool,
    /// Guest UTC time in nanoseconds since 1970 at virtual time 0.
    pub epoch_offset_ns: i128,
    /// Virtual time up to which flags have been brought.
    pub last_ns: u64,
    pub irq_level: bool,
}

pub struct Rtc {
    s: RtcState,
    clock: Arc<dyn Clock>,
    irq: IrqLine,
}

impl Rtc {
    /// An RTC showing the host's current UTC time.
    pub fn new(clock: Arc<dyn Clock>, irq8: IrqLine) -> Self {
        let host_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        Self::with_unix_ns(clock, irq8, host_ns)
    }

    /// An RTC showing `unix_ns` (UTC nanoseconds since 1970) now.
    pub fn with_unix_ns(clock: Arc<dyn Clock>, irq8: IrqLine, unix_ns: i128) -> Self {
        let now = clock.now_ns();
        let mut cmos = vec![0u8; CMOS_LEN];
        cmos[REG_A] = 0x26;
        cmos[REG_B] = B_24H;
        cmos[REG_D] = D_VRT;
        let s = RtcState {
            cmos,
            epoch_offset_ns: unix_ns - now as i128,
            last_ns: now,
            ..Default::default()
        };
        let mut rtc = Rtc {
            s,
            clock,
            irq: irq8,
        };
        rtc.render_time(now);
        rtc
    }

    pub fn save_state(&self) -> RtcState {
        self.s.clone()
    }

    pub fn restore_state(&mut self, s: &RtcState) {
        self.s = s.clone();
        self.s.cmos.resize(CMOS_LEN, 0);
        self.irq.set_level(self.s.irq_level);
    }

    /// Whether the guest masked NMIs through bit 7 of port 0x70.
    pub fn nmi_masked(&self) -> bool {
        self.s.nmi_masked
    }

    /// Sets a CMOS byte, for the platform (indexes wrap at 128).
    pub fn set_cmos(&mut self, index: u8, value: u8) {
        self.s.cmos[index as usize % CMOS_LEN] = value;
    }

    pub fn cmos(&self, index: u8) -> u8 {
        self.s.cmos[index as usize % CMOS_LEN]
    }

    /// Fills the memory-size bytes the way QEMU does, for firmware that reads them.
    pub fn set_memory_size(&mut self, below_4g: u64, above_4g: u64) {
        const KIB: u64 = 1024;
        const MIB: u64 = 1024 * KIB;
        let base = (below_4g / KIB).min(640);
        let ext = (below_4g.saturating_sub(MIB) / KIB).min(0xffff);
        let above_16m = (below_4g.saturating_sub(16 * MIB) / (64 * KIB)).min(0xffff);
        let high = above_4g / (64 * KIB);
        let bytes: [(u8, u64, u32); 11] = [
            (0x15, base, 0),
            (0x16, base, 8),
            (0x17, ext, 0),
            (0x18, ext, 8),
            (0x30, ext, 0),
            (0x31, ext, 8),
            (0x34, above_16m, 0),
            (0x35, above_16m, 8),
            (0x5b, high, 0),
            (0x5c, high, 8),
            (0x5d, high, 16),
        ];
        for (i, v, shift) in bytes {
            self.set_cmos(i, (v >> shift) as u8);
        }
    }

    fn reg(&self, i: usize) -> u8 {
        self.s.cmos[i]
    }

    fn guest_ns(&self, now: u64) -> i128 {
        self.s.epoch_offset_ns + now as i128
    }

    fn setting(&self) -> bool {
        self.reg(REG_B) & B_SET != 0
    }

    fn binary(&self) -> bool {
        self.reg(REG_B) & B_BINARY != 0
    }

    fn encode(&self, v: u32) -> u8 {
        if self.binary() {
            v as u8
        } else {
            (((v / 10 % 10) << 4) | (v % 10)) as u8
        }
    }

    fn decode(&self, v: u8) -> u32 {
        if self.binary() {
            v as u32
        } else {
            (v >> 4) as u32 * 10 + (v & 0xf) as u32
        }
    }

    fn encode_hour(&self, h: u32) -> u8 {
        if self.reg(REG_B) & B_24H != 0 {
            return self.encode(h);
        }
        let h12 = if h.is_multiple_of(12) { 12 } else { h % 12 };
        self.encode(h12) | if h >= 12 { 0x80 } else { 0 }
    }

    fn decode_hour(&self, v: u8) -> u32 {
        if self.reg(REG_B) & B_24H != 0 {
            return self.decode(v) % 24;
        }
        self.decode(v & 0x7f) % 12 + if v & 0x80 != 0 { 12 } else { 0 }
    }

    /// Copies the running time into the time registers (not while the guest is setting it).
    fn render_time(&mut self, now: u64) {
        if self.setting() {
            return;
        }
        let t = DateTime::from_unix(self.guest_ns(now).div_euclid(NS_PER_SEC) as i64);
        let regs = [
            (SEC, self.encode(t.sec)),
            (MIN, self.encode(t.min)),
            (HOUR, self.encode_hour(t.hour)),
            (WDAY, self.encode(t.wday)),
            (MDAY, self.encode(t.day)),
            (MONTH, self.encode(t.month)),
            (YEAR, self.encode(t.year.rem_euclid(100) as u32)),
            (
                CMOS_CENTURY as usize,
                self.encode(t.year.div_euclid(100).rem_euclid(100) as u32),
            ),
        ];
        for (i, v) in regs {
            self.s.cmos[i] = v;
        }
    }

    /// Takes the time registers as the new time, starting a fresh second now.
    fn adopt_time(&mut self, now: u64) {
        let century = self.decode(self.reg(CMOS_CENTURY as usize)).min(99) as i64;
        let t = DateTime {
            year: century * 100 + self.decode(self.reg(YEAR)).min(99) as i64,
            month: self.decode(self.reg(MONTH)).clamp(1, 12),
            day: self.decode(self.reg(MDAY)).clamp(1, 31),
            hour: self.decode_hour(self.reg(HOUR)),
            min: self.decode(self.reg(MIN)).min(59),
            sec: self.decode(self.reg(SEC)).min(59),
            wday: 1,
        };
        self.s.epoch_offset_ns = t.to_unix() as i128 * NS_PER_SEC - now as i128;
        self.s.last_ns = now;
    }

    /// Periodic interrupt period in 32.768 kHz cycles for rate select `rs`, if enabled.
    fn period_cycles(rs: u8) -> Option<i128> {
        match rs {
            0 => None,
            1 | 2 => Some(1 << (rs + 6)),
            _ => Some(1 << (rs - 1)),
        }
    }

    fn cycles(guest_ns: i128) -> i128 {
        (guest_ns * BASE_HZ).div_euclid(NS_PER_SEC)
    }

    fn alarm_matches(&self, secs: i64) -> bool {
        let tod = secs.rem_euclid(SECS_PER_DAY) as u32;
        let now = [
            (SEC_ALARM, self.encode(tod % 60)),
            (MIN_ALARM, self.encode(tod / 60 % 60)),
            (HOUR_ALARM, self.encode_hour(tod / 3600)),
        ];
        // Alarm bytes of 0xC0–0xFF match anything.
        now.iter()
            .all(|&(i, v)| self.reg(i) >= 0xc0 || self.reg(i) == v)
    }

    /// Sets the flags of every event in (last_ns, now].
    fn advance(&mut self, now: u64) {
        if now <= self.s.last_ns {
            return;
        }
        let a = self.guest_ns(self.s.last_ns);
        let b = self.guest_ns(now);
        let mut flags = 0;
        if let Some(p) = Self::period_cycles(self.reg(REG_A) & 0xf) {
            if Self::cycles(b).div_euclid(p) > Self::cycles(a).div_euclid(p) {
                flags |= C_PF;
            }
        }
        if !self.setting() {
            let sa = a.div_euclid(NS_PER_SEC) as i64;
            let sb = b.div_euclid(NS_PER_SEC) as i64;
            if sb > sa {
                flags |= C_UF;
                // One day of updates covers every possible alarm time.
                let from = (sa + 1).max(sb - SECS_PER_DAY + 1);
                if self.reg(REG_C) & C_AF == 0 && (from..=sb).any(|s| self.alarm_matches(s)) {
                    flags |= C_AF;
                }
            }
        }
        self.s.cmos[REG_C] |= flags;
        self.s.last_ns = now;
        self.update_irq();
    }

    fn update_irq(&mut self) {
        let irqf = self.s.cmos[REG_C] & self.s.cmos[REG_B] & INT_BITS != 0;
        let c = &mut self.s.cmos[REG_C];
        if irqf {
            *c |= C_IRQF;
        } else {
            *c &= !C_IRQF;
        }
        if irqf != self.s.irq_level {
            self.s.irq_level = irqf;
            self.irq.set_level(irqf);
        }
    }

    fn next_deadline(&self, now: u64) -> Option<u64> {
        let g = self.guest_ns(now);
        let b = self.reg(REG_B);
        let mut next: Option<i128> = None;
        if b & 0x40 != 0 {
            if let Some(p) = Self::period_cycles(self.reg(REG_A) & 0xf) {
                let k = (Self::cycles(g).div_euclid(p) + 1) * p;
                let t = (k * NS_PER_SEC + BASE_HZ - 1).div_euclid(BASE_HZ);
                next = Some(t);
            }
        }
        if b & (0x20 | B_UIE) != 0 && !self.setting() {
            let t = (g.div_euclid(NS_PER_SEC) + 1) * NS_PER_SEC;
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        next.map(|t| (t - self.s.epoch_offset_ns).clamp(0, u64::MAX as i128) as u64)
    }

    fn read_data(&mut self, now: u64) -> u8 {
        let i = self.s.index as usize;
        match i {
            SEC | MIN | HOUR | WDAY | MDAY | MONTH | YEAR => {
                self.render_time(now);
                self.reg(i)
            }
            i if i == CMOS_CENTURY as usize => {
                self.render_time(now);
                self.reg(i)
            }
            REG_A => {
                let phase = self.guest_ns(now).rem_euclid(NS_PER_SEC);
                let uip = !self.setting() && phase >= NS_PER_SEC - UIP_NS;
                self.reg(REG_A) & !A_UIP | if uip { A_UIP } else { 0 }
            }
            REG_C => {
                self.advance(now);
                let v = self.reg(REG_C);
                self.s.cmos[REG_C] = 0;
                self.update_irq();
                v
            }
            REG_D => D_VRT,
            _ => self.reg(i),
        }
    }

    fn write_data(&mut self, v: u8, now: u64) {
        let i = self.s.index as usize;
        match i {
            SEC | MIN | HOUR | WDAY | MDAY | MONTH | YEAR => {
                // Registers not being written keep the running time.
                self.advance(now);
                self.render_time(now);
                self.s.cmos[i] = v;
                if !self.setting() {
                    self.adopt_time(now);
                }
            }
            REG_A => {
                self.advance(now);
                self.s.cmos[REG_A] = v & !A_UIP;
            }
            REG_B => {
                self.advance(now);
                let was_setting = self.setting();
                if v & B_SET != 0 && !was_setting {
                    self.render_time(now);
                }
                // Entering set mode clears UIE, as the MC146818 does.
                self.s.cmos[REG_B] = if v & B_SET != 0 { v & !B_UIE } else { v };
                if was_setting && v & B_SET == 0 {
                    self.adopt_time(now);
                }
                self.update_irq();
            }
            REG_C | REG_D => {}
            _ => self.s.cmos[i] = v,
        }
    }
}

impl Device for Rtc {
    fn name(&self) -> &'static str {
        "rtc-mc146818"
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let now = self.clock.now_ns();
        for (i, b) in data.iter_mut().enumerate() {
            *b = match offset.wrapping_add(i as u64) {
                1 => self.read_data(now),
                // The index register is write-only.
                _ => 0xff,
            };
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let now = self.clock.now_ns();
        for (i, &b) in data.iter().enumerate() {
            match offset.wrapping_add(i as u64) {
                0 => {
                    self.s.index = b & 0x7f;
                    self.s.nmi_masked = b & 0x80 != 0;
                }
                1 => self.write_data(b, now),
                _ => {}
            }
        }
    }
}

impl Timed for Rtc {
    fn poll(&mut self, now_ns: u64) -> Option<u64> {
        self.advance(now_ns);
        self.next_deadline(now_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::irq::test_util::RecordingSink;

    /// 2023-11-14 22:13:20 UTC, a Tuesday.
    const T0: i128 = 1_700_000_000 * NS_PER_SEC;

    struct Rig {
        rtc: Rtc,
        sink: Arc<RecordingSink>,
        clock: Arc<ManualClock>,
    }

    fn rig() -> Rig {
        let sink = Arc::new(RecordingSink::default());
        let clock = Arc::new(ManualClock::default());
        let rtc = Rtc::with_unix_ns(clock.clone(), IrqLine::new(sink.clone(), RTC_IRQ), T0);
        Rig { rtc, sink, clock }
    }

    impl Rig {
        fn get(&mut self, i: u8) -> u8 {
            self.rtc.write(0, &[i]);
            let mut b = [0];
            self.rtc.read(1, &mut b);
            b[0]
        }
        fn set(&mut self, i: u8, v: u8) {
            self.rtc.write(0, &[i, v]);
        }
        fn time(&mut self) -> [u8; 8] {
            [0, 2, 4, 6, 7, 8, 9, 0x32].map(|i| self.get(i))
        }
    }

    #[test]
    fn calendar_conversions() {
        assert_eq!(DateTime::from_unix(0).wday, 5, "Thursday");
        let leap = DateTime::from_unix(951_782_400);
        assert_eq!((leap.year, leap.month, leap.day), (2000, 2, 29));
        let t = DateTime::from_unix(4_102_444_799);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.min, t.sec),
            (2099, 12, 31, 23, 59, 59)
        );
        for s in (-5_000_000_000i64..5_000_000_000).step_by(7_777_777) {
            assert_eq!(DateTime::from_unix(s).to_unix(), s);
        }
    }

    #[test]
    fn time_registers_bcd_binary_and_12h() {
        let mut r = rig();
        assert_eq!(r.time(), [0x20, 0x13, 0x22, 0x03, 0x14, 0x11, 0x23, 0x20]);
        assert_eq!(r.get(0x0b), B_24H);
        assert_eq!(r.get(0x0d), D_VRT);
        r.set(0x0b, B_BINARY);
        assert_eq!(r.time(), [20, 13, 0x80 | 10, 3, 14, 11, 23, 20]);
        r.clock.set(1_500_000_000);
        assert_eq!(r.get(0), 21);
    }

    #[test]
    fn guest_sets_time_with_set_bit() {
        let mut r = rig();
        r.set(0x0b, B_SET | B_24H);
        for (i, v) in [
            (0, 0x58),
            (2, 0x59),
            (4, 0x23),
            (7, 0x31),
            (8, 0x12),
            (9, 0x99),
            (0x32, 0x19),
        ] {
            r.set(i, v);
        }
        r.clock.set(5 * NS_PER_SEC as u64);
        assert_eq!(r.get(0), 0x58, "frozen while SET");
        r.set(0x0b, B_24H);
        r.clock.set(7 * NS_PER_SEC as u64);
        // 1999-12-31 23:59:58 + 2 s = 2000-01-01 00:00:00, a Saturday.
        assert_eq!(r.time(), [0x00, 0x00, 0x00, 0x07, 0x01, 0x01, 0x00, 0x20]);
        // A write while running moves the time too.
        r.set(2, 0x30);
        r.clock.set(8 * NS_PER_SEC as u64);
        assert_eq!(r.time()[..3], [0x01, 0x30, 0x00]);
    }

    #[test]
    fn uip_before_each_update() {
        let mut r = rig();
        r.clock.set(500_000_000);
        assert_eq!(r.get(0x0a), 0x26);
        r.clock.set((NS_PER_SEC - 100_000) as u64);
        assert_eq!(r.get(0x0a), 0x26 | A_UIP);
        r.set(0x0a, 0xa3);
        r.clock.set(500_000_000);
        assert_eq!(r.get(0x0a), 0x23, "UIP is read-only");
    }

    #[test]
    fn update_ended_interrupt_and_register_c() {
        let mut r = rig();
        r.set(0x0b, B_24H | B_UIE);
        let t = r.rtc.poll(0).unwrap();
        assert_eq!(t, NS_PER_SEC as u64);
        assert!(!r.sink.level(RTC_IRQ));
        assert_eq!(r.rtc.poll(t), Some(2 * NS_PER_SEC as u64));
        assert!(r.sink.level(RTC_IRQ));
        r.clock.set(t);
        // The periodic flag (rate 6 by default) is set as well, without interrupting.
        assert_eq!(r.get(0x0c), C_IRQF | C_PF | C_UF);
        assert!(!r.sink.level(RTC_IRQ));
        assert_eq!(r.get(0x0c), 0);
    }

    #[test]
    fn periodic_interrupt_rate_and_flags_without_enable() {
        let mut r = rig();
        // Flags are set even when their interrupt is disabled.
        r.clock.set(2_000_000);
        assert_eq!(r.get(0x0c), C_PF);
        assert_eq!(r.rtc.poll(2_000_000), None);
        r.set(0x0b, B_24H | 0x40);
        // Rate 6: 1024 Hz, 976562.5 ns. T0 is a whole second, so ticks fall on multiples.
        assert_eq!(r.rtc.poll(2_000_000), Some(2_929_688));
        r.rtc.poll(2_929_688);
        assert!(r.sink.level(RTC_IRQ));
        r.clock.set(2_929_688);
        assert_eq!(r.get(0x0c), C_IRQF | C_PF);
        r.set(0x0a, 0x2f); // 2 Hz
        assert_eq!(r.rtc.poll(2_929_688), Some(500_000_000));
    }

    #[test]
    fn alarm_interrupt_with_dont_care() {
        let mut r = rig();
        r.set(1, 0x25); // 22:13:25
        r.set(3, 0x13);
        r.set(5, 0x22);
        r.set(0x0b, B_24H | 0x20);
        r.rtc.poll(4 * NS_PER_SEC as u64);
        assert!(!r.sink.level(RTC_IRQ));
        r.rtc.poll(5 * NS_PER_SEC as u64);
        assert!(r.sink.level(RTC_IRQ));
        r.clock.set(5 * NS_PER_SEC as u64);
        assert_eq!(r.get(0x0c), C_IRQF | C_PF | C_AF | C_UF);
        // Every hour at minute 0, second 0: found even when the poll is hours late.
        r.set(1, 0x00);
        r.set(3, 0x00);
        r.set(5, 0xc0);
        r.rtc.poll(3 * 3600 * NS_PER_SEC as u64);
        assert!(r.sink.level(RTC_IRQ));
    }

    #[test]
    fn index_port_nmi_mask_and_plain_cmos() {
        let mut r = rig();
        r.rtc.write(0, &[0x80 | 0x0e]);
        assert!(r.rtc.nmi_masked());
        r.rtc.write(1, &[0x5a]);
        r.rtc.write(0, &[0x0e]);
        assert!(!r.rtc.nmi_masked());
        let mut b = [0u8; 4];
        r.rtc.read(0, &mut b);
        assert_eq!(b, [0xff, 0x5a, 0xff, 0xff]);
        r.rtc.write(u64::MAX, &[1, 2, 3, 4, 5, 6, 7, 8]);
        r.set(0x0d, 0);
        assert_eq!(r.get(0x0d), D_VRT);
    }

    #[test]
    fn memory_size_bytes() {
        let mut r = rig();
        r.rtc.set_memory_size(0xc000_0000, 0x4000_0000);
        assert_eq!((r.rtc.cmos(0x15), r.rtc.cmos(0x16)), (0x80, 0x02));
        assert_eq!((r.rtc.cmos(0x17), r.rtc.cmos(0x18)), (0xff, 0xff));
        assert_eq!((r.rtc.cmos(0x30), r.rtc.cmos(0x31)), (0xff, 0xff));
        assert_eq!((r.rtc.cmos(0x34), r.rtc.cmos(0x35)), (0x00, 0xbf));
        assert_eq!(
            (r.rtc.cmos(0x5b), r.rtc.cmos(0x5c), r.rtc.cmos(0x5d)),
            (0, 0x40, 0)
        );
        r.rtc.set_memory_size(8 << 20, 0);
        assert_eq!((r.rtc.cmos(0x17), r.rtc.cmos(0x18)), (0x00, 0x1c));
        assert_eq!(r.rtc.cmos(0x34), 0);
    }

    #[test]
    fn save_and_restore() {
        let mut r = rig();
        r.set(0x0b, B_24H | B_UIE);
        r.set(0x40, 7);
        r.rtc.poll(NS_PER_SEC as u64);
        let s = r.rtc.save_state();
        assert!(s.irq_level);
        r.clock.set(NS_PER_SEC as u64);
        r.get(0x0c);
        r.set(0x40, 8);
        r.set(0x0b, B_SET);
        assert_ne!(r.rtc.save_state(), s);
        r.rtc.restore_state(&s);
        assert_eq!(r.rtc.save_state(), s);
        assert!(r.sink.level(RTC_IRQ));
        assert_eq!(r.get(0x40), 7);
    }

    #[test]
    fn random_accesses_never_panic() {
        let mut r = rig();
        crate::test_util::random_accesses(3, |s| {
            s.apply(&mut r.rtc);
            r.clock.set(s.t);
            if s.x & 0x20 != 0 {
                r.rtc.poll(s.t);
            }
        });
    }
}
