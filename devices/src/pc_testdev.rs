//! QEMU's `pc-testdev` (hw/misc/pc-testdev.c), the ISA test device kvm-unit-tests and other
//! QEMU-era test kernels poke at:
//!
//! | where | what |
//! |---|---|
//! | I/O 0xe0–0xe3 | a 32-bit scratch register, any width at any byte offset |
//! | I/O 0xe4–0xe7 | "flush page": a 32-bit write names a guest-physical page |
//! | I/O 0xe8–0xeb | the same scratch register, accessed byte by byte |
//! | I/O 0x2000–0x2017 | IRQ line control: writing n≠0/0 at 0x2000+i raises/lowers line i |
//! | MMIO 0xff000000 +64 KiB | scratch memory |
//!
//! The flush page exists so that KVM can be made to drop its host mappings of a page
//! (QEMU mprotects the host page). Guest-visible state does not change — TCG's soft TLB,
//! like this interpreter's, is untouched by it — so the write is accepted and counted.

use std::sync::{Arc, Mutex};

use crate::bus::{lock, Device};
use crate::irq::IrqSink;

pub const TESTDEV_SCRATCH_PORT: u64 = 0xe0;
pub const TESTDEV_FLUSH_PORT: u64 = 0xe4;
pub const TESTDEV_BYTE_PORT: u64 = 0xe8;
pub const TESTDEV_IRQ_PORT: u64 = 0x2000;
pub const TESTDEV_IRQ_LINES: u64 = 24;
pub const TESTDEV_IOMEM_BASE: u64 = 0xff00_0000;
pub const TESTDEV_IOMEM_LEN: u64 = 0x1_0000;

pub struct PcTestdev {
    scratch: u32,
    iomem: Vec<u8>,
    flushes: u64,
    irq: Arc<dyn IrqSink>,
}

impl PcTestdev {
    pub fn new(irq: Arc<dyn IrqSink>) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(PcTestdev {
            scratch: 0,
            iomem: vec![0; TESTDEV_IOMEM_LEN as usize],
            flushes: 0,
            irq,
        }))
    }

    /// Flush-page writes seen so far.
    pub fn flushes(&self) -> u64 {
        self.flushes
    }

    fn scratch_read(&self, offset: u64, data: &mut [u8]) {
        let b = self.scratch.to_le_bytes();
        for (i, d) in data.iter_mut().enumerate() {
            *d = b.get((offset & 3) as usize + i).copied().unwrap_or(0);
        }
    }

    fn scratch_write(&mut self, offset: u64, data: &[u8]) {
        let mut b = self.scratch.to_le_bytes();
        for (i, d) in data.iter().enumerate() {
            if let Some(slot) = b.get_mut((offset & 3) as usize + i) {
                *slot = *d;
            }
        }
        self.scratch = u32::from_le_bytes(b);
    }
}

/// Which of the device's ranges a bus mapping is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestdevRange {
    Scratch,
    Flush,
    ScratchBytes,
    IrqLines,
    IoMem,
}

/// One range of the device on a bus.
pub struct PcTestdevRange {
    dev: Arc<Mutex<PcTestdev>>,
    range: TestdevRange,
}

impl PcTestdevRange {
    pub fn new(dev: Arc<Mutex<PcTestdev>>, range: TestdevRange) -> Self {
        PcTestdevRange { dev, range }
    }
}

impl Device for PcTestdevRange {
    fn name(&self) -> &'static str {
        "pc-testdev"
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let d = lock(&self.dev);
        match self.range {
            TestdevRange::Scratch | TestdevRange::ScratchBytes => d.scratch_read(offset, data),
            TestdevRange::Flush | TestdevRange::IrqLines => data.fill(0),
            TestdevRange::IoMem => {
                for (i, b) in data.iter_mut().enumerate() {
                    *b = d.iomem.get(offset as usize + i).copied().unwrap_or(0);
                }
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut d = lock(&self.dev);
        match self.range {
            TestdevRange::Scratch | TestdevRange::ScratchBytes => d.scratch_write(offset, data),
            TestdevRange::Flush => d.flushes += 1,
            TestdevRange::IrqLines => {
                let level = data.iter().any(|&b| b != 0);
                let irq = d.irq.clone();
                drop(d);
                irq.set_irq(offset as u32, level);
            }
            TestdevRange::IoMem => {
                for (i, b) in data.iter().enumerate() {
                    if let Some(slot) = d.iomem.get_mut(offset as usize + i) {
                        *slot = *b;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irq::test_util::RecordingSink;

    #[test]
    fn scratch_is_shared_by_both_port_ranges() {
        let sink = Arc::new(RecordingSink::default());
        let dev = PcTestdev::new(sink);
        let mut w = PcTestdevRange::new(dev.clone(), TestdevRange::Scratch);
        let mut b = PcTestdevRange::new(dev.clone(), TestdevRange::ScratchBytes);
        w.write(0, &0x1234_5678u32.to_le_bytes());
        let mut x = [0u8; 4];
        b.read(0, &mut x);
        assert_eq!(u32::from_le_bytes(x), 0x1234_5678);
        b.write(2, &[0xab]);
        let mut y = [0u8; 2];
        w.read(2, &mut y);
        assert_eq!(y, [0xab, 0x12]);
    }

    #[test]
    fn irq_lines_and_iomem() {
        let sink = Arc::new(RecordingSink::default());
        let dev = PcTestdev::new(sink.clone());
        let mut irq = PcTestdevRange::new(dev.clone(), TestdevRange::IrqLines);
        irq.write(14, &[1]);
        assert!(sink.level(14));
        irq.write(14, &[0]);
        assert!(!sink.level(14));
        let mut m = PcTestdevRange::new(dev.clone(), TestdevRange::IoMem);
        m.write(0xfff8, &0xdead_beef_cafe_f00du64.to_le_bytes());
        let mut r = [0u8; 8];
        m.read(0xfff8, &mut r);
        assert_eq!(u64::from_le_bytes(r), 0xdead_beef_cafe_f00d);
        let mut f = PcTestdevRange::new(dev.clone(), TestdevRange::Flush);
        f.write(0, &0x1000u32.to_le_bytes());
        assert_eq!(lock(&dev).flushes(), 1);
    }
}
