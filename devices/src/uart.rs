//! 16550A UART, as the PC's COM ports.
//!
//! Transmission is instantaneous: a byte written to THR goes straight to the output sink (or,
//! in loopback mode, to the receive FIFO), so THR and the transmit shift register are always
//! empty again by the time the guest looks. Received bytes wait in a host-side backlog until
//! the receive FIFO has room, as a serial line with flow control would, so pasted input is
//! not lost to overruns.
//!
//! Multi-byte accesses touch consecutive registers (as an 8-bit ISA device sees a 16-bit
//! access split into two cycles); offsets beyond the 8 registers read as 0xff.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;

use crate::bus::Device;
use crate::clock::{Clock, Timed};
use crate::irq::IrqLine;

pub const COM1_BASE: u64 = 0x3f8;
pub const COM1_IRQ: u32 = 4;
/// Length of the port range a UART is registered with.
pub const UART_PORT_LEN: u64 = 8;

const FIFO_LEN: usize = 16;
/// Input the host may queue ahead of the guest before further bytes are dropped.
const BACKLOG_MAX: usize = 64 << 10;
/// The UART's input clock divided by 16: the baud rate at divisor 1.
const BASE_BAUD: u64 = 115_200;

const IER_RDI: u8 = 0x01;
const IER_THRI: u8 = 0x02;
const IER_RLSI: u8 = 0x04;
const IER_MSI: u8 = 0x08;

const IIR_NONE: u8 = 0x01;
const IIR_MSI: u8 = 0x00;
const IIR_THRI: u8 = 0x02;
const IIR_RDI: u8 = 0x04;
const IIR_RLSI: u8 = 0x06;
const IIR_CTI: u8 = 0x0c;
const IIR_FIFO_ENABLED: u8 = 0xc0;

const FCR_ENABLE: u8 = 0x01;
const FCR_CLEAR_RX: u8 = 0x02;

const LCR_DLAB: u8 = 0x80;

const MCR_DTR: u8 = 0x01;
const MCR_RTS: u8 = 0x02;
const MCR_OUT1: u8 = 0x04;
const MCR_OUT2: u8 = 0x08;
const MCR_LOOP: u8 = 0x10;

const LSR_DR: u8 = 0x01;
const LSR_OE: u8 = 0x02;
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;
/// OE, PE, FE, BI: the error bits that raise the line status interrupt; cleared on read.
const LSR_ERRORS: u8 = 0x1e;

const MSR_DCTS: u8 = 0x01;
const MSR_DDSR: u8 = 0x02;
const MSR_TERI: u8 = 0x04;
const MSR_DDCD: u8 = 0x08;
const MSR_DELTAS: u8 = 0x0f;
const MSR_CTS: u8 = 0x10;
const MSR_DSR: u8 = 0x20;
const MSR_RI: u8 = 0x40;
const MSR_DCD: u8 = 0x80;
/// What an attached terminal presents when not in loopback: carrier, data set ready and
/// clear to send, so that guests waiting for a modem see one.
const MSR_EXTERNAL: u8 = MSR_DCD | MSR_DSR | MSR_CTS;

/// The guest-visible state of a UART, as plain data.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct UartState {
    pub ier: u8,
    pub lcr: u8,
    pub mcr: u8,
    /// Only the error bits (OE, PE, FE, BI); DR, THRE and TEMT are derived.
    pub lsr_errors: u8,
    pub msr: u8,
    pub scr: u8,
    pub dll: u8,
    pub dlm: u8,
    /// FIFO enable and trigger level bits as last written to FCR.
    pub fcr: u8,
    pub rx: Vec<u8>,
    pub backlog: Vec<u8>,
    pub thri_pending: bool,
    pub timeout_pending: bool,
    pub timeout_deadline: Option<u64>,
    pub irq_level: bool,
}

pub struct Uart {
    s: UartState,
    rx: VecDeque<u8>,
    backlog: VecDeque<u8>,
    out: Box<dyn Write + Send>,
    out_failed: bool,
    irq: IrqLine,
    clock: Arc<dyn Clock>,
}

