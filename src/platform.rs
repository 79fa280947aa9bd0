//! Platform devices beyond the core PC set: power and reset controls, the APICs, and what
//! test kernels written for QEMU's `pc` machine expect to find (fw_cfg, pc-testdev, PCI with
//! the i440FX host bridge and pci-testdev).

use std::sync::{Arc, Mutex};

use twinvm_devices::acpi_pm::{AcpiPm, ACPI_PM_BASE, ACPI_PM_LEN};
use twinvm_devices::clock::{Clock, Timed};
use twinvm_devices::fw_cfg::{E820Entry, FwCfg, FW_CFG_PORT_LEN, FW_CFG_SELECTOR_PORT};
use twinvm_devices::ioapic::{IoApic, IoApicMmio, IOAPIC_BASE, IOAPIC_MMIO_LEN};
use twinvm_devices::lapic::{ApicBus, LocalApic, VcpuApic};
use twinvm_devices::pc_testdev::{
    PcTestdev, PcTestdevRange, TestdevRange, TESTDEV_BYTE_PORT, TESTDEV_FLUSH_PORT,
    TESTDEV_IOMEM_BASE, TESTDEV_IOMEM_LEN, TESTDEV_IRQ_LINES, TESTDEV_IRQ_PORT,
    TESTDEV_SCRATCH_PORT,
};
use twinvm_devices::pci::{
    add_chipset, PciBus, PciConfigPorts, PciWindow, PCI_CONFIG_ADDRESS, PCI_CONFIG_PORTS_LEN,
    PCI_IO_WINDOW, PCI_MMIO_WINDOW,
};
use twinvm_devices::pci_testdev::PciTestdev;
use twinvm_devices::pic::IsaInterrupts;
use twinvm_devices::reset::{Port92, ResetControl, PORT92};
use twinvm_devices::{Bus, IrqSink, SharedDevice, VmControl};

use crate::error::VmError;

/// Where pci-testdev's BARs are, as a BIOS would have placed them.
pub const PCI_TESTDEV_MEM_BAR: u64 = 0xfeb0_0000;
pub const PCI_TESTDEV_IO_BAR: u64 = 0xc000;
/// pci-testdev's slot: 00:02.0, the first free one after the chipset (as with QEMU's
/// `-nodefaults -device pci-testdev`).
pub const PCI_TESTDEV_DEVFN: u8 = 0x10;

fn insert(bus: &mut Bus, base: u64, len: u64, dev: SharedDevice) -> Result<(), VmError> {
    bus.insert(base, len, dev)
        .map_err(|e| VmError::Host(e.to_string()))
}

/// The ACPI PM1a block and PM timer, port 0x92, and the PCI configuration ports with the
/// 0xCF9 reset control register among them.
pub fn add_power_devices(
    pio: &mut Bus,
    mmio: &mut Bus,
    control: &Arc<VmControl>,
    clock: &Arc<dyn Clock>,
) -> Result<(), VmError> {
    insert(
        pio,
        ACPI_PM_BASE,
        ACPI_PM_LEN,
        Arc::new(Mutex::new(AcpiPm::new(clock.clone(), control.clone()))),
    )?;
    insert(
        pio,
        PORT92,
        1,
        Arc::new(Mutex::new(Port92::new(control.clone()))),
    )?;
    add_pci(pio, mmio, control)
}

fn add_pci(pio: &mut Bus, mmio: &mut Bus, control: &Arc<VmControl>) -> Result<(), VmError> {
    let bus = PciBus::new();
    {
        let mut b = twinvm_devices::bus::lock(&bus);
        add_chipset(&mut b).map_err(VmError::Host)?;
        b.add(
            PCI_TESTDEV_DEVFN,
            Box::new(PciTestdev::new(PCI_TESTDEV_MEM_BAR, PCI_TESTDEV_IO_BAR)),
        )
        .map_err(VmError::Host)?;
    }
    let reset = Box::new(ResetControl::new(control.clone()));
    insert(
        pio,
        PCI_CONFIG_ADDRESS,
        PCI_CONFIG_PORTS_LEN,
        Arc::new(Mutex::new(PciConfigPorts::new(bus.clone(), reset))),
    )?;
    let (base, len) = PCI_IO_WINDOW;
    insert(
        pio,
        base,
        len,
        Arc::new(Mutex::new(PciWindow::new(bus.clone(), base, true))),
    )?;
    let (base, len) = PCI_MMIO_WINDOW;
    insert(
        mmio,
        base,
        len,
        Arc::new(Mutex::new(PciWindow::new(bus, base, false))),
    )
}

