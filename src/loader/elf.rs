//! Minimal ELF reader for loading kernels: ELF32 and ELF64 little-endian x86 program
//! headers.

use super::LoadError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub offset: u64,
    pub vaddr: u64,
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
}

#[derive(Debug)]
pub struct Elf {
    pub entry: u64,
    pub segments: Vec<Segment>,
    pub class64: bool,
}

const PT_LOAD: u32 = 1;

fn field(data: &[u8], off: usize, len: usize) -> Result<u64, LoadError> {
    let b = data
        .get(off..off + len)
        .ok_or_else(|| LoadError::Malformed(format!("ELF file cut short at byte {off}")))?;
    let mut v = [0u8; 8];
    v[..len].copy_from_slice(b);
    Ok(u64::from_le_bytes(v))
}

pub fn is_elf(data: &[u8]) -> bool {
    data.starts_with(b"\x7fELF")
}

pub fn parse(data: &[u8]) -> Result<Elf, LoadError> {
    if !is_elf(data) {
        return Err(LoadError::NotAnImage("not an ELF file".into()));
    }
    let class64 = match data.get(4) {
        Some(1) => false,
        Some(2) => true,
        _ => {
            return Err(LoadError::Malformed(
                "ELF file with an unknown class".into(),
            ))
        }
    };
    if data.get(5) != Some(&1) {
        return Err(LoadError::Malformed("ELF file is not little-endian".into()));
    }
    let machine = field(data, 18, 2)?;
    if machine != 3 && machine != 62 {
        return Err(LoadError::Malformed(format!(
            "ELF file is for machine {machine}, not x86"
        )));
    }
    let (entry, phoff, phentsize, phnum) = if class64 {
        (
            field(data, 24, 8)?,
            field(data, 32, 8)?,
            field(data, 54, 2)?,
            field(data, 56, 2)?,
        )
    } else {
        (
            field(data, 24, 4)?,
            field(data, 28, 4)?,
            field(data, 42, 2)?,
            field(data, 44, 2)?,
        )
    };
    let mut segments = Vec::new();
    for n in 0..phnum {
        let base = phoff
            .checked_add(n * phentsize)
            .and_then(|b| usize::try_from(b).ok())
            .ok_or_else(|| LoadError::Malformed("ELF program header table out of range".into()))?;
        let seg = if class64 {
            if field(data, base, 4)? as u32 != PT_LOAD {
                continue;
            }
            Segment {
                offset: field(data, base + 8, 8)?,
                vaddr: field(data, base + 16, 8)?,
                paddr: field(data, base + 24, 8)?,
                filesz: field(data, base + 32, 8)?,
                memsz: field(data, base + 40, 8)?,
            }
        } else {
            if field(data, base, 4)? as u32 != PT_LOAD {
                continue;
            }
            Segment {
                offset: field(data, base + 4, 4)?,
                vaddr: field(data, base + 8, 4)?,
                paddr: field(data, base + 12, 4)?,
                filesz: field(data, base + 16, 4)?,
                memsz: field(data, base + 20, 4)?,
            }
        };
        if seg.filesz > seg.memsz
            || seg
                .offset
                .checked_add(seg.filesz)
                .is_none_or(|e| e > data.len() as u64)
        {
            return Err(LoadError::Malformed(format!(
                "ELF segment at file offset {:#x} (size {:#x}) lies outside the file",
                seg.offset, seg.filesz
            )));
        }
        segments.push(seg);
    }
    if segments.is_empty() {
        return Err(LoadError::Malformed(
            "ELF file has no loadable segments".into(),
        ));
    }
    Ok(Elf {
        entry,
        segments,
        class64,
    })
}

impl Elf {
    /// The entry point as a physical address: the ELF entry is virtual, so it is moved by
    /// the offset between the virtual and physical address of the segment containing it.
    pub fn physical_entry(&self) -> u64 {
        for s in &self.segments {
            if self.entry >= s.vaddr && self.entry < s.vaddr + s.memsz.max(1) {
                return self.entry - s.vaddr + s.paddr;
            }
        }
        self.entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf32(entry: u32, paddr: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 84];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 1;
        f[5] = 1;
        f[18] = 3;
        f[24..28].copy_from_slice(&entry.to_le_bytes());
        f[28..32].copy_from_slice(&52u32.to_le_bytes());
        f[42..44].copy_from_slice(&32u16.to_le_bytes());
        f[44..46].copy_from_slice(&1u16.to_le_bytes());
        let ph = 52;
        f[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
        f[ph + 4..ph + 8].copy_from_slice(&84u32.to_le_bytes());
        f[ph + 8..ph + 12].copy_from_slice(&paddr.to_le_bytes());
        f[ph + 12..ph + 16].copy_from_slice(&paddr.to_le_bytes());
        f[ph + 16..ph + 20].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        f[ph + 20..ph + 24].copy_from_slice(&(payload.len() as u32 + 16).to_le_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn parses_elf32() {
        let e = parse(&elf32(0x10_0000, 0x10_0000, &[0x90; 8])).unwrap();
        assert!(!e.class64);
        assert_eq!(e.segments.len(), 1);
        assert_eq!(e.segments[0].memsz, 24);
        assert_eq!(e.physical_entry(), 0x10_0000);
    }

    #[test]
    fn truncated_is_malformed() {
        let f = elf32(0x10_0000, 0x10_0000, &[0x90; 8]);
        assert!(matches!(parse(&f[..60]), Err(LoadError::Malformed(_))));
        let mut g = f.clone();
        g.truncate(86);
        assert!(matches!(parse(&g), Err(LoadError::Malformed(_))));
    }
}
