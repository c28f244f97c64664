//! The client core.

mod connection;
mod params;

pub use connection::{Client, ConnectError, LaunchDims};
pub use params::pack_params;