/// fw_cfg and pc-testdev. `irq` is where the testdev's IRQ line control goes (the GSI
/// router: ISA IRQs to the PIC and IOAPIC alike).
pub fn add_qemu_test_devices(
    pio: &mut Bus,
    mmio: &mut Bus,
    irq: Arc<dyn IrqSink>,
    ram: u64,
    cpus: usize,
    e820: &[E820Entry],
) -> Result<(), VmError> {
    insert(
        pio,
        FW_CFG_SELECTOR_PORT,
        FW_CFG_PORT_LEN,
        Arc::new(Mutex::new(FwCfg::new(ram, cpus as u16, e820))),
    )?;
    let dev = PcTestdev::new(irq);
    let range = |r| Arc::new(Mutex::new(PcTestdevRange::new(dev.clone(), r)));
    insert(pio, TESTDEV_SCRATCH_PORT, 4, range(TestdevRange::Scratch))?;
    insert(pio, TESTDEV_FLUSH_PORT, 4, range(TestdevRange::Flush))?;
    insert(pio, TESTDEV_BYTE_PORT, 4, range(TestdevRange::ScratchBytes))?;
    insert(
        pio,
        TESTDEV_IRQ_PORT,
        TESTDEV_IRQ_LINES,
        range(TestdevRange::IrqLines),
    )?;
    insert(
        mmio,
        TESTDEV_IOMEM_BASE,
        TESTDEV_IOMEM_LEN,
        range(TestdevRange::IoMem),
    )
}

/// The interrupt controllers of an APIC PC with `cpus` vCPUs.
pub struct Apics {
    pub bus: Arc<ApicBus>,
    pub ioapic: Arc<IoApic>,
    /// One per vCPU; vCPU 0 (the BSP) has the 8259s on LINT0.
    pub vcpus: Vec<Arc<VcpuApic>>,
    pub lapics: Vec<Arc<Mutex<LocalApic>>>,
}

/// Guest TSC and APIC bus clock: 1 GHz (the CPU's TSC_HZ).
const TSC_HZ: u64 = twinvm_cpu::cpu::TSC_HZ;

pub fn add_apics(
    mmio: &mut Bus,
    cpus: usize,
    clock: &Arc<dyn Clock>,
    isa: &Arc<IsaInterrupts>,
) -> Result<Apics, VmError> {
    let lapics: Vec<_> = (0..cpus)
        .map(|i| {
            Arc::new(Mutex::new(LocalApic::new(
                i as u32,
                i == 0,
                clock.clone(),
                TSC_HZ,
            )))
        })
        .collect();
    let bus = ApicBus::new(lapics.clone());
    let ioapic = IoApic::new(bus.clone());
    insert(
        mmio,
        IOAPIC_BASE,
        IOAPIC_MMIO_LEN,
        Arc::new(Mutex::new(IoApicMmio::new(ioapic.clone()))),
    )?;
    let vcpus = (0..cpus)
        .map(|i| {
            VcpuApic::new(&bus, i, (i == 0).then(|| isa.clone()))
                .map(Arc::new)
                .ok_or_else(|| VmError::Host(format!("vCPU {i} has no LAPIC")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Apics {
        bus,
        ioapic,
        vcpus,
        lapics,
    })
}

impl Apics {
    pub fn timed(&self) -> impl Iterator<Item = Arc<Mutex<dyn Timed>>> + '_ {
        self.lapics
            .iter()
            .map(|l| l.clone() as Arc<Mutex<dyn Timed>>)
    }
}