impl Uart {
    /// A UART in its power-on state (divisor 12, 9600 baud, FIFOs off).
    pub fn new(out: Box<dyn Write + Send>, irq: IrqLine, clock: Arc<dyn Clock>) -> Self {
        let s = UartState {
            dll: 12,
            msr: MSR_EXTERNAL,
            ..Default::default()
        };
        Uart {
            s,
            rx: VecDeque::with_capacity(FIFO_LEN),
            backlog: VecDeque::new(),
            out,
            out_failed: false,
            irq,
            clock,
        }
    }

    /// Queues bytes received from the host side (a terminal, a socket).
    pub fn push_input(&mut self, bytes: &[u8]) {
        let room = BACKLOG_MAX.saturating_sub(self.backlog.len());
        if bytes.len() > room {
            log::warn!(
                "uart: input backlog full, dropping {} bytes",
                bytes.len() - room
            );
        }
        self.backlog.extend(&bytes[..bytes.len().min(room)]);
        let now = self.clock.now_ns();
        self.refill(now);
        self.update_irq();
    }

    pub fn save_state(&self) -> UartState {
        let mut s = self.s.clone();
        s.rx = self.rx.iter().copied().collect();
        s.backlog = self.backlog.iter().copied().collect();
        s
    }

    pub fn restore_state(&mut self, s: &UartState) {
        self.s = s.clone();
        self.rx = s.rx.iter().copied().take(FIFO_LEN).collect();
        self.backlog = s.backlog.iter().copied().take(BACKLOG_MAX).collect();
        self.s.rx.clear();
        self.s.backlog.clear();
        // The line may have been left at either level by the state we replace.
        self.irq.set_level(self.s.irq_level);
    }

    fn fifo_enabled(&self) -> bool {
        self.s.fcr & FCR_ENABLE != 0
    }

    fn loopback(&self) -> bool {
        self.s.mcr & MCR_LOOP != 0
    }

    fn rx_capacity(&self) -> usize {
        if self.fifo_enabled() {
            FIFO_LEN
        } else {
            1
        }
    }

    fn rx_trigger(&self) -> usize {
        [1, 4, 8, 14][(self.s.fcr >> 6) as usize]
    }

    /// Four character times at the current divisor and frame format: the receive timeout.
    fn timeout_ns(&self) -> u64 {
        let divisor = (u16::from_le_bytes([self.s.dll, self.s.dlm]) as u64).max(1);
        let data = 5 + (self.s.lcr & 3) as u64;
        let stop = if self.s.lcr & 4 != 0 { 2 } else { 1 };
        let parity = ((self.s.lcr >> 3) & 1) as u64;
        let bits = 1 + data + parity + stop;
        4 * bits * divisor * 1_000_000_000 / BASE_BAUD
    }

    /// Notes receive-FIFO activity, which restarts the character timeout.
    fn rx_activity(&mut self, now: u64) {
        self.s.timeout_pending = false;
        self.s.timeout_deadline =
            (self.fifo_enabled() && !self.rx.is_empty()).then(|| now + self.timeout_ns());
    }

    fn check_timeout(&mut self, now: u64) {
        if let Some(t) = self.s.timeout_deadline {
            if now >= t {
                self.s.timeout_deadline = None;
                self.s.timeout_pending = self.fifo_enabled() && !self.rx.is_empty();
            }
        }
    }

    /// Moves host input into the receive FIFO while it has room. In loopback the serial
    /// input is disconnected, so the backlog waits.
    fn refill(&mut self, now: u64) {
        if self.loopback() {
            return;
        }
        let mut moved = false;
        while self.rx.len() < self.rx_capacity() {
            match self.backlog.pop_front() {
                Some(b) => {
                    self.rx.push_back(b);
                    moved = true;
                }
                None => break,
            }
        }
        if moved {
            self.rx_activity(now);
        }
    }

    /// A byte arriving on the receive side (loopback): overruns as the hardware does.
    fn receive(&mut self, b: u8, now: u64) {
        if self.rx.len() < self.rx_capacity() {
            self.rx.push_back(b);
        } else {
            self.s.lsr_errors |= LSR_OE;
            if !self.fifo_enabled() {
                // Without a FIFO the new character overwrites the unread one.
                self.rx.clear();
                self.rx.push_back(b);
            }
        }
        self.rx_activity(now);
    }

