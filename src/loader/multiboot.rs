//! Multiboot v1 (the specification's version 0.6.96): header search, loading by ELF program
//! headers or by the header's address fields, the boot information structure with memory
//! map, command line and modules, and the specified entry state.

use twinvm_cpu::state::{CpuState, Segment, CS, RAX, RBX};
use twinvm_devices::memory::{FOUR_GIB, PAGE_SIZE};
use twinvm_devices::GuestMemory;

use super::{elf, write_ram, LoadError, Module};

pub const HEADER_MAGIC: u32 = 0x1bad_b002;
pub const BOOTLOADER_MAGIC: u32 = 0x2bad_b002;
const SEARCH_LEN: usize = 8192;

const FLAG_ADDRESS_FIELDS: u32 = 1 << 16;

/// Where the loader puts its own structures (below the EBDA, above the real-mode IVT/BDA).
const GDT_ADDR: u64 = 0x500;
const INFO_ADDR: u64 = 0x9000;
const MMAP_ADDR: u64 = 0x9100;
const MODS_ADDR: u64 = 0x9800;
const STRINGS_ADDR: u64 = 0xa000;
const STRINGS_END: u64 = 0x9_f000;
/// End of conventional memory as a PC reports it (639 KiB).
const LOW_MEM_END: u64 = 0x9_fc00;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub offset: usize,
    pub flags: u32,
    pub header_addr: u32,
    pub load_addr: u32,
    pub load_end_addr: u32,
    pub bss_end_addr: u32,
    pub entry_addr: u32,
}

fn u32_at(d: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(off..off + 4)?.try_into().ok()?))
}

/// Finds the multiboot header: 4-byte aligned in the first 8 KiB, with a valid checksum.
pub fn find_header(image: &[u8]) -> Option<Header> {
    let end = image.len().min(SEARCH_LEN);
    (0..end.saturating_sub(11)).step_by(4).find_map(|off| {
        let magic = u32_at(image, off)?;
        let flags = u32_at(image, off + 4)?;
        let sum = u32_at(image, off + 8)?;
        if magic != HEADER_MAGIC || magic.wrapping_add(flags).wrapping_add(sum) != 0 {
            return None;
        }
        let addr = |n: usize| u32_at(image, off + 12 + 4 * n).unwrap_or(0);
        Some(Header {
            offset: off,
            flags,
            header_addr: addr(0),
            load_addr: addr(1),
            load_end_addr: addr(2),
            bss_end_addr: addr(3),
            entry_addr: addr(4),
        })
    })
}

/// Loads the kernel; returns (entry, first free address after the kernel).
fn load_kernel(mem: &GuestMemory, image: &[u8], h: &Header) -> Result<(u64, u64), LoadError> {
    if h.flags & FLAG_ADDRESS_FIELDS != 0 {
        let start = (h.offset as u64)
            .checked_sub(h.header_addr.wrapping_sub(h.load_addr) as u64)
            .ok_or_else(|| {
                LoadError::Malformed("multiboot header: load_addr lies after header_addr".into())
            })?;
        let end = if h.load_end_addr == 0 {
            image.len() as u64
        } else {
            start + h.load_end_addr.wrapping_sub(h.load_addr) as u64
        };
        if end > image.len() as u64 || end < start {
            return Err(LoadError::Malformed(
                "multiboot header: load_end_addr lies beyond the file".into(),
            ));
        }
        let load = h.load_addr as u64;
        write_ram(mem, load, &image[start as usize..end as usize], "kernel")?;
        let mut top = load + (end - start);
        if h.bss_end_addr != 0 && h.bss_end_addr as u64 > top {
            let bss = vec![0u8; (h.bss_end_addr as u64 - top) as usize];
            write_ram(mem, top, &bss, "kernel BSS")?;
            top = h.bss_end_addr as u64;
        }
        return Ok((h.entry_addr as u64, top));
    }
    if !elf::is_elf(image) {
        return Err(LoadError::Malformed(
            "multiboot kernel is not ELF and its header does not give load addresses (flag 16)"
                .into(),
        ));
    }
    let e = elf::parse(image)?;
    let mut top = 0u64;
    for s in &e.segments {
        let mut data = image[s.offset as usize..(s.offset + s.filesz) as usize].to_vec();
        data.resize(s.memsz as usize, 0);
        write_ram(mem, s.paddr, &data, "kernel segment")?;
        top = top.max(s.paddr + s.memsz);
    }
    let entry = e.physical_entry();
    if entry >= FOUR_GIB {
        return Err(LoadError::Malformed(format!(
            "kernel entry point {entry:#x} is above 4 GiB"
        )));
    }
    Ok((entry, top))
}

fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

/// A bump allocator for the strings the boot information points to.
struct Strings {
    next: u64,
}

impl Strings {
    fn put(&mut self, mem: &GuestMemory, s: &str) -> Result<u32, LoadError> {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        if self.next + b.len() as u64 > STRINGS_END {
            return Err(LoadError::TooLarge(
                "command line and module names are too long".into(),
            ));
        }
        let at = self.next;
        write_ram(mem, at, &b, "boot string")?;
        self.next += b.len() as u64;
        Ok(at as u32)
    }
}

/// The memory map a PC BIOS would report for this memory layout.
pub fn memory_map(mem: &GuestMemory) -> Vec<(u64, u64, u32)> {
    let mut map = vec![
        (0, LOW_MEM_END, 1),
        (LOW_MEM_END, 0x10_0000 - LOW_MEM_END, 2),
    ];
    let low = mem.low_ram_size();
    if low > 0x10_0000 {
        map.push((0x10_0000, low - 0x10_0000, 1));
    }
    if mem.ram_size() > low {
        map.push((FOUR_GIB, mem.ram_size() - low, 1));
    }
    map
}

pub fn load(
    mem: &GuestMemory,
    image: &[u8],
    cmdline: &str,
    modules: &[Module],
) -> Result<CpuState, LoadError> {
    let Some(h) = find_header(image) else {
        let what = if elf::is_elf(image) {
            "an ELF file without a multiboot header in its first 8 KiB"
        } else {
            "not a multiboot kernel (no valid multiboot header in the first 8 KiB) nor an ELF file"
        };
        return Err(LoadError::NotAnImage(format!("kernel image is {what}")));
    };
    if h.flags & 0xffff & !0x7 != 0 {
        return Err(LoadError::Malformed(format!(
            "multiboot header requests unsupported features (flags {:#x})",
            h.flags
        )));
    }
    let (entry, kernel_end) = load_kernel(mem, image, &h)?;
    let mut strings = Strings { next: STRINGS_ADDR };

    // Modules go page-aligned after the kernel.
    let mut next = align_up(kernel_end.max(0x10_0000), PAGE_SIZE);
    let mut mods = Vec::new();
    for m in modules {
        write_ram(mem, next, &m.data, &format!("module {}", m.name))?;
        let name = strings.put(mem, &m.name)?;
        mods.extend_from_slice(&(next as u32).to_le_bytes());
        mods.extend_from_slice(&((next + m.data.len() as u64) as u32).to_le_bytes());
        mods.extend_from_slice(&name.to_le_bytes());
        mods.extend_from_slice(&0u32.to_le_bytes());
        next = align_up(next + m.data.len() as u64, PAGE_SIZE);
    }
    write_ram(mem, MODS_ADDR, &mods, "module list")?;

    let mut mmap = Vec::new();
    for (base, len, typ) in memory_map(mem) {
        mmap.extend_from_slice(&20u32.to_le_bytes());
        mmap.extend_from_slice(&base.to_le_bytes());
        mmap.extend_from_slice(&len.to_le_bytes());
        mmap.extend_from_slice(&typ.to_le_bytes());
    }
    write_ram(mem, MMAP_ADDR, &mmap, "memory map")?;

    let cmd = strings.put(mem, cmdline)?;
    let loader_name = strings.put(mem, concat!("twinvm ", env!("CARGO_PKG_VERSION")))?;
    let mem_upper_kib = (mem.low_ram_size().saturating_sub(0x10_0000)) >> 10;
    let mut info = [0u32; 22];
    // MEM, CMDLINE, MODS, MMAP, BOOT_LOADER_NAME.
    info[0] = 1 | (1 << 2) | (1 << 3) | (1 << 6) | (1 << 9);
    info[1] = (LOW_MEM_END >> 10) as u32;
    info[2] = mem_upper_kib as u32;
    info[4] = cmd;
    info[5] = modules.len() as u32;
    info[6] = MODS_ADDR as u32;
    info[11] = mmap.len() as u32;
    info[12] = MMAP_ADDR as u32;
    info[16] = loader_name;
    let bytes: Vec<u8> = info.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_ram(mem, INFO_ADDR, &bytes, "boot information")?;

    // A GDT like the one QEMU's multiboot loader leaves (code 0x10, data 0x18), so that a
    // kernel that reloads segment registers before its own LGDT keeps working.
    let gdt: [u64; 4] = [0, 0, 0x00cf_9a00_0000_ffff, 0x00cf_9200_0000_ffff];
    let gdt_bytes: Vec<u8> = gdt.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_ram(mem, GDT_ADDR, &gdt_bytes, "GDT")?;

    let mut s = CpuState::protected_flat();
    s.gdtr.base = GDT_ADDR;
    s.gdtr.limit = (gdt_bytes.len() - 1) as u16;
    s.seg[CS] = Segment::flat(0x10, true, false);
    s.gpr[RAX] = BOOTLOADER_MAGIC as u64;
    s.gpr[RBX] = INFO_ADDR;
    s.rip = entry;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat_kernel() -> Vec<u8> {
        // Header with address fields: loaded at 1 MiB, entry right after the header.
        let flags = FLAG_ADDRESS_FIELDS;
        let mut k = Vec::new();
        for v in [
            HEADER_MAGIC,
            flags,
            0u32.wrapping_sub(HEADER_MAGIC.wrapping_add(flags)),
            0x10_0000,
            0x10_0000,
            0,
            0x10_1000,
            0x10_0020,
        ] {
            k.extend_from_slice(&v.to_le_bytes());
        }
        k.extend_from_slice(&[0xf4; 32]);
        k
    }

    #[test]
    fn loads_flat_multiboot_with_bss_and_info() {
        let mem = GuestMemory::new(32 << 20).unwrap();
        let mods = [Module {
            name: "initrd".into(),
            data: vec![7; 100],
        }];
        let s = load(&mem, &flat_kernel(), "console=ttyS0", &mods).unwrap();
        assert_eq!(s.rip, 0x10_0020);
        assert_eq!(s.gpr[RAX], BOOTLOADER_MAGIC as u64);
        let info = mem.read_u32(INFO_ADDR).unwrap();
        assert_eq!(info & (1 << 6), 1 << 6);
        assert_eq!(mem.read_u32(INFO_ADDR + 8).unwrap(), (31 << 20) >> 10);
        let mod_start = mem.read_u32(MODS_ADDR).unwrap() as u64;
        assert_eq!(mod_start % PAGE_SIZE, 0);
        assert!(mod_start >= 0x10_1000);
        let mut b = [0u8; 1];
        mem.read(mod_start, &mut b).unwrap();
        assert_eq!(b[0], 7);
        let cmd = mem.read_u32(INFO_ADDR + 16).unwrap() as u64;
        let mut c = [0u8; 13];
        mem.read(cmd, &mut c).unwrap();
        assert_eq!(&c, b"console=ttyS0");
    }

    #[test]
    fn random_bytes_are_not_an_image() {
        let mem = GuestMemory::new(4 << 20).unwrap();
        let junk: Vec<u8> = (0..1 << 20)
            .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert!(matches!(
            load(&mem, &junk, "", &[]),
            Err(LoadError::NotAnImage(_))
        ));
    }

    #[test]
    fn kernel_larger_than_memory_is_refused() {
        let mem = GuestMemory::new(2 << 20).unwrap();
        let mut k = flat_kernel();
        k.resize(3 << 20, 0);
        assert!(matches!(
            load(&mem, &k, "", &[]),
            Err(LoadError::TooLarge(_))
        ));
    }
}
