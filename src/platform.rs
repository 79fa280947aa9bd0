//! Platform devices beyond the core PC set: power and reset controls.

use std::sync::{Arc, Mutex};

use twinvm_devices::acpi_pm::{AcpiPm, ACPI_PM_BASE, ACPI_PM_LEN};
use twinvm_devices::clock::Clock;
use twinvm_devices::reset::{Port92, ResetControl, PORT92, RESET_CONTROL_PORT};
use twinvm_devices::{Bus, VmControl};

use crate::error::VmError;

/// The ACPI PM1a block and PM timer, port 0x92 and the 0xCF9 reset register.
pub fn add_power_devices(
    pio: &mut Bus,
    control: &Arc<VmControl>,
    clock: &Arc<dyn Clock>,
) -> Result<(), VmError> {
    let map = |e: twinvm_devices::bus::BusConflict| VmError::Host(e.to_string());
    pio.insert(
        ACPI_PM_BASE,
        ACPI_PM_LEN,
        Arc::new(Mutex::new(AcpiPm::new(clock.clone(), control.clone()))),
    )
    .map_err(map)?;
    pio.insert(
        PORT92,
        1,
        Arc::new(Mutex::new(Port92::new(control.clone()))),
    )
    .map_err(map)?;
    pio.insert(
        RESET_CONTROL_PORT,
        1,
        Arc::new(Mutex::new(ResetControl::new(control.clone()))),
    )
    .map_err(map)?;
    Ok(())
}
