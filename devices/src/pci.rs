//! PCI bus 0 with configuration mechanism #1 (0xCF8 address, 0xCFC–0xCFF data), and the
//! address windows through which the functions' BARs are decoded.
//!
//! There is no firmware to enumerate the bus, so functions come with their BARs assigned and
//! I/O and memory decoding enabled, as a BIOS would leave them. The guest may still size
//! (write all ones) and move BARs: decoding follows the BAR registers and the command
//! register on every access, through [`PciWindow`]s registered on the PIO and MMIO buses.
//!
//! 0xCF9, inside the data range's neighbour, is the chipset's reset control register on a
//! PIIX: byte accesses there go to the device handed to [`PciConfigPorts::new`].

use std::sync::{Arc, Mutex};

use crate::bus::{lock, Device};

pub const PCI_CONFIG_ADDRESS: u64 = 0xcf8;
pub const PCI_CONFIG_PORTS_LEN: u64 = 8;
/// Where BARs are placed and decoded: the top of the 32-bit PCI hole below the IOAPIC, and
/// the upper half of the I/O space.
pub const PCI_MMIO_WINDOW: (u64, u64) = (0xe000_0000, 0xfec0_0000 - 0xe000_0000);
pub const PCI_IO_WINDOW: (u64, u64) = (0xc000, 0x4000);

pub const PCI_COMMAND_IO: u16 = 1 << 0;
pub const PCI_COMMAND_MEMORY: u16 = 1 << 1;

/// A BAR: its size (a power of two) and whether it is an I/O BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    pub size: u64,
    pub io: bool,
}

/// A function's 256-byte configuration header with write masks.
#[derive(Clone)]
pub struct PciConfig {
    pub bytes: [u8; 256],
    wmask: [u8; 256],
    pub bars: [Option<Bar>; 6],
}

impl PciConfig {
    /// A type-0 header: IDs, revision, class code (base, sub, prog-if), header type.
    pub fn new(vendor: u16, device: u16, revision: u8, class: [u8; 3], header_type: u8) -> Self {
        let mut c = PciConfig {
            bytes: [0; 256],
            wmask: [0; 256],
            bars: [None; 6],
        };
        c.set16(0x00, vendor);
        c.set16(0x02, device);
        c.bytes[0x08] = revision;
        c.bytes[0x09] = class[2];
        c.bytes[0x0a] = class[1];
        c.bytes[0x0b] = class[0];
        c.bytes[0x0e] = header_type;
        // Command: I/O, memory, bus master, INTx disable are writable.
        c.wmask[0x04] = 0x07;
        c.wmask[0x05] = 0x04;
        // Interrupt line is scratch for the OS.
        c.wmask[0x3c] = 0xff;
        c
    }

