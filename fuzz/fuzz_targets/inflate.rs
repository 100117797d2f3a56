//! The `inflate` fuzz target: see `fuzz-checks/src/inflate.rs` for the input
//! layout and what it asserts (shared with the stable replay test).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringfan_fuzz_checks::inflate::check(data));
