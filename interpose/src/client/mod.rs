//! The client core.

mod connection;
mod params;

pub use connection::{Client, ConnectError, LaunchDims, OutputSink};
pub use params::pack_params;
