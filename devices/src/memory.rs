//! Guest physical memory: RAM and ROM regions backed by host mappings.
//!
//! One host mapping serves every engine: the software engine turns guest physical addresses
//! into host pointers through [`GuestMemory::host_range`], and the KVM engine registers the
//! same pointers as memory slots. Addresses that no region covers are MMIO holes, served by
//! the MMIO [`crate::bus::Bus`].

use std::fmt;
use std::sync::Arc;

use memmap2::MmapMut;

/// Start of the 32-bit PCI/MMIO hole; RAM beyond this size continues at 4 GiB.
pub const PCI_HOLE_START: u64 = 0xC000_0000;
/// First address above the 32-bit space.
pub const FOUR_GIB: u64 = 0x1_0000_0000;
/// Size of the guest page used for dirty and code tracking.
pub const PAGE_SIZE: u64 = 4096;

#[derive(Debug)]
pub enum MemoryError {
    /// A RAM size of zero, or a layout that overlaps itself.
    InvalidSize(u64),
    /// The host refused the mapping (usually: not enough memory or address space).
    HostMap { size: u64, source: std::io::Error },
    /// A write or read outside every region.
    Unmapped { gpa: u64, len: u64 },
    /// A write to a read-only region through the loader interface.
    ReadOnly { gpa: u64 },
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryError::InvalidSize(s) => write!(f, "invalid guest memory size {s} bytes"),
            MemoryError::HostMap { size, source } => {
                write!(
                    f,
                    "cannot map {} MiB of guest memory on the host: {source}",
                    size >> 20
                )
            }
            MemoryError::Unmapped { gpa, len } => {
                write!(
                    f,
                    "guest physical range {gpa:#x}+{len:#x} is not backed by memory"
                )
            }
            MemoryError::ReadOnly { gpa } => {
                write!(f, "guest physical address {gpa:#x} is read-only")
            }
        }
    }
}

impl std::error::Error for MemoryError {}

/// What a region is, for the engines and for the loader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    Ram,
    /// Firmware: guest writes are ignored.
    Rom,
}

/// One contiguous guest-physical range backed by host memory.
pub struct Region {
    pub gpa: u64,
    pub size: u64,
    pub kind: RegionKind,
    host: *mut u8,
    /// Keeps the mapping alive; aliases share it.
    _backing: Arc<MmapMut>,
}

// SAFETY: `host` points into `_backing`, which lives as long as the region; the mapping is
// plain shared memory, and concurrent guest access to it is the guest's business (as on
// real hardware).
unsafe impl Send for Region {}
// SAFETY: see above.
unsafe impl Sync for Region {}

impl Region {
    pub fn host_ptr(&self) -> *mut u8 {
        self.host
    }
    pub fn end(&self) -> u64 {
        self.gpa + self.size
    }
}

/// The guest's physical address space (memory part).
pub struct GuestMemory {
    regions: Vec<Region>,
    ram_size: u64,
}

/// A host view of a guest-physical range inside one region.
#[derive(Clone, Copy, Debug)]
pub struct HostRange {
    pub ptr: *mut u8,
    /// Bytes from `ptr` to the end of the region.
    pub len: u64,
    pub writable: bool,
}

fn map_anon(size: u64) -> Result<MmapMut, MemoryError> {
    let len = usize::try_from(size).map_err(|_| MemoryError::InvalidSize(size))?;
    MmapMut::map_anon(len).map_err(|source| MemoryError::HostMap { size, source })
}

impl GuestMemory {
    /// Lays out `ram_size` bytes of RAM the PC way: below the PCI hole, and the rest above
    /// 4 GiB.
    pub fn new(ram_size: u64) -> Result<Self, MemoryError> {
        if ram_size == 0 || !ram_size.is_multiple_of(PAGE_SIZE) {
            return Err(MemoryError::InvalidSize(ram_size));
        }
        let low = ram_size.min(PCI_HOLE_START);
        let high = ram_size - low;
        let backing = Arc::new(map_anon(ram_size)?);
        let base = backing.as_ptr() as *mut u8;
        let mut regions = vec![Region {
            gpa: 0,
            size: low,
            kind: RegionKind::Ram,
            host: base,
            _backing: backing.clone(),
        }];
        if high > 0 {
            regions.push(Region {
                gpa: FOUR_GIB,
                size: high,
                kind: RegionKind::Ram,
                // SAFETY: `low < ram_size`, so the offset stays inside the mapping.
                host: unsafe { base.add(low as usize) },
                _backing: backing,
            });
        }
        Ok(GuestMemory { regions, ram_size })
    }

