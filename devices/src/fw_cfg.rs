//! QEMU's firmware configuration interface (fw_cfg), legacy I/O flavour: a 16-bit selector
//! at [`FW_CFG_SELECTOR_PORT`] and a byte-wide data port at [`FW_CFG_DATA_PORT`] (register
//! the device at the selector port with length [`FW_CFG_PORT_LEN`]).
//!
//! Writing the selector picks an item and rewinds it; each data read returns the next byte
//! (0 past the end). Items are what test kernels written for QEMU's `pc` machine read: the
//! "QEMU" signature, the interface ID (bit 0: traditional interface; no DMA), RAM size, CPU
//! counts, and named files listed in the big-endian directory at key 0x19 (`etc/e820`).
//! The data port ignores writes, as QEMU has since 2.4.

use std::collections::BTreeMap;

use crate::bus::Device;

pub const FW_CFG_SELECTOR_PORT: u64 = 0x510;
pub const FW_CFG_DATA_PORT: u64 = 0x511;
pub const FW_CFG_PORT_LEN: u64 = 2;

pub const FW_CFG_SIGNATURE: u16 = 0x00;
pub const FW_CFG_ID: u16 = 0x01;
pub const FW_CFG_UUID: u16 = 0x02;
pub const FW_CFG_RAM_SIZE: u16 = 0x03;
pub const FW_CFG_NOGRAPHIC: u16 = 0x04;
pub const FW_CFG_NB_CPUS: u16 = 0x05;
pub const FW_CFG_MACHINE_ID: u16 = 0x06;
pub const FW_CFG_MAX_CPUS: u16 = 0x0f;
pub const FW_CFG_NUMA: u16 = 0x0d;
pub const FW_CFG_BOOT_MENU: u16 = 0x0e;
pub const FW_CFG_FILE_DIR: u16 = 0x19;
/// Files get keys from here on, in directory order.
pub const FW_CFG_FILE_FIRST: u16 = 0x20;
/// Length of a file name in a directory entry, NUL included.
pub const FW_CFG_MAX_FILE_PATH: usize = 56;

/// An e820 entry as QEMU's "etc/e820" file holds it (packed, little endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub len: u64,
    pub kind: u32,
}

#[derive(Default)]
pub struct FwCfg {
    items: BTreeMap<u16, Vec<u8>>,
    files: Vec<(String, u16)>,
    selected: u16,
    offset: usize,
}

impl FwCfg {
    /// The standard items of a `pc` machine with `ram` bytes and `cpus` vCPUs.
    pub fn new(ram: u64, cpus: u16, e820: &[E820Entry]) -> Self {
        let mut f = FwCfg::default();
        f.set(FW_CFG_SIGNATURE, b"QEMU".to_vec());
        f.set(FW_CFG_ID, 1u32.to_le_bytes().to_vec());
        f.set(FW_CFG_UUID, vec![0; 16]);
        f.set(FW_CFG_RAM_SIZE, ram.to_le_bytes().to_vec());
        f.set(FW_CFG_NOGRAPHIC, 1u16.to_le_bytes().to_vec());
        f.set(FW_CFG_NB_CPUS, cpus.to_le_bytes().to_vec());
        f.set(FW_CFG_MAX_CPUS, cpus.to_le_bytes().to_vec());
        f.set(FW_CFG_MACHINE_ID, 0u32.to_le_bytes().to_vec());
        f.set(FW_CFG_BOOT_MENU, 0u16.to_le_bytes().to_vec());
        // No NUMA nodes: a count of 0 followed by one 64-bit word per CPU.
        f.set(FW_CFG_NUMA, vec![0; 8 * (1 + cpus as usize)]);
        let mut map = Vec::with_capacity(e820.len() * 20);
        for e in e820 {
            map.extend_from_slice(&e.addr.to_le_bytes());
            map.extend_from_slice(&e.len.to_le_bytes());
            map.extend_from_slice(&e.kind.to_le_bytes());
        }
        f.add_file("etc/e820", map);
        f
    }

    pub fn set(&mut self, key: u16, data: Vec<u8>) {
        self.items.insert(key, data);
    }

