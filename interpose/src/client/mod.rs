//! The client core.

mod batch;
mod connection;
mod params;
mod select;

pub use connection::{BatchCounters, Client, ConnectError, LaunchDims, OutputSink};
pub use params::pack_params;
pub use select::{candidates, connect_first, AUTO_SHM_NAME};
