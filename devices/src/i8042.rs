//! 8042 keyboard controller: data port 0x60 and status/command port 0x64.
//!
//! What a PC guest needs from it is the reset line (output port bit 0, and the 0xFE pulse
//! command), the A20 bit, and a controller and keyboard that answer probes. The keyboard
//! has no keys pressed; a PS/2 mouse that never moves answers on the aux port. Commands are
//! executed at once, so the input buffer is never seen full. Scan-code translation is not
//! applied to replies (they are the same in sets 1 and 2 apart from identify).
//!
//! Register [`I8042Port::data`] at 0x60 and [`I8042Port::command`] at 0x64, each with length
//! 1; a wider access sees 0xff (reads) or nothing (writes) beyond the first byte.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::bus::{lock, Device};
use crate::control::{StopRequest, VmControl};
use crate::irq::IrqLine;

pub const I8042_DATA_PORT: u64 = 0x60;
pub const I8042_COMMAND_PORT: u64 = 0x64;
pub const KBD_IRQ: u32 = 1;
pub const AUX_IRQ: u32 = 12;

const STATUS_OBF: u8 = 0x01;
const STATUS_SYS: u8 = 0x04;
const STATUS_CMD: u8 = 0x08;
const STATUS_UNLOCKED: u8 = 0x10;
const STATUS_AUX_OBF: u8 = 0x20;

const CB_KBD_INT: u8 = 0x01;
const CB_AUX_INT: u8 = 0x02;
const CB_SYS: u8 = 0x04;
const CB_KBD_DISABLE: u8 = 0x10;
const CB_AUX_DISABLE: u8 = 0x20;
const CB_TRANSLATE: u8 = 0x40;

const OUT_RESET: u8 = 0x01;
const OUT_A20: u8 = 0x02;

const ACK: u8 = 0xfa;
const RESEND: u8 = 0xfe;
/// Replies the guest has not read yet, beyond which further ones are dropped.
const QUEUE_MAX: usize = 16;

/// What the next byte written to port 0x60 is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PendingWrite {
    /// A command to the keyboard.
    #[default]
    Keyboard,
    /// The controller RAM byte at this index (0 = command byte).
    Ram(u8),
    OutputPort,
    /// Placed in the output buffer as if the keyboard sent it.
    KeyboardOutput,
    /// Placed in the output buffer as if the mouse sent it.
    AuxOutput,
    /// A command to the mouse.
    Aux,
    /// The argument of a keyboard command (set LEDs, typematic, scan code set).
    KeyboardArg(u8),
    /// The argument of a mouse command (sample rate, resolution).
    AuxArg,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct I8042State {
    /// Controller RAM; byte 0 is the command byte.
    pub ram: Vec<u8>,
    pub status: u8,
    pub output_port: u8,
    pub pending: PendingWrite,
    /// Unread bytes, with whether each came from the aux (mouse) side.
    pub queue: Vec<(u8, bool)>,
    pub scan_set: u8,
    pub scanning: bool,
    pub irq1_level: bool,
    pub irq12_level: bool,
}

pub struct I8042 {
    s: I8042State,
    queue: VecDeque<(u8, bool)>,
    control: Arc<VmControl>,
    irq1: IrqLine,
    irq12: IrqLine,
}

impl I8042 {
    pub fn new(control: Arc<VmControl>, irq1: IrqLine, irq12: IrqLine) -> Self {
        let mut ram = vec![0u8; 32];
        ram[0] = CB_KBD_INT | CB_AUX_INT;
        let s = I8042State {
            ram,
            status: STATUS_CMD | STATUS_UNLOCKED,
            output_port: OUT_RESET | OUT_A20,
            scan_set: 2,
            scanning: true,
            ..Default::default()
        };
        I8042 {
            s,
            queue: VecDeque::new(),
            control,
            irq1,
            irq12,
        }
    }

    pub fn save_state(&self) -> I8042State {
        let mut s = self.s.clone();
        s.queue = self.queue.iter().copied().collect();
        s
    }

