//! Builds the guest images in firmware/ with the system assembler and linker, so that the
//! demo and benchmark guests can be embedded and the tests can find every guest.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("firmware");
    println!("cargo:rerun-if-changed=firmware");
    let status = Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg("firmware")
        .arg(format!("OUT={}", out.display()))
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            panic!("building the firmware guests failed ({s}); they need make, as, ld and gcc")
        }
        Err(e) => panic!(
            "cannot run make to build the firmware guests: {e}; install make, binutils and gcc"
        ),
    }
    println!("cargo:rustc-env=TWINVM_FIRMWARE_DIR={}", out.display());
}
