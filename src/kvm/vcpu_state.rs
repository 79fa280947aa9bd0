//! Moving a whole `CpuState` into and out of a KVM vCPU.

use std::collections::HashSet;

use kvm_bindings::{kvm_debugregs, kvm_msr_entry, kvm_xcr, kvm_xcrs, Msrs as KvmMsrs};
use kvm_ioctls::VcpuFd;
use twinvm_cpu::CpuState;

use super::device::{ioctl, Caps, KvmError, KvmVm};
use super::state::{self, msr_index};

/// The MSRs of `Msrs` this KVM can save and restore, and the ones it refused to set.
pub struct MsrSet {
    pub indices: Vec<u32>,
}

impl MsrSet {
    pub fn new(vm: &KvmVm) -> Result<MsrSet, KvmError> {
        let list = vm
            .kvm
            .get_msr_index_list()
            .map_err(ioctl("KVM_GET_MSR_INDEX_LIST"))?;
        let known: HashSet<u32> = list.as_slice().iter().copied().collect();
        let indices = state::msr_entries(&Default::default())
            .into_iter()
            .map(|(i, _)| i)
            .filter(|i| known.contains(i))
            .collect();
        Ok(MsrSet { indices })
    }
}

fn msr_list(entries: &[(u32, u64)]) -> Result<KvmMsrs, KvmError> {
    let e: Vec<kvm_msr_entry> = entries
        .iter()
        .map(|&(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
    KvmMsrs::from_entries(&e).map_err(|e| KvmError::Setup(format!("MSR list: {e:?}")))
}

/// Reads the vCPU's state. Fields KVM does not hold (the halted flag, MSRs this KVM does
/// not know, MXCSR_MASK without XSAVE) are kept from `prev`.
pub fn get_state(
    vcpu: &VcpuFd,
    caps: &Caps,
    msrs: &MsrSet,
    prev: &CpuState,
) -> Result<CpuState, KvmError> {
    let mut s = prev.clone();
    let regs = vcpu.get_regs().map_err(ioctl("KVM_GET_REGS"))?;
    state::regs_to_state(&regs, &mut s);
    let sregs = vcpu.get_sregs().map_err(ioctl("KVM_GET_SREGS"))?;
    state::sregs_to_state(&sregs, &mut s);
    s.fx = if caps.xsave {
        state::fx_from_xsave(&vcpu.get_xsave().map_err(ioctl("KVM_GET_XSAVE"))?)
    } else {
        state::fx_from_fpu(&vcpu.get_fpu().map_err(ioctl("KVM_GET_FPU"))?, &prev.fx)
    };
    if caps.xcrs {
        let x = vcpu.get_xcrs().map_err(ioctl("KVM_GET_XCRS"))?;
        if let Some(x0) = x.xcrs[..x.nr_xcrs as usize].iter().find(|x| x.xcr == 0) {
            s.xcr0 = x0.value;
        }
    }
    if caps.debugregs {
        let d = vcpu.get_debug_regs().map_err(ioctl("KVM_GET_DEBUGREGS"))?;
        s.dr = d.db;
        s.dr6 = d.dr6;
        s.dr7 = d.dr7;
    }
    if caps.vcpu_events {
        let e = vcpu
            .get_vcpu_events()
            .map_err(ioctl("KVM_GET_VCPU_EVENTS"))?;
        s.events = state::events_to_state(&e, &prev.events);
    }
    if !msrs.indices.is_empty() {
        let entries: Vec<(u32, u64)> = msrs.indices.iter().map(|&i| (i, 0)).collect();
        let mut list = msr_list(&entries)?;
        let n = vcpu.get_msrs(&mut list).map_err(ioctl("KVM_GET_MSRS"))?;
        for e in &list.as_slice()[..n] {
            state::set_msr(&mut s.msr, e.index, e.data);
        }
    }
    Ok(s)
}

/// Loads `s` into the vCPU. With `prev` (the state last read from it), MSRs, XCR0 and the
/// debug registers are written only where they changed, and the TSC is left running:
/// a short interpreter stretch must not set KVM's clock back.
pub fn set_state(
    vcpu: &VcpuFd,
    caps: &Caps,
    msrs: &MsrSet,
    s: &CpuState,
    prev: Option<&CpuState>,
) -> Result<(), KvmError> {
    // sregs first: KVM checks RFLAGS/RIP against the mode they set.
    vcpu.set_sregs(&state::sregs_from_state(s))
        .map_err(ioctl("KVM_SET_SREGS"))?;
    vcpu.set_regs(&state::regs_from_state(s))
        .map_err(ioctl("KVM_SET_REGS"))?;
    if caps.xsave {
        let mut x = vcpu.get_xsave().map_err(ioctl("KVM_GET_XSAVE"))?;
        state::fx_into_xsave(&s.fx, &mut x);
        // SAFETY: `x` came from KVM_GET_XSAVE on this vCPU, so it has the size KVM expects.
        unsafe { vcpu.set_xsave(&x) }.map_err(ioctl("KVM_SET_XSAVE"))?;
    } else {
        vcpu.set_fpu(&state::fpu_from_fx(&s.fx))
            .map_err(ioctl("KVM_SET_FPU"))?;
    }
    if caps.xcrs && prev.is_none_or(|p| p.xcr0 != s.xcr0) {
        let mut x = kvm_xcrs {
            nr_xcrs: 1,
            ..Default::default()
        };
        x.xcrs[0] = kvm_xcr {
            xcr: 0,
            value: s.xcr0,
            ..Default::default()
        };
        vcpu.set_xcrs(&x).map_err(ioctl("KVM_SET_XCRS"))?;
    }
    if caps.debugregs && prev.is_none_or(|p| (p.dr, p.dr6, p.dr7) != (s.dr, s.dr6, s.dr7)) {
        let d = kvm_debugregs {
            db: s.dr,
            dr6: s.dr6,
            dr7: s.dr7,
            ..Default::default()
        };
        vcpu.set_debug_regs(&d)
            .map_err(ioctl("KVM_SET_DEBUGREGS"))?;
    }
    if caps.vcpu_events {
        vcpu.set_vcpu_events(&state::events_from_state(&s.events))
            .map_err(ioctl("KVM_SET_VCPU_EVENTS"))?;
    }
    let old = prev.map(|p| state::msr_entries(&p.msr));
    let entries: Vec<(u32, u64)> = state::msr_entries(&s.msr)
        .into_iter()
        .enumerate()
        .filter(|(_, (i, _))| msrs.indices.contains(i))
        .filter(|(n, (i, v))| match &old {
            None => true,
            Some(o) => *i != msr_index::TSC && o[*n].1 != *v,
        })
        .map(|(_, e)| e)
        .collect();
    let mut rest = &entries[..];
    while !rest.is_empty() {
        let n = vcpu
            .set_msrs(&msr_list(rest)?)
            .map_err(ioctl("KVM_SET_MSRS"))?;
        let Some(refused) = rest.get(n) else { break };
        // KVM stops at the first MSR it refuses (e.g. the TSC deadline without an in-kernel
        // LAPIC); the others still go in.
        log::debug!("KVM refused MSR {:#x} = {:#x}", refused.0, refused.1);
        rest = &rest[n + 1..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The state survives a trip through a real vCPU (where /dev/kvm is usable).
    #[test]
    fn state_round_trips_through_a_real_vcpu() {
        let vm = match KvmVm::open(Path::new(crate::kvm::DEFAULT_DEVICE)) {
            Ok(vm) => vm,
            Err(e) => {
                eprintln!("SKIPPED (KVM unusable here): {e}");
                return;
            }
        };
        let vcpu = match vm.create_vcpu(0) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("SKIPPED (KVM unusable here): {e}");
                return;
            }
        };
        let supported = vm
            .kvm
            .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .expect("supported cpuid");
        let (table, _) = crate::kvm::cpuid::build(&twinvm_cpu::CpuModel::max(), &supported, true)
            .expect("cpuid table");
        vcpu.set_cpuid2(&table).expect("set cpuid");
        let msrs = MsrSet::new(&vm).expect("msr list");
        let mut s = super::super::state::tests::busy_state();
        // What a real vCPU accepts: canonical, consistent long-mode state.
        s.rflags = 0x202 | twinvm_cpu::state::rflags::AC;
        s.cr4 = 0x6a0; // PAE PGE OSFXSR OSXMMEXCPT
        s.cr0 = 0x8005_0033;
        s.msr.apic_base = 0xfee0_0900;
        s.msr.star = 0x0023_0010_0000_0000;
        s.msr.lstar = 0xffff_ffff_8100_0000;
        s.msr.sfmask = 0x4700;
        s.msr.kernel_gs_base = 0xffff_8880_1234_0000;
        s.msr.sysenter_eip = 0xffff_ffff_8100_1000;
        s.msr.pat = 0x0007_0406_0007_0406;
        s.fx.0[160..176].copy_from_slice(&[0x5a; 16]);
        s.fx.0[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        s.events.interrupt_shadow = true;
        set_state(&vcpu, &vm.caps, &msrs, &s, None).expect("set state");
        let t = get_state(&vcpu, &vm.caps, &msrs, &s).expect("get state");
        assert_eq!((t.gpr, t.rip, t.rflags), (s.gpr, s.rip, s.rflags));
        for i in 0..6 {
            assert_eq!(t.seg[i].selector, s.seg[i].selector, "segment {i}");
            assert_eq!(t.seg[i].base, s.seg[i].base, "segment {i}");
        }
        assert_eq!(t.seg[1], s.seg[1], "CS");
        assert_eq!((t.gdtr, t.idtr), (s.gdtr, s.idtr));
        assert_eq!((t.cr0, t.cr2, t.cr3, t.cr4), (s.cr0, s.cr2, s.cr3, s.cr4));
        assert_eq!(t.efer, s.efer);
        assert_eq!(t.fx.0[160..176], s.fx.0[160..176]);
        for idx in &msrs.indices {
            if *idx == msr_index::TSC {
                continue;
            }
            let want = state::msr_entries(&s.msr).into_iter().find(|e| e.0 == *idx);
            let got = state::msr_entries(&t.msr).into_iter().find(|e| e.0 == *idx);
            if want.is_some_and(|w| w.1 != 0) {
                assert_eq!(got, want, "MSR {idx:#x}");
            }
        }
        if vm.caps.vcpu_events {
            assert!(t.events.interrupt_shadow);
        }
    }
}