    pub fn restore_state(&mut self, s: &I8042State) {
        self.s = s.clone();
        self.s.ram.resize(32, 0);
        self.queue = s.queue.iter().copied().take(QUEUE_MAX).collect();
        self.s.queue.clear();
        self.irq1.set_level(self.s.irq1_level);
        self.irq12.set_level(self.s.irq12_level);
    }

    /// A20 as set through the output port.
    pub fn a20_enabled(&self) -> bool {
        self.s.output_port & OUT_A20 != 0
    }

    fn command_byte(&self) -> u8 {
        self.s.ram[0]
    }

    fn push(&mut self, b: u8, aux: bool) {
        if self.queue.len() < QUEUE_MAX {
            self.queue.push_back((b, aux));
        }
    }

    fn status(&self) -> u8 {
        let mut st = self.s.status & !(STATUS_OBF | STATUS_AUX_OBF | STATUS_SYS);
        if let Some(&(_, aux)) = self.queue.front() {
            st |= STATUS_OBF;
            if aux {
                st |= STATUS_AUX_OBF;
            }
        }
        if self.command_byte() & CB_SYS != 0 {
            st |= STATUS_SYS;
        }
        st
    }

    fn update_irq(&mut self) {
        let front = self.queue.front().map(|&(_, aux)| aux);
        let cb = self.command_byte();
        let kbd = front == Some(false) && cb & CB_KBD_INT != 0;
        let aux = front == Some(true) && cb & CB_AUX_INT != 0;
        if kbd != self.s.irq1_level {
            self.s.irq1_level = kbd;
            self.irq1.set_level(kbd);
        }
        if aux != self.s.irq12_level {
            self.s.irq12_level = aux;
            self.irq12.set_level(aux);
        }
    }

    fn lower_irqs(&mut self) {
        if self.s.irq1_level {
            self.s.irq1_level = false;
            self.irq1.lower();
        }
        if self.s.irq12_level {
            self.s.irq12_level = false;
            self.irq12.lower();
        }
    }

    fn write_output_port(&mut self, v: u8) {
        self.s.output_port = v;
        // The reset line is active low.
        if v & OUT_RESET == 0 {
            self.control.request(StopRequest::Reset);
        }
    }

    fn read_data(&mut self) -> u8 {
        match self.queue.pop_front() {
            Some((b, _)) => b,
            // With nothing new, the output buffer still holds the last byte; 0 is as good.
            None => 0,
        }
    }

    fn write_command(&mut self, cmd: u8) {
        self.s.status |= STATUS_CMD;
        self.s.pending = PendingWrite::Keyboard;
        match cmd {
            0x20..=0x3f => self.push(self.s.ram[(cmd & 0x1f) as usize], false),
            0x60..=0x7f => self.s.pending = PendingWrite::Ram(cmd & 0x1f),
            0xa7 => self.s.ram[0] |= CB_AUX_DISABLE,
            0xa8 => self.s.ram[0] &= !CB_AUX_DISABLE,
            // Interface tests: no clock or data line stuck.
            0xa9 | 0xab => self.push(0x00, false),
            0xaa => {
                self.s.ram[0] |= CB_SYS;
                self.push(0x55, false);
            }
            0xad => self.s.ram[0] |= CB_KBD_DISABLE,
            0xae => self.s.ram[0] &= !CB_KBD_DISABLE,
            // Input port: keyboard not inhibited, colour display.
            0xc0 => self.push(0x80 | 0x20, false),
            0xd0 => self.push(self.s.output_port, false),
            0xd1 => self.s.pending = PendingWrite::OutputPort,
            0xd2 => self.s.pending = PendingWrite::KeyboardOutput,
            0xd3 => self.s.pending = PendingWrite::AuxOutput,
            0xd4 => self.s.pending = PendingWrite::Aux,
            0xdd => self.s.output_port &= !OUT_A20,
            0xdf => self.s.output_port |= OUT_A20,
            0xe0 => self.push(0x00, false),
            // Pulse output lines: a clear bit pulses the line; bit 0 is reset.
            0xf0..=0xff => {
                if cmd & OUT_RESET == 0 {
                    self.control.request(StopRequest::Reset);
                }
            }
            _ => log::debug!("i8042: unhandled controller command {cmd:#04x}"),
        }
    }

