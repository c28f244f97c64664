//! remora's server.
//!
//! A [`supervisor::Supervisor`] accepts clients, authenticates them and hands each session to a
//! worker process of its own ([`worker`]), which executes the session's operations on a
//! [`backend::Backend`] (CUDA, or the emulated test double) from a busy-polling thread pinned
//! near the GPU. One process per session because a kernel fault poisons every CUDA context of
//! its process.
//!
//! # Quick start
//! ```no_run
//! use remora_server::supervisor::{Config, Supervisor};
//! let exe = std::env::current_exe().unwrap();
//! let cfg = Config::new(vec!["tcp://127.0.0.1:7070".parse().unwrap()], (exe, vec!["worker".into()]));
//! let sup = Supervisor::start(cfg).unwrap();
//! sup.wait();
//! ```

pub mod arena;
pub mod backend;
pub mod handles;
pub mod output;
pub mod placement;
pub mod polling;
pub mod report;
pub mod session;
pub mod staging;
pub mod stats;
pub mod supervisor;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod worker;

/// Server errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Configuration refused.
    #[error("configuration: {0}")]
    Config(String),
    /// Binding a listener failed.
    #[error("listen on {endpoint}: {source}")]
    Listen {
        /// The endpoint.
        endpoint: String,
        /// Why.
        source: remora_transport::Error,
    },
    /// An OS call failed.
    #[error("{0}: {1}")]
    Io(&'static str, std::io::Error),
}
