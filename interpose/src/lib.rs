//! remora's client side.
//!
//! [`client::Client`] is the client core: one connection per process, thread-safe, with CUDA's
//! error model (asynchronous errors reported by the next synchronising call, fatal device
//! errors sticky for the rest of the session). The `libcudart.so.13` front door (C shims) is
//! built on it.
//!
//! # Quick start
//! ```no_run
//! use remora_interpose::client::Client;
//! let c = Client::connect("tcp://127.0.0.1:7070", None).unwrap();
//! let p = c.mem_alloc(0, 1024).unwrap();
//! c.memcpy_htod(p, &[1u8; 1024]).unwrap();
//! let mut back = [0u8; 1024];
//! c.memcpy_dtoh(&mut back, p).unwrap();
//! c.mem_free(p).unwrap();
//! ```

pub mod client;
pub mod cudart;
pub mod fatbin;
pub mod nvinfo;