    fn write_data(&mut self, v: u8) {
        self.s.status &= !STATUS_CMD;
        let pending = std::mem::take(&mut self.s.pending);
        match pending {
            PendingWrite::Ram(i) => self.s.ram[i as usize % 32] = v,
            PendingWrite::OutputPort => self.write_output_port(v),
            PendingWrite::KeyboardOutput => self.push(v, false),
            PendingWrite::AuxOutput => self.push(v, true),
            PendingWrite::Aux => self.aux_command(v),
            PendingWrite::AuxArg => self.push(ACK, true),
            PendingWrite::KeyboardArg(cmd) => self.keyboard_arg(cmd, v),
            PendingWrite::Keyboard => {
                // Sending to the keyboard enables its interface again.
                self.s.ram[0] &= !CB_KBD_DISABLE;
                self.keyboard_command(v);
            }
        }
    }

    fn keyboard_command(&mut self, v: u8) {
        match v {
            0xed | 0xf0 | 0xf3 => {
                self.push(ACK, false);
                self.s.pending = PendingWrite::KeyboardArg(v);
            }
            0xee => self.push(0xee, false),
            0xf2 => {
                self.push(ACK, false);
                self.push(0xab, false);
                let translated = self.command_byte() & CB_TRANSLATE != 0;
                self.push(if translated { 0x41 } else { 0x83 }, false);
            }
            0xf4 => {
                self.s.scanning = true;
                self.push(ACK, false);
            }
            0xf5 => {
                self.s.scanning = false;
                self.push(ACK, false);
            }
            // Defaults, scan-set-3 key types, and resend (nothing was sent that matters).
            0xf6..=0xfe => self.push(ACK, false),
            0xff => {
                self.s.scan_set = 2;
                self.s.scanning = true;
                self.push(ACK, false);
                self.push(0xaa, false);
            }
            _ => self.push(RESEND, false),
        }
    }

    fn keyboard_arg(&mut self, cmd: u8, v: u8) {
        self.push(ACK, false);
        if cmd == 0xf0 {
            match v {
                0 => self.push(self.s.scan_set, false),
                1..=3 => self.s.scan_set = v,
                _ => {}
            }
        }
    }

    fn aux_command(&mut self, v: u8) {
        self.s.ram[0] &= !CB_AUX_DISABLE;
        match v {
            0xff => {
                self.push(ACK, true);
                self.push(0xaa, true);
                self.push(0x00, true);
            }
            0xf2 => {
                self.push(ACK, true);
                self.push(0x00, true);
            }
            // Status request: stream mode, disabled, resolution 4/mm, 100 samples/s.
            0xe9 => {
                for b in [ACK, 0x00, 0x02, 0x64] {
                    self.push(b, true);
                }
            }
            0xe8 | 0xf3 => {
                self.push(ACK, true);
                self.s.pending = PendingWrite::AuxArg;
            }
            _ => self.push(ACK, true),
        }
    }
}

/// One of the controller's two ports, sharing the controller.
pub struct I8042Port {
    ctl: Arc<Mutex<I8042>>,
    command: bool,
}

impl I8042Port {
    /// The port at absolute address `port`: [`I8042_COMMAND_PORT`] is the status/command
    /// port, anything else the data port.
    pub fn new(ctl: Arc<Mutex<I8042>>, port: u64) -> Self {
        I8042Port {
            ctl,
            command: port == I8042_COMMAND_PORT,
        }
    }

    /// Port 0x60.
    pub fn data(ctl: Arc<Mutex<I8042>>) -> Self {
        I8042Port {
            ctl,
            command: false,
        }
    }

    /// Port 0x64.
    pub fn command(ctl: Arc<Mutex<I8042>>) -> Self {
        I8042Port { ctl, command: true }
    }
}

impl Device for I8042Port {
    fn name(&self) -> &'static str {
        if self.command {
            "i8042-command"
        } else {
            "i8042-data"
        }
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if offset != 0 || data.is_empty() {
            return;
        }
        let mut c = lock(&self.ctl);
        if self.command {
            data[0] = c.status();
        } else {
            data[0] = c.read_data();
            // OBF drops when the byte is taken and rises again for the next one: an edge
            // per byte, which the edge-triggered IRQ 1 needs.
            c.lower_irqs();
        }
        c.update_irq();
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let (0, Some(&v)) = (offset, data.first()) else {
            return;
        };
        let mut c = lock(&self.ctl);
        if self.command {
            c.write_command(v);
        } else {
            c.write_data(v);
        }
        c.update_irq();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irq::test_util::RecordingSink;