    /// Maps a firmware image just below 4 GiB, and aliases its last 128 KiB (or all of it,
    /// if smaller) below 1 MiB, where a PC's BIOS shadow is, so that real-mode code reached
    /// through the reset vector can far-jump to F000:xxxx.
    pub fn add_firmware(&mut self, image: &[u8]) -> Result<(), MemoryError> {
        let size = (image.len() as u64).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        if size == 0 || size > 16 << 20 {
            return Err(MemoryError::InvalidSize(size));
        }
        let mut map = map_anon(size)?;
        // Right-align the image so that its last 16 bytes hold the reset vector.
        let off = (size - image.len() as u64) as usize;
        map[off..].copy_from_slice(image);
        let backing = Arc::new(map);
        let base = backing.as_ptr() as *mut u8;
        let alias = size.min(128 << 10);
        self.regions.push(Region {
            gpa: FOUR_GIB - size,
            size,
            kind: RegionKind::Rom,
            host: base,
            _backing: backing.clone(),
        });
        // The alias replaces RAM at 0xE0000.. (or higher when smaller) like a PC's shadowing.
        let alias_gpa = 0x10_0000 - alias;
        self.carve_out(alias_gpa, alias);
        self.regions.push(Region {
            gpa: alias_gpa,
            size: alias,
            kind: RegionKind::Rom,
            // SAFETY: `size - alias` is within the mapping.
            host: unsafe { base.add((size - alias) as usize) },
            _backing: backing,
        });
        self.regions.sort_by_key(|r| r.gpa);
        Ok(())
    }

    /// Removes `[gpa, gpa+len)` from RAM regions (splitting them) so another region can
    /// take its place.
    fn carve_out(&mut self, gpa: u64, len: u64) {
        let end = gpa + len;
        let mut out = Vec::with_capacity(self.regions.len() + 1);
        for r in self.regions.drain(..) {
            if r.end() <= gpa || r.gpa >= end {
                out.push(r);
                continue;
            }
            if r.gpa < gpa {
                out.push(Region {
                    gpa: r.gpa,
                    size: gpa - r.gpa,
                    kind: r.kind,
                    host: r.host,
                    _backing: r._backing.clone(),
                });
            }
            if r.end() > end {
                out.push(Region {
                    gpa: end,
                    size: r.end() - end,
                    kind: r.kind,
                    // SAFETY: `end - r.gpa < r.size`, inside the region's mapping.
                    host: unsafe { r.host.add((end - r.gpa) as usize) },
                    _backing: r._backing.clone(),
                });
            }
        }
        self.regions = out;
    }

    /// Total RAM in bytes (excluding ROM).
    pub fn ram_size(&self) -> u64 {
        self.ram_size
    }

    /// RAM below the PCI hole.
    pub fn low_ram_size(&self) -> u64 {
        self.ram_size.min(PCI_HOLE_START)
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// The host range backing `gpa`, if any region covers it.
    #[inline]
    pub fn host_range(&self, gpa: u64) -> Option<HostRange> {
        for r in &self.regions {
            if gpa >= r.gpa && gpa < r.end() {
                let off = gpa - r.gpa;
                return Some(HostRange {
                    // SAFETY: `off < r.size`, inside the mapping.
                    ptr: unsafe { r.host.add(off as usize) },
                    len: r.size - off,
                    writable: r.kind == RegionKind::Ram,
                });
            }
        }
        None
    }

    /// Copies guest memory out; fails if any byte is not backed by a region.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let mut done = 0usize;
        while done < buf.len() {
            let addr = gpa.wrapping_add(done as u64);
            let range = self.host_range(addr).ok_or(MemoryError::Unmapped {
                gpa: addr,
                len: (buf.len() - done) as u64,
            })?;
            let n = (range.len as usize).min(buf.len() - done);
            // SAFETY: `range` covers `n` bytes of a live mapping; `buf` is a distinct Rust slice.
            unsafe { std::ptr::copy_nonoverlapping(range.ptr, buf[done..].as_mut_ptr(), n) };
            done += n;
        }
        Ok(())
    }