    /// Adds a named file (names longer than 55 bytes are cut) and rebuilds the directory.
    pub fn add_file(&mut self, name: &str, data: Vec<u8>) {
        let key = FW_CFG_FILE_FIRST + self.files.len() as u16;
        self.files.push((name.to_string(), key));
        self.items.insert(key, data);
        let mut dir = (self.files.len() as u32).to_be_bytes().to_vec();
        for (n, k) in &self.files {
            let size = self.items.get(k).map_or(0, Vec::len) as u32;
            dir.extend_from_slice(&size.to_be_bytes());
            dir.extend_from_slice(&k.to_be_bytes());
            dir.extend_from_slice(&0u16.to_be_bytes());
            let mut nb = [0u8; FW_CFG_MAX_FILE_PATH];
            let b = n.as_bytes();
            let len = b.len().min(FW_CFG_MAX_FILE_PATH - 1);
            nb[..len].copy_from_slice(&b[..len]);
            dir.extend_from_slice(&nb);
        }
        self.items.insert(FW_CFG_FILE_DIR, dir);
    }

    fn select(&mut self, key: u16) {
        self.selected = key;
        self.offset = 0;
    }

    fn next_byte(&mut self) -> u8 {
        let b = self
            .items
            .get(&self.selected)
            .and_then(|d| d.get(self.offset).copied())
            .unwrap_or(0);
        self.offset = self.offset.saturating_add(1);
        b
    }
}

impl Device for FwCfg {
    fn name(&self) -> &'static str {
        "fw_cfg"
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match offset {
            // QEMU's selector register reads as 0.
            0 => data.fill(0),
            // A wider read of the data port returns that many consecutive bytes.
            _ => {
                for b in data.iter_mut() {
                    *b = self.next_byte();
                }
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == 0 {
            let lo = data.first().copied().unwrap_or(0) as u16;
            let hi = data.get(1).copied().unwrap_or(0) as u16;
            self.select(lo | (hi << 8));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_item(f: &mut FwCfg, key: u16, n: usize) -> Vec<u8> {
        f.write(0, &key.to_le_bytes());
        (0..n)
            .map(|_| {
                let mut b = [0u8];
                f.read(1, &mut b);
                b[0]
            })
            .collect()
    }

    #[test]
    fn signature_id_and_sizes() {
        let e = [E820Entry {
            addr: 0,
            len: 0x9fc00,
            kind: 1,
        }];
        let mut f = FwCfg::new(256 << 20, 2, &e);
        assert_eq!(read_item(&mut f, FW_CFG_SIGNATURE, 4), b"QEMU");
        assert_eq!(read_item(&mut f, FW_CFG_ID, 4), [1, 0, 0, 0]);
        let ram = read_item(&mut f, FW_CFG_RAM_SIZE, 8);
        assert_eq!(u64::from_le_bytes(ram.try_into().unwrap()), 256 << 20);
        assert_eq!(read_item(&mut f, FW_CFG_NB_CPUS, 2), [2, 0]);
        assert_eq!(read_item(&mut f, FW_CFG_MAX_CPUS, 2), [2, 0]);
        // Past the end and unknown keys read 0.
        assert_eq!(read_item(&mut f, FW_CFG_SIGNATURE, 6), b"QEMU\0\0");
        assert_eq!(read_item(&mut f, 0x7777, 2), [0, 0]);
    }

    #[test]
    fn file_directory_is_big_endian() {
        let e = [
            E820Entry {
                addr: 0,
                len: 0x9fc00,
                kind: 1,
            },
            E820Entry {
                addr: 0x100000,
                len: 0x1000000,
                kind: 1,
            },
        ];
        let mut f = FwCfg::new(32 << 20, 1, &e);
        let dir = read_item(&mut f, FW_CFG_FILE_DIR, 4 + 64);
        assert_eq!(u32::from_be_bytes(dir[0..4].try_into().unwrap()), 1);
        assert_eq!(u32::from_be_bytes(dir[4..8].try_into().unwrap()), 40);
        let key = u16::from_be_bytes(dir[8..10].try_into().unwrap());
        assert_eq!(key, FW_CFG_FILE_FIRST);
        assert!(dir[12..].starts_with(b"etc/e820\0"));
        let map = read_item(&mut f, key, 40);
        assert_eq!(
            u64::from_le_bytes(map[20..28].try_into().unwrap()),
            0x100000
        );
        assert_eq!(u32::from_le_bytes(map[36..40].try_into().unwrap()), 1);
    }

    #[test]
    fn selecting_rewinds_and_wide_reads_stream() {
        let mut f = FwCfg::new(1 << 20, 1, &[]);
        f.write(0, &[0, 0]);
        let mut w = [0u8; 4];
        f.read(1, &mut w);
        assert_eq!(&w, b"QEMU");
        f.write(0, &[0, 0]);
        let mut b = [0u8];
        f.read(1, &mut b);
        assert_eq!(b[0], b'Q');
        // Writes to the data port change nothing.
        f.write(1, &[0x55]);
        f.read(1, &mut b);
        assert_eq!(b[0], b'E');
    }
}