    struct Rig {
        data: I8042Port,
        cmd: I8042Port,
        ctl: Arc<Mutex<I8042>>,
        control: Arc<VmControl>,
        sink: Arc<RecordingSink>,
    }

    fn rig() -> Rig {
        let control = Arc::new(VmControl::new());
        let sink = Arc::new(RecordingSink::default());
        let ctl = Arc::new(Mutex::new(I8042::new(
            control.clone(),
            IrqLine::new(sink.clone(), KBD_IRQ),
            IrqLine::new(sink.clone(), AUX_IRQ),
        )));
        Rig {
            data: I8042Port::data(ctl.clone()),
            cmd: I8042Port::new(ctl.clone(), I8042_COMMAND_PORT),
            ctl,
            control,
            sink,
        }
    }

    impl Rig {
        fn status(&mut self) -> u8 {
            let mut b = [0];
            self.cmd.read(0, &mut b);
            b[0]
        }
        fn read(&mut self) -> u8 {
            let mut b = [0];
            self.data.read(0, &mut b);
            b[0]
        }
        fn drain(&mut self) -> Vec<u8> {
            let mut v = Vec::new();
            while self.status() & STATUS_OBF != 0 {
                v.push(self.read());
            }
            v
        }
    }

    #[test]
    fn self_test_interface_test_and_command_byte() {
        let mut r = rig();
        assert_eq!(r.status(), STATUS_CMD | STATUS_UNLOCKED);
        r.cmd.write(0, &[0xaa]);
        assert_eq!(
            r.status() & (STATUS_OBF | STATUS_SYS),
            STATUS_OBF | STATUS_SYS
        );
        assert_eq!(r.read(), 0x55);
        r.cmd.write(0, &[0xab]);
        assert_eq!(r.drain(), vec![0x00]);
        r.cmd.write(0, &[0x60]);
        r.data.write(0, &[0x45]);
        assert_eq!(r.status() & STATUS_CMD, 0, "last write was data");
        r.cmd.write(0, &[0x20]);
        assert_eq!(r.drain(), vec![0x45]);
        r.cmd.write(0, &[0xad]);
        r.cmd.write(0, &[0xa7]);
        r.cmd.write(0, &[0x20]);
        assert_eq!(r.drain(), vec![0x45 | CB_KBD_DISABLE | CB_AUX_DISABLE]);
        r.cmd.write(0, &[0xae]);
        r.cmd.write(0, &[0xa8]);
        r.cmd.write(0, &[0x20]);
        assert_eq!(r.drain(), vec![0x45]);
    }

    #[test]
    fn output_port_a20_and_reset() {
        let mut r = rig();
        r.cmd.write(0, &[0xd0]);
        assert_eq!(r.drain(), vec![OUT_RESET | OUT_A20]);
        r.cmd.write(0, &[0xd1]);
        r.data.write(0, &[0x01]);
        assert!(!lock(&r.ctl).a20_enabled());
        assert_eq!(r.control.take(), None);
        r.cmd.write(0, &[0xdf]);
        assert!(lock(&r.ctl).a20_enabled());
        r.cmd.write(0, &[0xd1]);
        r.data.write(0, &[0x02]);
        assert_eq!(r.control.take(), Some(StopRequest::Reset));
    }

    #[test]
    fn pulse_commands_reset_only_with_bit0_clear() {
        let mut r = rig();
        r.cmd.write(0, &[0xff]);
        r.cmd.write(0, &[0xf1]);
        assert_eq!(r.control.take(), None);
        r.cmd.write(0, &[0xfe]);
        assert_eq!(r.control.take(), Some(StopRequest::Reset));
        r.cmd.write(0, &[0xf0]);
        assert_eq!(r.control.take(), Some(StopRequest::Reset));
    }

