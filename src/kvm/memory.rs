//! Guest memory as KVM memory slots: the very host mappings of `GuestMemory`, no copy.

use std::sync::Arc;

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_READONLY};
use twinvm_devices::memory::RegionKind;
use twinvm_devices::GuestMemory;

use super::device::{ioctl, KvmError, KvmVm};

/// Registers every region of `mem` as a slot (ROM read-only, so that guest writes to it
/// exit as MMIO and are dropped, as the interpreter drops them). Returns the mapping that
/// the slots point into; the caller keeps it alive as long as the VM.
pub fn map_guest_memory(vm: &KvmVm, mem: &Arc<GuestMemory>) -> Result<Arc<GuestMemory>, KvmError> {
    let max = vm.kvm.get_nr_memslots();
    if mem.regions().len() > max {
        return Err(KvmError::Setup(format!(
            "guest memory has {} regions, this KVM allows {max} memory slots",
            mem.regions().len()
        )));
    }
    for (slot, r) in mem.regions().iter().enumerate() {
        let region = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: if r.kind == RegionKind::Rom {
                KVM_MEM_READONLY
            } else {
                0
            },
            guest_phys_addr: r.gpa,
            memory_size: r.size,
            userspace_addr: r.host_ptr() as u64,
        };
        // SAFETY: `host_ptr` points to a live mapping of `size` bytes owned by `mem`, which
        // the caller keeps (through the returned Arc) until the VM is gone.
        unsafe { vm.vm.set_user_memory_region(region) }
            .map_err(ioctl("KVM_SET_USER_MEMORY_REGION"))?;
    }
    Ok(mem.clone())
}

/// Whether `gpa` is in a ROM region (a write exit there is a write to ROM, dropped).
pub fn is_rom(mem: &GuestMemory, gpa: u64) -> bool {
    mem.regions()
        .iter()
        .any(|r| r.kind == RegionKind::Rom && gpa >= r.gpa && gpa < r.end())
}
