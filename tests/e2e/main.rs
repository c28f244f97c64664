//! End-to-end tests: a real supervisor with worker processes, clients over tcp and shm.
//! The backend is `REMORA_TEST_BACKEND` (emulated by default; `cuda` on the GPU machine).
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // test code: a failed unwrap is a failed test; sizes are small

mod basics;
mod bench;
mod cudart;
mod faults;
mod lifecycle;
mod rdma;
mod robustness;
mod security;
mod stats;

/// The helper binary (workers, held clients): `REMORA_TEST_HELPER` when the tests run away from
/// their build tree (the GPU machine), else the one cargo built.
pub(crate) fn helper() -> String {
    std::env::var("REMORA_TEST_HELPER").unwrap_or_else(|_| env!("CARGO_BIN_EXE_remora-test-helper").to_string())
}