    pub fn set16(&mut self, off: usize, v: u16) {
        self.bytes[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }

    pub fn set32(&mut self, off: usize, v: u32) {
        self.bytes[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    pub fn get32(&self, off: usize) -> u32 {
        u32::from_le_bytes([
            self.bytes[off],
            self.bytes[off + 1],
            self.bytes[off + 2],
            self.bytes[off + 3],
        ])
    }

    pub fn command(&self) -> u16 {
        u16::from_le_bytes([self.bytes[4], self.bytes[5]])
    }

    /// Declares BAR `n` of `size` bytes (a power of two) at `addr`.
    pub fn set_bar(&mut self, n: usize, bar: Bar, addr: u64) {
        let flags = if bar.io { 1 } else { 0 };
        let mask = !(bar.size.max(if bar.io { 4 } else { 16 }) as u32 - 1);
        let off = 0x10 + 4 * n;
        self.set32(off, (addr as u32 & mask) | flags);
        self.wmask[off..off + 4].copy_from_slice(&mask.to_le_bytes());
        self.bars[n] = Some(bar);
    }

    /// The base of BAR `n` if it is set up and decoding is on for its kind.
    pub fn bar_base(&self, n: usize) -> Option<(Bar, u64)> {
        let bar = self.bars[n]?;
        let raw = self.get32(0x10 + 4 * n) as u64;
        let enabled = if bar.io {
            PCI_COMMAND_IO
        } else {
            PCI_COMMAND_MEMORY
        };
        if self.command() & enabled == 0 {
            return None;
        }
        let base = if bar.io { raw & !3 } else { raw & !0xf };
        (base != 0).then_some((bar, base))
    }

    pub fn read(&self, off: usize, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.bytes.get(off + i).copied().unwrap_or(0xff);
        }
    }

    pub fn write(&mut self, off: usize, data: &[u8]) {
        for (i, v) in data.iter().enumerate() {
            if let (Some(b), Some(m)) = (self.bytes.get_mut(off + i), self.wmask.get(off + i)) {
                *b = (*b & !m) | (v & m);
            }
        }
    }
}

/// A PCI function: its configuration header and its BARs' registers.
pub trait PciFunction: Send {
    fn config(&self) -> &PciConfig;
    fn config_mut(&mut self) -> &mut PciConfig;
    fn bar_read(&mut self, _bar: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn bar_write(&mut self, _bar: usize, _offset: u64, _data: &[u8]) {}
}

/// A function with nothing behind its header (host bridge, ISA bridge).
pub struct PlainFunction(pub PciConfig);

impl PciFunction for PlainFunction {
    fn config(&self) -> &PciConfig {
        &self.0
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.0
    }
}

/// Bus 0's functions by device/function number.
#[derive(Default)]
pub struct PciBus {
    functions: Vec<(u8, Box<dyn PciFunction>)>,
}

impl PciBus {
    pub fn new() -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(PciBus::default()))
    }

    /// Adds a function at `devfn` (device << 3 | function); a taken slot is an error.
    pub fn add(&mut self, devfn: u8, f: Box<dyn PciFunction>) -> Result<(), String> {
        if self.functions.iter().any(|(d, _)| *d == devfn) {
            return Err(format!(
                "PCI slot {:02x}.{} is taken",
                devfn >> 3,
                devfn & 7
            ));
        }
        self.functions.push((devfn, f));
        Ok(())
    }

    fn function(&mut self, devfn: u8) -> Option<&mut Box<dyn PciFunction>> {
        self.functions
            .iter_mut()
            .find(|(d, _)| *d == devfn)
            .map(|(_, f)| f)
    }

    /// Finds the function and BAR decoding `addr`, with the offset into the BAR.
    fn decode(&mut self, io: bool, addr: u64) -> Option<(&mut Box<dyn PciFunction>, usize, u64)> {
        for (_, f) in self.functions.iter_mut() {
            let hit = (0..6).find_map(|n| {
                let (bar, base) = f.config().bar_base(n)?;
                (bar.io == io && addr >= base && addr - base < bar.size).then(|| (n, addr - base))
            });
            if let Some((n, off)) = hit {
                return Some((f, n, off));
            }
        }
        None
    }
}

/// 0xCF8–0xCFF: CONFIG_ADDRESS (32-bit accesses at 0xCF8), CONFIG_DATA (any width at
/// 0xCFC–0xCFF), and the reset control register at 0xCF9 for byte accesses.
pub struct PciConfigPorts {
    bus: Arc<Mutex<PciBus>>,
    address: u32,
    reset: Box<dyn Device>,
}

impl PciConfigPorts {
    pub fn new(bus: Arc<Mutex<PciBus>>, reset: Box<dyn Device>) -> Self {
        PciConfigPorts {
            bus,
            address: 0,
            reset,
        }
    }