    fn transmit(&mut self, b: u8, now: u64) {
        if self.loopback() {
            self.receive(b, now);
            return;
        }
        let r = self.out.write_all(&[b]).and_then(|_| self.out.flush());
        if let Err(e) = r {
            if !self.out_failed {
                log::warn!("uart: output failed, further output may be lost: {e}");
                self.out_failed = true;
            }
        }
    }

    fn modem_inputs(&self) -> u8 {
        if !self.loopback() {
            return MSR_EXTERNAL;
        }
        let m = self.s.mcr;
        let mut v = 0;
        if m & MCR_RTS != 0 {
            v |= MSR_CTS;
        }
        if m & MCR_DTR != 0 {
            v |= MSR_DSR;
        }
        if m & MCR_OUT1 != 0 {
            v |= MSR_RI;
        }
        if m & MCR_OUT2 != 0 {
            v |= MSR_DCD;
        }
        v
    }

    fn update_msr(&mut self) {
        let old = self.s.msr;
        let new = self.modem_inputs();
        let changed = old ^ new;
        let mut delta = old & MSR_DELTAS;
        if changed & MSR_CTS != 0 {
            delta |= MSR_DCTS;
        }
        if changed & MSR_DSR != 0 {
            delta |= MSR_DDSR;
        }
        // TERI flags only the trailing edge of ring indicate.
        if old & MSR_RI != 0 && new & MSR_RI == 0 {
            delta |= MSR_TERI;
        }
        if changed & MSR_DCD != 0 {
            delta |= MSR_DDCD;
        }
        self.s.msr = new | delta;
    }

    fn lsr(&self) -> u8 {
        let mut v = self.s.lsr_errors | LSR_THRE | LSR_TEMT;
        if !self.rx.is_empty() {
            v |= LSR_DR;
        }
        v
    }

    /// The highest-priority pending interrupt, as the IIR identification bits.
    fn pending(&self) -> u8 {
        let ier = self.s.ier;
        if ier & IER_RLSI != 0 && self.s.lsr_errors & LSR_ERRORS != 0 {
            IIR_RLSI
        } else if ier & IER_RDI != 0
            && !self.rx.is_empty()
            && (!self.fifo_enabled() || self.rx.len() >= self.rx_trigger())
        {
            IIR_RDI
        } else if ier & IER_RDI != 0 && self.s.timeout_pending {
            IIR_CTI
        } else if ier & IER_THRI != 0 && self.s.thri_pending {
            IIR_THRI
        } else if ier & IER_MSI != 0 && self.s.msr & MSR_DELTAS != 0 {
            IIR_MSI
        } else {
            IIR_NONE
        }
    }

    fn update_irq(&mut self) {
        // On a PC, OUT2 gates the UART's interrupt output onto the ISA bus.
        let level = self.pending() != IIR_NONE && self.s.mcr & MCR_OUT2 != 0;
        if level != self.s.irq_level {
            self.s.irq_level = level;
            self.irq.set_level(level);
        }
    }

    fn read_reg(&mut self, reg: u64, now: u64) -> u8 {
        let dlab = self.s.lcr & LCR_DLAB != 0;
        match reg {
            0 if dlab => self.s.dll,
            0 => {
                let b = self.rx.pop_front().unwrap_or(0);
                self.refill(now);
                self.rx_activity(now);
                b
            }
            1 if dlab => self.s.dlm,
            1 => self.s.ier,
            2 => {
                let id = self.pending();
                // Reading IIR acknowledges a THR-empty interrupt, and only that one.
                if id == IIR_THRI {
                    self.s.thri_pending = false;
                }
                let fifo = if self.fifo_enabled() {
                    IIR_FIFO_ENABLED
                } else {
                    0
                };
                id | fifo
            }
            3 => self.s.lcr,
            4 => self.s.mcr,
            5 => {
                let v = self.lsr();
                self.s.lsr_errors = 0;
                v
            }
            6 => {
                let v = self.s.msr;
                self.s.msr &= !MSR_DELTAS;
                v
            }
            7 => self.s.scr,
            _ => 0xff,
        }
    }