    /// Loader and device (DMA) writes. ROM is writable here only through `force`, which the
    /// loader uses for firmware images.
    pub fn write(&self, gpa: u64, data: &[u8]) -> Result<(), MemoryError> {
        let mut done = 0usize;
        while done < data.len() {
            let addr = gpa.wrapping_add(done as u64);
            let range = self.host_range(addr).ok_or(MemoryError::Unmapped {
                gpa: addr,
                len: (data.len() - done) as u64,
            })?;
            if !range.writable {
                return Err(MemoryError::ReadOnly { gpa: addr });
            }
            let n = (range.len as usize).min(data.len() - done);
            // SAFETY: `range` covers `n` writable bytes of a live mapping.
            unsafe { std::ptr::copy_nonoverlapping(data[done..].as_ptr(), range.ptr, n) };
            done += n;
        }
        Ok(())
    }

    pub fn read_u32(&self, gpa: u64) -> Result<u32, MemoryError> {
        let mut b = [0u8; 4];
        self.read(gpa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    pub fn read_u64(&self, gpa: u64) -> Result<u64, MemoryError> {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    pub fn write_u32(&self, gpa: u64, v: u32) -> Result<(), MemoryError> {
        self.write(gpa, &v.to_le_bytes())
    }

    pub fn write_u64(&self, gpa: u64, v: u64) -> Result<(), MemoryError> {
        self.write(gpa, &v.to_le_bytes())
    }

    /// Whether every byte of `[gpa, gpa+len)` is RAM.
    pub fn is_ram(&self, gpa: u64, len: u64) -> bool {
        let mut addr = gpa;
        let end = gpa.saturating_add(len);
        while addr < end {
            match self.host_range(addr) {
                Some(r) if r.writable => addr += r.len,
                _ => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_and_high_ram() {
        let m = GuestMemory::new(PCI_HOLE_START + (1 << 20)).unwrap();
        assert_eq!(m.regions().len(), 2);
        assert!(m.host_range(PCI_HOLE_START).is_none());
        assert!(m.host_range(FOUR_GIB).is_some());
        m.write_u32(FOUR_GIB + 8, 0xdead_beef).unwrap();
        assert_eq!(m.read_u32(FOUR_GIB + 8).unwrap(), 0xdead_beef);
    }

    #[test]
    fn zero_size_is_an_error() {
        assert!(matches!(
            GuestMemory::new(0),
            Err(MemoryError::InvalidSize(0))
        ));
    }

    #[test]
    fn firmware_is_mapped_at_top_and_aliased_low() {
        let mut m = GuestMemory::new(1 << 20).unwrap();
        let mut fw = vec![0u8; 64 << 10];
        fw[0xfff0] = 0xea;
        m.add_firmware(&fw).unwrap();
        let mut b = [0u8];
        m.read(0xffff_fff0, &mut b).unwrap();
        assert_eq!(b[0], 0xea);
        m.read(0xffff0, &mut b).unwrap();
        assert_eq!(b[0], 0xea);
        assert!(matches!(
            m.write(0xffff0, &[1]),
            Err(MemoryError::ReadOnly { .. })
        ));
        // RAM below the alias is intact.
        m.write(0xeffff, &[7]).unwrap();
    }

    #[test]
    fn cross_region_read_fails_cleanly() {
        let m = GuestMemory::new(1 << 20).unwrap();
        let mut b = [0u8; 8];
        assert!(m.read((1 << 20) - 4, &mut b).is_err());
    }
}
