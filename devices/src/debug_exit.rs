//! isa-debug-exit (QEMU's test device): a write of `v` ends the machine with process exit
//! status `(v << 1) | 1`.

use std::sync::Arc;

use crate::bus::Device;
use crate::control::{StopRequest, VmControl};

pub const DEBUG_EXIT_PORT: u64 = 0xf4;

pub struct DebugExit {
    control: Arc<VmControl>,
}

impl DebugExit {
    pub fn new(control: Arc<VmControl>) -> Self {
        DebugExit { control }
    }
}

/// The process exit status QEMU gives for a written value (truncated to what a process
/// status can hold, as QEMU's `exit()` does).
pub fn exit_status(value: u32) -> i32 {
    (((value as u64) << 1) | 1) as u8 as i32
}

impl Device for DebugExit {
    fn name(&self) -> &'static str {
        "isa-debug-exit"
    }
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn write(&mut self, _offset: u64, data: &[u8]) {
        let mut v = [0u8; 4];
        let n = data.len().min(4);
        v[..n].copy_from_slice(&data[..n]);
        self.control
            .request(StopRequest::DebugExit(exit_status(u32::from_le_bytes(v))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_value_shifted_with_low_bit() {
        assert_eq!(exit_status(0), 1);
        assert_eq!(exit_status(1), 3);
        assert_eq!(exit_status(0x7f), 255);
        let c = Arc::new(VmControl::new());
        let mut d = DebugExit::new(c.clone());
        d.write(0, &[2, 0, 0, 0]);
        assert_eq!(c.take(), Some(StopRequest::DebugExit(5)));
    }
}