    fn write_reg(&mut self, reg: u64, v: u8, now: u64) {
        let dlab = self.s.lcr & LCR_DLAB != 0;
        match reg {
            0 if dlab => self.s.dll = v,
            0 => {
                // The byte leaves THR at once; the THRE interrupt is re-armed after it went
                // away, so the guest sees a fresh edge per byte as with real transmission.
                self.s.thri_pending = false;
                self.update_irq();
                self.transmit(v, now);
                self.s.thri_pending = true;
            }
            1 if dlab => self.s.dlm = v,
            1 => {
                let old = self.s.ier;
                self.s.ier = v & 0x0f;
                // Enabling the THRE interrupt while THR is empty raises it at once.
                if (old ^ self.s.ier) & IER_THRI != 0 {
                    self.s.thri_pending = self.s.ier & IER_THRI != 0;
                }
            }
            2 => {
                let enable_changed = (self.s.fcr ^ v) & FCR_ENABLE != 0;
                if enable_changed || v & FCR_CLEAR_RX != 0 {
                    self.rx.clear();
                    self.s.timeout_pending = false;
                    self.s.timeout_deadline = None;
                }
                // The transmit FIFO is always empty, so clearing it (bit 2) has nothing to do.
                self.s.fcr = v & 0xc9;
                if self.s.fcr & FCR_ENABLE == 0 {
                    self.s.fcr = 0;
                }
                self.refill(now);
            }
            3 => self.s.lcr = v,
            4 => {
                let was_loop = self.loopback();
                self.s.mcr = v & 0x1f;
                self.update_msr();
                if was_loop && !self.loopback() {
                    self.refill(now);
                }
            }
            // LSR and MSR are read-only; writes to them are factory test hooks, ignored.
            5 | 6 => {}
            7 => self.s.scr = v,
            _ => {}
        }
    }
}

impl Device for Uart {
    fn name(&self) -> &'static str {
        "uart-16550a"
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let now = self.clock.now_ns();
        self.check_timeout(now);
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.read_reg(offset.wrapping_add(i as u64), now);
        }
        self.update_irq();
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let now = self.clock.now_ns();
        self.check_timeout(now);
        for (i, &b) in data.iter().enumerate() {
            self.write_reg(offset.wrapping_add(i as u64), b, now);
        }
        self.update_irq();
    }
}