    #[test]
    fn keyboard_commands() {
        let mut r = rig();
        r.data.write(0, &[0xff]);
        assert_eq!(r.drain(), vec![ACK, 0xaa]);
        r.data.write(0, &[0xf2]);
        assert_eq!(r.drain(), vec![ACK, 0xab, 0x83]);
        r.data.write(0, &[0xed]);
        r.data.write(0, &[0x07]);
        assert_eq!(r.drain(), vec![ACK, ACK]);
        r.data.write(0, &[0xf0]);
        r.data.write(0, &[0x01]);
        r.data.write(0, &[0xf0]);
        r.data.write(0, &[0x00]);
        assert_eq!(r.drain(), vec![ACK, ACK, ACK, ACK, 0x01]);
        r.data.write(0, &[0xee]);
        r.data.write(0, &[0x12]);
        assert_eq!(r.drain(), vec![0xee, RESEND]);
        assert_eq!(lock(&r.ctl).save_state().scan_set, 1);
    }

    #[test]
    fn aux_path_and_irq_levels() {
        let mut r = rig();
        r.data.write(0, &[0xf4]);
        assert!(r.sink.level(KBD_IRQ), "OBF with keyboard data raises IRQ1");
        assert_eq!(r.read(), ACK);
        assert!(!r.sink.level(KBD_IRQ));
        r.data.write(0, &[0xff]);
        r.sink.events.lock().unwrap().clear();
        assert_eq!(r.read(), ACK);
        assert_eq!(
            *r.sink.events.lock().unwrap(),
            vec![(KBD_IRQ, false), (KBD_IRQ, true)],
            "a new edge for the queued 0xAA"
        );
        assert_eq!(r.read(), 0xaa);
        r.cmd.write(0, &[0xd4]);
        r.data.write(0, &[0xf2]);
        assert_eq!(r.status() & STATUS_AUX_OBF, STATUS_AUX_OBF);
        assert!(r.sink.level(AUX_IRQ));
        assert_eq!(r.drain(), vec![ACK, 0x00]);
        assert!(!r.sink.level(AUX_IRQ));
        r.cmd.write(0, &[0xd3]);
        r.data.write(0, &[0x42]);
        assert_eq!(r.drain(), vec![0x42]);
        // With interrupts off in the command byte, OBF alone raises nothing.
        r.cmd.write(0, &[0x60]);
        r.data.write(0, &[0x00]);
        r.cmd.write(0, &[0xd2]);
        r.data.write(0, &[0x99]);
        assert!(!r.sink.level(KBD_IRQ));
        assert_eq!(r.drain(), vec![0x99]);
    }

    #[test]
    fn queue_is_bounded_and_odd_accesses_are_harmless() {
        let mut r = rig();
        for _ in 0..100 {
            r.cmd.write(0, &[0xaa]);
        }
        assert_eq!(r.drain().len(), QUEUE_MAX);
        assert_eq!(r.read(), 0);
        let mut b = [0u8; 4];
        r.cmd.read(0, &mut b);
        assert_eq!(&b[1..], &[0xff; 3]);
        r.cmd.read(3, &mut b);
        assert_eq!(b, [0xff; 4]);
        r.cmd.write(1, &[0xfe]);
        r.cmd.write(0, &[]);
        assert_eq!(r.control.take(), None);
    }

    #[test]
    fn save_and_restore() {
        let mut r = rig();
        r.data.write(0, &[0xff]);
        r.cmd.write(0, &[0x60]);
        let s = lock(&r.ctl).save_state();
        assert_eq!(s.queue.len(), 2);
        assert_eq!(s.pending, PendingWrite::Ram(0));
        r.drain();
        r.data.write(0, &[0x00]);
        assert_ne!(lock(&r.ctl).save_state(), s);
        lock(&r.ctl).restore_state(&s);
        assert_eq!(lock(&r.ctl).save_state(), s);
        assert!(r.sink.level(KBD_IRQ));
        assert_eq!(r.drain(), vec![ACK, 0xaa]);
    }

    #[test]
    fn random_accesses_never_panic() {
        let r = rig();
        let mut ports = [r.data, r.cmd];
        crate::test_util::random_accesses(2, |s| {
            s.apply(&mut ports[(s.x >> 5) as usize % 2]);
        });
    }
}
