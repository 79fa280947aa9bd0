//! The two chipset reset registers: System Control Port A (0x92, also "fast A20") and the
//! Reset Control Register (0xCF9).
//!
//! Both are single 8-bit ports: register each with length 1. A wider access uses only its
//! first byte (the neighbouring ports belong to other devices: 0xCF8 and 0xCFC are the PCI
//! configuration ports) and reads 0xff above it.

use std::sync::Arc;

use crate::bus::Device;
use crate::control::{StopRequest, VmControl};

pub const PORT92: u64 = 0x92;
pub const RESET_CONTROL_PORT: u64 = 0xcf9;

const P92_RESET: u8 = 0x01;
const P92_A20: u8 = 0x02;

/// RCR bit 2: perform the reset selected by bits 1 (system vs CPU) and 3 (full).
const RCR_RESET: u8 = 0x04;
const RCR_KEPT: u8 = 0x0a;

fn read_first(data: &mut [u8], offset: u64, v: u8) {
    data.fill(0xff);
    if offset == 0 {
        if let Some(b) = data.first_mut() {
            *b = v;
        }
    }
}

fn first_written(data: &[u8], offset: u64) -> Option<u8> {
    if offset == 0 {
        data.first().copied()
    } else {
        None
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Port92State {
    pub value: u8,
}

pub struct Port92 {
    s: Port92State,
    control: Arc<VmControl>,
}

impl Port92 {
    pub fn new(control: Arc<VmControl>) -> Self {
        Port92 {
            s: Port92State::default(),
            control,
        }
    }

    pub fn a20_enabled(&self) -> bool {
        self.s.value & P92_A20 != 0
    }

    pub fn save_state(&self) -> Port92State {
        self.s.clone()
    }

    pub fn restore_state(&mut self, s: &Port92State) {
        self.s = s.clone();
    }
}

impl Device for Port92 {
    fn name(&self) -> &'static str {
        "port92"
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) {
        read_first(data, offset, self.s.value);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(v) = first_written(data, offset) else {
            return;
        };
        let old = self.s.value;
        self.s.value = v;
        if v & P92_RESET != 0 && old & P92_RESET == 0 {
            self.control.request(StopRequest::Reset);
            // The reset clears the bit, so that the next 0→1 after it resets again.
            self.s.value &= !P92_RESET;
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ResetControlState {
    pub value: u8,
}

pub struct ResetControl {
    s: ResetControlState,
    control: Arc<VmControl>,
}

impl ResetControl {
    pub fn new(control: Arc<VmControl>) -> Self {
        ResetControl {
            s: ResetControlState::default(),
            control,
        }
    }

    pub fn save_state(&self) -> ResetControlState {
        self.s.clone()
    }

    pub fn restore_state(&mut self, s: &ResetControlState) {
        self.s = s.clone();
    }
}

impl Device for ResetControl {
    fn name(&self) -> &'static str {
        "reset-control"
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) {
        read_first(data, offset, self.s.value);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(v) = first_written(data, offset) else {
            return;
        };
        self.s.value = v & RCR_KEPT;
        if v & RCR_RESET != 0 {
            self.control.request(StopRequest::Reset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port92_a20_and_reset_on_rising_bit0() {
        let c = Arc::new(VmControl::new());
        let mut p = Port92::new(c.clone());
        p.write(0, &[P92_A20]);
        assert!(p.a20_enabled());
        let mut b = [0u8; 2];
        p.read(0, &mut b);
        assert_eq!(b, [P92_A20, 0xff]);
        assert_eq!(c.take(), None);
        p.write(0, &[P92_A20 | P92_RESET]);
        assert_eq!(c.take(), Some(StopRequest::Reset));
        p.read(0, &mut b[..1]);
        assert_eq!(b[0], P92_A20);
        p.write(1, &[P92_RESET]);
        p.write(0, &[]);
        assert_eq!(c.take(), None);
    }

    #[test]
    fn cf9_resets_on_bit2_and_keeps_bits_1_3() {
        let c = Arc::new(VmControl::new());
        let mut r = ResetControl::new(c.clone());
        r.write(0, &[0x0a]);
        assert_eq!(c.take(), None);
        let mut b = [0u8; 4];
        r.read(0, &mut b);
        assert_eq!(b, [0x0a, 0xff, 0xff, 0xff]);
        r.write(0, &[0x06, 0, 0, 0]);
        assert_eq!(c.take(), Some(StopRequest::Reset));
        r.read(0, &mut b[..1]);
        assert_eq!(b[0], 0x02);
    }

    #[test]
    fn save_and_restore() {
        let c = Arc::new(VmControl::new());
        let mut p = Port92::new(c.clone());
        let mut r = ResetControl::new(c);
        p.write(0, &[0x02]);
        r.write(0, &[0x08]);
        let (ps, rs) = (p.save_state(), r.save_state());
        p.write(0, &[0x00]);
        r.write(0, &[0x00]);
        assert_ne!((p.save_state(), r.save_state()), (ps.clone(), rs.clone()));
        p.restore_state(&ps);
        r.restore_state(&rs);
        assert_eq!((p.save_state(), r.save_state()), (ps, rs));
    }
}