impl Timed for Uart {
    /// Only the receive timeout needs time; the returned deadline is when it fires.
    fn poll(&mut self, now_ns: u64) -> Option<u64> {
        self.check_timeout(now_ns);
        self.update_irq();
        self.s.timeout_deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::irq::test_util::RecordingSink;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct SharedBuf(Arc<Mutex<Vec<u8>>>);
    impl Write for SharedBuf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct Rig {
        u: Uart,
        out: SharedBuf,
        sink: Arc<RecordingSink>,
        clock: Arc<ManualClock>,
    }

    fn rig() -> Rig {
        let out = SharedBuf::default();
        let sink = Arc::new(RecordingSink::default());
        let clock = Arc::new(ManualClock::default());
        let u = Uart::new(
            Box::new(out.clone()),
            IrqLine::new(sink.clone(), COM1_IRQ),
            clock.clone(),
        );
        Rig {
            u,
            out,
            sink,
            clock,
        }
    }

    fn rd(u: &mut Uart, reg: u64) -> u8 {
        let mut b = [0];
        u.read(reg, &mut b);
        b[0]
    }

    fn wr(u: &mut Uart, reg: u64, v: u8) {
        u.write(reg, &[v]);
    }

    #[test]
    fn transmit_goes_to_sink_and_lsr_shows_empty() {
        let mut r = rig();
        for &b in b"hi\n" {
            wr(&mut r.u, 0, b);
        }
        assert_eq!(&*r.out.0.lock().unwrap(), b"hi\n");
        assert_eq!(rd(&mut r.u, 5), LSR_THRE | LSR_TEMT);
        assert_eq!(rd(&mut r.u, 2), IIR_NONE);
    }

    #[test]
    fn divisor_latch_and_scratch() {
        let mut r = rig();
        wr(&mut r.u, 3, 0x83);
        wr(&mut r.u, 0, 0x01);
        wr(&mut r.u, 1, 0x02);
        assert_eq!(rd(&mut r.u, 0), 0x01);
        assert_eq!(rd(&mut r.u, 1), 0x02);
        wr(&mut r.u, 3, 0x03);
        assert_eq!(rd(&mut r.u, 1), 0, "IER untouched by DLM writes");
        assert!(r.out.0.lock().unwrap().is_empty(), "DLL write is not THR");
        wr(&mut r.u, 7, 0x5a);
        assert_eq!(rd(&mut r.u, 7), 0x5a);
    }

    #[test]
    fn thre_interrupt_semantics_and_out2_gating() {
        let mut r = rig();
        wr(&mut r.u, 1, IER_THRI);
        // Pending, but OUT2 is low: the line stays quiet.
        assert!(!r.sink.level(COM1_IRQ));
        wr(&mut r.u, 4, MCR_OUT2);
        assert!(r.sink.level(COM1_IRQ));
        // Reading IIR with THRE as the source clears it.
        assert_eq!(rd(&mut r.u, 2), IIR_THRI);
        assert!(!r.sink.level(COM1_IRQ));
        assert_eq!(rd(&mut r.u, 2), IIR_NONE);
        // A THR write re-arms it with a fresh edge.
        r.sink.events.lock().unwrap().clear();
        wr(&mut r.u, 0, b'x');
        assert_eq!(*r.sink.events.lock().unwrap(), vec![(COM1_IRQ, true)]);
        // Disabling the source lowers the line.
        wr(&mut r.u, 1, 0);
        assert!(!r.sink.level(COM1_IRQ));
    }

    #[test]
    fn receive_without_fifo_and_rx_interrupt() {
        let mut r = rig();
        wr(&mut r.u, 4, MCR_OUT2);
        wr(&mut r.u, 1, IER_RDI);
        r.u.push_input(b"ab");
        assert!(r.sink.level(COM1_IRQ));
        assert_eq!(rd(&mut r.u, 2), IIR_RDI);
        assert_eq!(rd(&mut r.u, 5) & LSR_DR, LSR_DR);
        assert_eq!(rd(&mut r.u, 0), b'a');
        // The backlog feeds the holding register as soon as it is free.
        assert_eq!(rd(&mut r.u, 0), b'b');
        assert_eq!(rd(&mut r.u, 5) & LSR_DR, 0);
        assert!(!r.sink.level(COM1_IRQ));
    }

    #[test]
    fn fifo_trigger_level_and_character_timeout() {
        let mut r = rig();
        wr(&mut r.u, 4, MCR_OUT2);
        wr(&mut r.u, 2, 0x81); // FIFO on, trigger 8
        wr(&mut r.u, 1, IER_RDI);
        assert_eq!(rd(&mut r.u, 2), IIR_FIFO_ENABLED | IIR_NONE);
        r.u.push_input(b"1234567");
        assert!(!r.sink.level(COM1_IRQ), "below trigger level");
        let deadline = r.u.poll(0).expect("timeout armed");
        assert_eq!(deadline, r.u.timeout_ns());
        r.clock.set(deadline);
        assert_eq!(r.u.poll(deadline), None);
        assert!(r.sink.level(COM1_IRQ));
        assert_eq!(rd(&mut r.u, 2), IIR_FIFO_ENABLED | IIR_CTI);
        assert_eq!(rd(&mut r.u, 0), b'1');
        assert!(!r.sink.level(COM1_IRQ), "reading RBR clears the timeout");
        r.u.push_input(b"89abcdefghijklmnop");
        assert_eq!(rd(&mut r.u, 2), IIR_FIFO_ENABLED | IIR_RDI);
        assert_eq!(r.u.rx.len(), FIFO_LEN);
        let mut got = Vec::new();
        while rd(&mut r.u, 5) & LSR_DR != 0 {
            got.push(rd(&mut r.u, 0));
        }
        assert_eq!(got, b"23456789abcdefghijklmnop");
        assert_eq!(rd(&mut r.u, 5) & LSR_OE, 0, "host input never overruns");
    }

    #[test]
    fn loopback_overrun_and_line_status_priority() {
        let mut r = rig();
        wr(&mut r.u, 4, MCR_LOOP | MCR_OUT2);
        wr(&mut r.u, 1, IER_RDI | IER_THRI | IER_RLSI);
        wr(&mut r.u, 0, b'A');
        wr(&mut r.u, 0, b'B');
        assert!(
            r.out.0.lock().unwrap().is_empty(),
            "loopback keeps bytes internal"
        );
        // Overrun outranks received data and THRE.
        assert_eq!(rd(&mut r.u, 2), IIR_RLSI);
        let lsr = rd(&mut r.u, 5);
        assert_eq!(lsr & (LSR_OE | LSR_DR), LSR_OE | LSR_DR);
        assert_eq!(rd(&mut r.u, 5) & LSR_OE, 0, "errors clear on read");
        assert_eq!(rd(&mut r.u, 2), IIR_RDI);
        assert_eq!(rd(&mut r.u, 0), b'B', "without FIFO the newest byte wins");
        assert_eq!(rd(&mut r.u, 2), IIR_THRI);
        assert_eq!(rd(&mut r.u, 2), IIR_NONE);
    }

    #[test]
    fn loopback_modem_lines_and_deltas() {
        let mut r = rig();
        assert_eq!(rd(&mut r.u, 6), MSR_EXTERNAL);
        wr(&mut r.u, 1, IER_MSI);
        wr(&mut r.u, 4, MCR_LOOP | MCR_OUT2);
        // DCD follows OUT2 (unchanged), CTS and DSR dropped.
        assert!(r.sink.level(COM1_IRQ));
        assert_eq!(rd(&mut r.u, 2), IIR_MSI);
        assert_eq!(rd(&mut r.u, 6), MSR_DCD | MSR_DCTS | MSR_DDSR);
        assert!(!r.sink.level(COM1_IRQ));
        wr(
            &mut r.u,
            4,
            MCR_LOOP | MCR_OUT2 | MCR_OUT1 | MCR_RTS | MCR_DTR,
        );
        assert_eq!(rd(&mut r.u, 6), 0xf0 | MSR_DCTS | MSR_DDSR);
        wr(&mut r.u, 4, MCR_LOOP | MCR_OUT2);
        assert_eq!(rd(&mut r.u, 6), MSR_DCD | MSR_DCTS | MSR_DDSR | MSR_TERI);
        assert_eq!(rd(&mut r.u, 6), MSR_DCD);
    }

    #[test]
    fn wide_and_out_of_range_accesses() {
        let mut r = rig();
        r.u.write(7, &[1, 2, 3, 4]);
        assert_eq!(rd(&mut r.u, 7), 1);
        let mut b = [0u8; 8];
        r.u.read(6, &mut b);
        assert_eq!(b[1], 1);
        assert_eq!(&b[2..], &[0xff; 6]);
        r.u.read(u64::MAX, &mut b);
    }

    #[test]
    fn save_and_restore() {
        let mut r = rig();
        wr(&mut r.u, 2, 0x41);
        wr(&mut r.u, 1, IER_RDI);
        wr(&mut r.u, 4, MCR_OUT2);
        wr(&mut r.u, 7, 9);
        r.u.push_input(&[7u8; 20]);
        let saved = r.u.save_state();
        assert_eq!(saved.rx.len(), FIFO_LEN);
        assert_eq!(saved.backlog.len(), 4);
        assert!(saved.irq_level);
        wr(&mut r.u, 7, 1);
        wr(&mut r.u, 2, 0x00);
        wr(&mut r.u, 4, 0);
        assert_ne!(r.u.save_state(), saved);
        r.u.restore_state(&saved);
        assert_eq!(r.u.save_state(), saved);
        assert!(r.sink.level(COM1_IRQ));
        assert_eq!(rd(&mut r.u, 7), 9);
    }

    #[test]
    fn random_accesses_never_panic() {
        let mut r = rig();
        crate::test_util::random_accesses(10, |s| {
            s.apply(&mut r.u);
            r.clock.set(s.t);
            if s.x & 0x20 != 0 {
                r.u.push_input(&s.bytes[..s.width]);
                r.u.poll(s.t);
            }
        });
    }
}
