//! Plugs a vCPU's LAPIC model (devices' `VcpuApic`) into the CPU's `LocalApicPort`.

use std::sync::Arc;

use twinvm_cpu::LocalApicPort;
use twinvm_devices::lapic::{VcpuApic, MSR_TSC_DEADLINE};

pub struct ApicPort(pub Arc<VcpuApic>);

impl LocalApicPort for ApicPort {
    fn read_msr(&self, msr: u32, _tsc: u64) -> Option<Result<u64, ()>> {
        if msr == MSR_TSC_DEADLINE {
            return Some(Ok(self.0.read_tsc_deadline()));
        }
        VcpuApic::handles_msr(msr).then(|| self.0.read_msr(msr).map_err(|e| log::debug!("{e}")))
    }

    fn write_msr(&self, msr: u32, value: u64, tsc: u64) -> Option<Result<(), ()>> {
        if msr == MSR_TSC_DEADLINE {
            self.0.write_tsc_deadline(value, tsc);
            return Some(Ok(()));
        }
        VcpuApic::handles_msr(msr)
            .then(|| self.0.write_msr(msr, value).map_err(|e| log::debug!("{e}")))
    }

    fn mmio_base(&self) -> Option<u64> {
        self.0.mmio_base()
    }

    fn mmio_read(&self, offset: u64, data: &mut [u8]) {
        self.0.mmio_read(offset, data)
    }

    fn mmio_write(&self, offset: u64, data: &[u8]) {
        self.0.mmio_write(offset, data)
    }

    fn cr8(&self) -> u64 {
        self.0.cr8()
    }

    fn set_cr8(&self, v: u64) {
        self.0.set_cr8(v)
    }

    fn nmi_pending(&self) -> bool {
        self.0.signals().nmi()
    }

    fn take_nmi(&self) -> bool {
        self.0.take_nmi()
    }
}