    /// The function and register CONFIG_ADDRESS selects, if enabled and on bus 0.
    fn target(&self, data_offset: u64) -> Option<(u8, usize)> {
        let a = self.address;
        if a & 0x8000_0000 == 0 || (a >> 16) & 0xff != 0 {
            return None;
        }
        Some((
            ((a >> 8) & 0xff) as u8,
            ((a & 0xfc) as u64 + data_offset) as usize,
        ))
    }
}

impl Device for PciConfigPorts {
    fn name(&self) -> &'static str {
        "pci-config"
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match offset {
            0 if data.len() == 4 => data.copy_from_slice(&self.address.to_le_bytes()),
            1 if data.len() == 1 => self.reset.read(0, data),
            4..=7 => match self.target(offset - 4) {
                Some((devfn, reg)) => match lock(&self.bus).function(devfn) {
                    Some(f) => f.config().read(reg, data),
                    None => data.fill(0xff),
                },
                None => data.fill(0xff),
            },
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match offset {
            0 if data.len() == 4 => {
                self.address =
                    u32::from_le_bytes([data[0], data[1], data[2], data[3]]) & 0x80ff_fffc;
            }
            1 if data.len() == 1 => self.reset.write(0, data),
            4..=7 => {
                if let Some((devfn, reg)) = self.target(offset - 4) {
                    if let Some(f) = lock(&self.bus).function(devfn) {
                        f.config_mut().write(reg, data);
                    }
                }
            }
            _ => {}
        }
    }
}

/// An address window on the PIO or MMIO bus whose accesses go to whichever BAR decodes them.
pub struct PciWindow {
    bus: Arc<Mutex<PciBus>>,
    base: u64,
    io: bool,
}

impl PciWindow {
    pub fn new(bus: Arc<Mutex<PciBus>>, base: u64, io: bool) -> Self {
        PciWindow { bus, base, io }
    }
}

impl Device for PciWindow {
    fn name(&self) -> &'static str {
        if self.io {
            "pci-io"
        } else {
            "pci-mmio"
        }
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let mut bus = lock(&self.bus);
        match bus.decode(self.io, self.base + offset) {
            Some((f, n, off)) => f.bar_read(n, off, data),
            None => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut bus = lock(&self.bus);
        if let Some((f, n, off)) = bus.decode(self.io, self.base + offset) {
            f.bar_write(n, off, data);
        }
    }
}

/// The i440FX host bridge (00.0) and the PIIX3 ISA bridge (01.0), as on QEMU's `pc`.
pub fn add_chipset(bus: &mut PciBus) -> Result<(), String> {
    let host = PciConfig::new(0x8086, 0x1237, 0x02, [0x06, 0x00, 0x00], 0x00);
    bus.add(0x00, Box::new(PlainFunction(host)))?;
    let mut isa = PciConfig::new(0x8086, 0x7000, 0x00, [0x06, 0x01, 0x00], 0x80);
    // Memory and I/O decoding are always on for the ISA bridge.
    isa.set16(0x04, PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
    bus.add(0x08, Box::new(PlainFunction(isa)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Bus;

    struct Recorder(Arc<Mutex<Vec<u8>>>);
    impl Device for Recorder {
        fn name(&self) -> &'static str {
            "rec"
        }
        fn read(&mut self, _: u64, data: &mut [u8]) {
            data.fill(0x5a);
        }
        fn write(&mut self, _: u64, data: &[u8]) {
            self.0.lock().unwrap().extend_from_slice(data);
        }
    }

    fn ports() -> (Bus, Arc<Mutex<Vec<u8>>>) {
        let bus = PciBus::new();
        add_chipset(&mut lock(&bus)).unwrap();
        let rec = Arc::new(Mutex::new(Vec::new()));
        let mut pio = Bus::new();
        let p = PciConfigPorts::new(bus, Box::new(Recorder(rec.clone())));
        pio.insert(
            PCI_CONFIG_ADDRESS,
            PCI_CONFIG_PORTS_LEN,
            Arc::new(Mutex::new(p)),
        )
        .unwrap();
        (pio, rec)
    }

    fn cfg_read32(pio: &Bus, devfn: u8, reg: u8) -> u32 {
        let a = 0x8000_0000u32 | ((devfn as u32) << 8) | reg as u32;
        pio.write(0xcf8, &a.to_le_bytes());
        let mut d = [0u8; 4];
        pio.read(0xcfc, &mut d);
        u32::from_le_bytes(d)
    }

    #[test]
    fn host_bridge_ids_and_absent_slots() {
        let (pio, _) = ports();
        assert_eq!(cfg_read32(&pio, 0, 0), 0x1237_8086);
        assert_eq!(cfg_read32(&pio, 0, 8) >> 8, 0x06_0000);
        assert_eq!(cfg_read32(&pio, 0x08, 0), 0x7000_8086);
        assert_eq!(cfg_read32(&pio, 0x18, 0), 0xffff_ffff);
        // Byte and word reads of the data port at an offset.
        let mut w = [0u8; 2];
        pio.write(0xcf8, &0x8000_0000u32.to_le_bytes());
        pio.read(0xcfe, &mut w);
        assert_eq!(u16::from_le_bytes(w), 0x1237);
        let mut b = [0u8; 1];
        pio.read(0xcfd, &mut b);
        assert_eq!(b[0], 0x80);
        // CONFIG_ADDRESS reads back; disabled accesses read all ones.
        let mut a = [0u8; 4];
        pio.read(0xcf8, &mut a);
        assert_eq!(u32::from_le_bytes(a), 0x8000_0000);
        pio.write(0xcf8, &0u32.to_le_bytes());
        pio.read(0xcfc, &mut a);
        assert_eq!(u32::from_le_bytes(a), 0xffff_ffff);
    }

    #[test]
    fn byte_access_at_cf9_is_the_reset_register() {
        let (pio, rec) = ports();
        pio.write(0xcf9, &[0x06]);
        assert_eq!(*rec.lock().unwrap(), vec![0x06]);
        let mut b = [0u8];
        pio.read(0xcf9, &mut b);
        assert_eq!(b[0], 0x5a);
        // A dword write at 0xCF8 does not touch it.
        pio.write(0xcf8, &0x8000_0000u32.to_le_bytes());
        assert_eq!(rec.lock().unwrap().len(), 1);
    }

    #[test]
    fn bar_sizing_and_decoding_follow_the_registers() {
        let mut c = PciConfig::new(1, 2, 0, [0xff, 0, 0], 0);
        c.set_bar(
            0,
            Bar {
                size: 0x1000,
                io: false,
            },
            0xfeb0_0000,
        );
        c.set16(4, PCI_COMMAND_MEMORY);
        assert_eq!(
            c.bar_base(0),
            Some((
                Bar {
                    size: 0x1000,
                    io: false
                },
                0xfeb0_0000
            ))
        );
        c.write(0x10, &[0xff; 4]);
        assert_eq!(c.get32(0x10), 0xffff_f000);
        c.write(0x10, &0xfea0_0000u32.to_le_bytes());
        assert_eq!(c.bar_base(0).map(|b| b.1), Some(0xfea0_0000));
        c.write(4, &[0]);
        assert_eq!(c.bar_base(0), None);
    }
}
