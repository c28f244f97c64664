//! The `extern "C"` exports. Safety contract of every export: its pointer arguments are what the
//! CUDA runtime API documents for that function (checked for null, never otherwise trusted
//! beyond that contract); see `crate::ffi`.
#![allow(clippy::missing_safety_doc)]
// Exported through the C ABI, not through Rust paths.
#![allow(unreachable_pub)]

pub(crate) mod array;
mod device;
mod error;
mod event;
mod graph;
pub(crate) mod launch;
mod managed;
pub(crate) mod memory;
mod mempool;
mod per_thread;
mod register;
pub(crate) mod stream;
mod texture;
