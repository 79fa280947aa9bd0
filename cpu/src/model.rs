//! The CPU model: one table that describes the virtual CPU and answers CPUID. Every engine
//! presents the same table, so a guest sees the same CPU whatever runs it.

/// Feature bits, by the CPUID word they live in.
pub mod feat {
    // Leaf 1 EDX.
    pub const FPU: u32 = 1 << 0;
    pub const PSE: u32 = 1 << 3;
    pub const TSC: u32 = 1 << 4;
    pub const MSR: u32 = 1 << 5;
    pub const PAE: u32 = 1 << 6;
    pub const CX8: u32 = 1 << 8;
    pub const APIC: u32 = 1 << 9;
    pub const SEP: u32 = 1 << 11;
    pub const PGE: u32 = 1 << 13;
    pub const CMOV: u32 = 1 << 15;
    pub const PAT: u32 = 1 << 16;
    pub const PSE36: u32 = 1 << 17;
    // Leaf 1 ECX.
    pub const CX16: u32 = 1 << 13;
    pub const PCID: u32 = 1 << 17;
    pub const MOVBE: u32 = 1 << 22;
    pub const POPCNT: u32 = 1 << 23;
    pub const X2APIC: u32 = 1 << 21;
    pub const TSC_DEADLINE: u32 = 1 << 24;
    pub const HYPERVISOR: u32 = 1 << 31;
    // Leaf 7.0 EBX.
    pub const BMI1: u32 = 1 << 3;
    pub const SMEP: u32 = 1 << 7;
    pub const BMI2: u32 = 1 << 8;
    pub const INVPCID: u32 = 1 << 10;
    pub const ADX: u32 = 1 << 19;
    pub const SMAP: u32 = 1 << 20;
    // Leaf 7.0 ECX.
    pub const UMIP: u32 = 1 << 2;
    // Leaf 0x8000_0001 ECX.
    pub const LAHF_LM: u32 = 1 << 0;
    pub const ABM: u32 = 1 << 5;
    // Leaf 0x8000_0001 EDX.
    pub const SYSCALL: u32 = 1 << 11;
    pub const NX: u32 = 1 << 20;
    pub const PDPE1GB: u32 = 1 << 26;
    pub const RDTSCP: u32 = 1 << 27;
    pub const LM: u32 = 1 << 29;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuModel {
    pub name: &'static str,
    pub vendor: [u8; 12],
    /// Leaf 1 EAX: stepping, model, family.
    pub signature: u32,
    pub leaf1_ecx: u32,
    pub leaf1_edx: u32,
    pub leaf7_ebx: u32,
    pub leaf7_ecx: u32,
    pub ext1_ecx: u32,
    pub ext1_edx: u32,
    pub brand: &'static str,
    pub phys_bits: u8,
    pub virt_bits: u8,
}

impl CpuModel {
    /// Everything the interpreter implements today.
    pub fn max() -> Self {
        use feat::*;
        CpuModel {
            name: "max",
            vendor: *b"GenuineIntel",
            // Family 6, model 0x3a (an Ivy Bridge-like signature), stepping 9.
            signature: 0x0003_06a9,
            leaf1_ecx: CX16 | PCID | X2APIC | MOVBE | POPCNT | TSC_DEADLINE | HYPERVISOR,
            leaf1_edx: PSE | TSC | MSR | PAE | CX8 | APIC | SEP | PGE | CMOV | PAT | PSE36,
            leaf7_ebx: SMEP | INVPCID | SMAP,
            leaf7_ecx: UMIP,
            ext1_ecx: LAHF_LM | ABM,
            ext1_edx: SYSCALL | NX | PDPE1GB | RDTSCP | LM,
            brand: "twinvm virtual CPU",
            phys_bits: 40,
            virt_bits: 48,
        }
    }

    pub fn has_leaf1_ecx(&self, bit: u32) -> bool {
        self.leaf1_ecx & bit != 0
    }
    pub fn has_leaf7_ebx(&self, bit: u32) -> bool {
        self.leaf7_ebx & bit != 0
    }
    pub fn has_ext1_ecx(&self, bit: u32) -> bool {
        self.ext1_ecx & bit != 0
    }
    pub fn has_ext1_edx(&self, bit: u32) -> bool {
        self.ext1_edx & bit != 0
    }

    const MAX_BASIC: u32 = 7;
    const MAX_EXT: u32 = 0x8000_0008;

    /// CPUID for `leaf`/`subleaf`, as `[eax, ebx, ecx, edx]`. `apic_id` is the asking
    /// vCPU's.
    pub fn cpuid(&self, leaf: u32, subleaf: u32, apic_id: u8) -> [u32; 4] {
        let v = &self.vendor;
        let word = |i: usize| u32::from_le_bytes([v[i], v[i + 1], v[i + 2], v[i + 3]]);
        match leaf {
            0 => [Self::MAX_BASIC, word(0), word(8), word(4)],
            // EBX: CLFLUSH line size 8 × 8 bytes, one logical processor, the APIC ID.
            1 => [
                self.signature,
                (8 << 8) | (1 << 16) | ((apic_id as u32) << 24),
                self.leaf1_ecx,
                self.leaf1_edx,
            ],
            7 if subleaf == 0 => [0, self.leaf7_ebx, self.leaf7_ecx, 0],
            0x8000_0000 => [Self::MAX_EXT, 0, 0, 0],
            0x8000_0001 => [0, 0, self.ext1_ecx, self.ext1_edx],
            0x8000_0002..=0x8000_0004 => {
                let mut b = [0u8; 48];
                let n = self.brand.len().min(47);
                b[..n].copy_from_slice(&self.brand.as_bytes()[..n]);
                let off = ((leaf - 0x8000_0002) * 16) as usize;
                let w = |i: usize| {
                    u32::from_le_bytes([b[off + i], b[off + i + 1], b[off + i + 2], b[off + i + 3]])
                };
                [w(0), w(4), w(8), w(12)]
            }
            0x8000_0008 => [
                (self.phys_bits as u32) | ((self.virt_bits as u32) << 8),
                0,
                0,
                0,
            ],
            // Leaves past the maximum answer as the highest basic leaf does (Intel SDM,
            // CPUID: "If a value entered for CPUID.EAX is higher than the maximum input value
            // for basic or extended function ... the data for the highest basic information
            // leaf is returned").
            l if l > Self::MAX_EXT || (l > Self::MAX_BASIC && l < 0x8000_0000) => {
                self.cpuid(Self::MAX_BASIC, subleaf, apic_id)
            }
            _ => [0, 0, 0, 0],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_and_brand() {
        let m = CpuModel::max();
        let r = m.cpuid(0, 0, 0);
        let mut v = Vec::new();
        for w in [r[1], r[3], r[2]] {
            v.extend_from_slice(&w.to_le_bytes());
        }
        assert_eq!(&v, b"GenuineIntel");
        let mut brand = Vec::new();
        for l in 0x8000_0002..=0x8000_0004 {
            for w in m.cpuid(l, 0, 0) {
                brand.extend_from_slice(&w.to_le_bytes());
            }
        }
        assert!(brand.starts_with(b"twinvm virtual CPU\0"));
        assert_ne!(m.cpuid(0x8000_0001, 0, 0)[3] & feat::LM, 0);
    }
}
