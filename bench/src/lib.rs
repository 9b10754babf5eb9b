//! Benchmarks and the fuzzer of dml; this library holds what their binaries and tests share.

pub mod fuzz_targets;
