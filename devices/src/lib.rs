//! twinvm-devices: guest memory, the PIO/MMIO buses, interrupt lines, virtual time and the
//! PC device models. Device models know nothing about engines: every engine drives them
//! through the same [`bus::Bus`].

pub mod acpi_pm;
pub mod bus;
pub mod clock;
pub mod control;
pub mod debug_exit;
pub mod fw_cfg;
pub mod gsi;
pub mod i8042;
pub mod ioapic;
pub mod irq;
pub mod lapic;
pub mod memory;
pub mod pc_testdev;
pub mod pci;
pub mod pci_testdev;
pub mod pic;
pub mod pit;
pub mod reset;
pub mod rtc;
pub mod uart;

pub use bus::{Bus, Device, SharedDevice};
pub use control::{StopRequest, VmControl};
pub use irq::{InterruptController, IrqLine, IrqSink};
pub use memory::GuestMemory;
#[cfg(test)]
pub(crate) mod test_util;
