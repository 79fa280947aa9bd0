//! Guest images built from firmware/ at build time and embedded in the binary.

/// The demo guest `twinvm run` boots when given no image.
pub const HELLO: &[u8] = include_bytes!(concat!(env!("TWINVM_FIRMWARE_DIR"), "/hello.elf"));

/// The CPU-bound benchmark guests: (name, image).
pub const BENCHES: &[(&str, &[u8])] = &[
    (
        "intloop",
        include_bytes!(concat!(env!("TWINVM_FIRMWARE_DIR"), "/bench-intloop.elf")),
    ),
    (
        "memcpy",
        include_bytes!(concat!(env!("TWINVM_FIRMWARE_DIR"), "/bench-memcpy.elf")),
    ),
    (
        "hash",
        include_bytes!(concat!(env!("TWINVM_FIRMWARE_DIR"), "/bench-hash.elf")),
    ),
];
