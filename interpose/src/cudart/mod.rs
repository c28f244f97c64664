//! The CUDA runtime ABI that the `libcudart.so.13` front door (`interpose/cudart/`) speaks:
//! its C types and constants ([`types`]) and its error codes, names and strings ([`errors`]).
//! Plain data and pure functions; the front door's state lives in the cdylib crate.

pub mod errors;
pub mod types;
