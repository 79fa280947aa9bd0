//! QEMU's `pci-testdev` (1b36:0005, hw/misc/pci-testdev.c and docs/specs/pci-testdev.rst):
//! BAR0 is 4 KiB of memory, BAR1 256 bytes of I/O. Each BAR starts with a header
//!
//! ```text
//! u8 test (write: start test n)  u8 width  u8 pad[2]  u32 offset  u8 data  u8 pad[3]
//! u32 count  char name[]
//! ```
//!
//! Tests 0–2 are "no-eventfd", "wildcard-eventfd" and "datamatch-eventfd": once a test is
//! started, a write at its `offset` (of `width` bytes and, except for the wildcard test, of
//! value `data`) increments `count`. Memory tests live at offsets 2048+n, I/O tests at
//! 128+3+n, as QEMU numbers them. Reads return one header byte per access, 0 past it.

use crate::pci::{Bar, PciConfig, PciFunction, PCI_COMMAND_IO, PCI_COMMAND_MEMORY};

pub const PCI_TESTDEV_VENDOR: u16 = 0x1b36;
pub const PCI_TESTDEV_DEVICE: u16 = 0x0005;
pub const PCI_TESTDEV_MEM_SIZE: u64 = 0x1000;
pub const PCI_TESTDEV_IO_SIZE: u64 = 0x100;

const TESTS_PER_BAR: usize = 3;
const NAMES: [&str; TESTS_PER_BAR] = ["no-eventfd", "wildcard-eventfd", "datamatch-eventfd"];
const DATAMATCH: u8 = 0xfa;
const NOMATCH: u8 = 0xce;

struct Test {
    hdr: Vec<u8>,
    offset: u64,
    match_data: bool,
    data: u8,
}

impl Test {
    fn new(index: usize) -> Self {
        let mem = index < TESTS_PER_BAR;
        let kind = if mem { "mmio" } else { "portio" };
        let which = index % TESTS_PER_BAR;
        let match_data = which != 1;
        let offset = if mem { 2048 } else { 128 } + index as u64;
        let data = if match_data { DATAMATCH } else { NOMATCH };
        let mut hdr = vec![0u8; 16];
        hdr[0] = index as u8;
        hdr[1] = 1;
        hdr[4..8].copy_from_slice(&(offset as u32).to_le_bytes());
        hdr[8] = data;
        hdr.extend_from_slice(format!("{kind}-{}", NAMES[which]).as_bytes());
        hdr.push(0);
        Test {
            hdr,
            offset,
            match_data,
            data,
        }
    }

    fn bump(&mut self) {
        let c = u32::from_le_bytes([self.hdr[12], self.hdr[13], self.hdr[14], self.hdr[15]]);
        self.hdr[12..16].copy_from_slice(&c.wrapping_add(1).to_le_bytes());
    }
}

pub struct PciTestdev {
    config: PciConfig,
    tests: Vec<Test>,
    current: Option<usize>,
}

impl PciTestdev {
    /// With BAR0 at `mem_base` and BAR1 at `io_base`, decoding enabled.
    pub fn new(mem_base: u64, io_base: u64) -> Self {
        let mut c = PciConfig::new(
            PCI_TESTDEV_VENDOR,
            PCI_TESTDEV_DEVICE,
            0,
            [0xff, 0x00, 0x00],
            0,
        );
        c.set16(0x2c, 0x1af4);
        c.set16(0x2e, 0x1100);
        c.set_bar(
            0,
            Bar {
                size: PCI_TESTDEV_MEM_SIZE,
                io: false,
            },
            mem_base,
        );
        c.set_bar(
            1,
            Bar {
                size: PCI_TESTDEV_IO_SIZE,
                io: true,
            },
            io_base,
        );
        c.set16(0x04, PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
        PciTestdev {
            config: c,
            tests: (0..2 * TESTS_PER_BAR).map(Test::new).collect(),
            current: None,
        }
    }
}

impl PciFunction for PciTestdev {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn bar_read(&mut self, _bar: usize, offset: u64, data: &mut [u8]) {
        let hdr = self.current.and_then(|t| self.tests.get(t)).map(|t| &t.hdr);
        for (i, b) in data.iter_mut().enumerate() {
            // QEMU answers byte by byte and only while the access ends inside the header.
            let off = offset as usize + i;
            *b = hdr.filter(|h| off + 1 < h.len()).map_or(0, |h| h[off]);
        }
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        let kind = if bar == 0 { 0 } else { 1 };
        if offset == 0 {
            let v = data.first().copied().unwrap_or(0) as usize;
            self.current = (v < TESTS_PER_BAR).then_some(kind * TESTS_PER_BAR + v);
            if let Some(t) = self.current.and_then(|t| self.tests.get_mut(t)) {
                t.hdr[12..16].fill(0);
            }
            return;
        }
        let Some(t) = self.current.and_then(|t| self.tests.get_mut(t)) else {
            return;
        };
        if offset != t.offset {
            return;
        }
        if t.match_data && (data.len() != 1 || data[0] != t.data) {
            return;
        }
        t.bump();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_hdr(d: &mut PciTestdev, bar: usize, off: u64, n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| {
                let mut b = [0u8];
                d.bar_read(bar, off + i as u64, &mut b);
                b[0]
            })
            .collect()
    }

    #[test]
    fn ids_and_bars() {
        let d = PciTestdev::new(0xfeb0_0000, 0xc000);
        assert_eq!(d.config().get32(0), 0x0005_1b36);
        assert_eq!(d.config().get32(0x10), 0xfeb0_0000);
        assert_eq!(d.config().get32(0x14), 0xc001);
    }

    #[test]
    fn datamatch_and_wildcard_tests_count_writes() {
        let mut d = PciTestdev::new(0xfeb0_0000, 0xc000);
        for (bar, base) in [(0usize, 2048u64), (1, 131)] {
            for t in 0..3u8 {
                d.bar_write(bar, 0, &[t]);
                let h = read_hdr(&mut d, bar, 0, 16);
                assert_eq!(h[1], 1, "width");
                let off = u32::from_le_bytes(h[4..8].try_into().unwrap()) as u64;
                assert_eq!(off, base + t as u64);
                let data = h[8];
                d.bar_write(bar, off, &[data]);
                d.bar_write(bar, off, &[data]);
                // Counted only by the wildcard test.
                d.bar_write(bar, off, &[data ^ 1]);
                d.bar_write(bar, off + 1, &[data]); // another offset: never counted
                if t == 1 {
                    assert_eq!(data, 0xce);
                }
                let h = read_hdr(&mut d, bar, 0, 16);
                let count = u32::from_le_bytes(h[12..16].try_into().unwrap());
                assert_eq!(count, if t == 1 { 3 } else { 2 }, "bar {bar} test {t}");
            }
        }
        d.bar_write(0, 0, &[1]);
        let name = read_hdr(&mut d, 0, 16, 21);
        assert_eq!(&name[..20], b"mmio-wildcard-eventf");
        // No such test: reads 0.
        d.bar_write(0, 0, &[7]);
        assert_eq!(read_hdr(&mut d, 0, 0, 2), [0, 0]);
    }
}
