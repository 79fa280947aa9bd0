//! twinvm-cpu
