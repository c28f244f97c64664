//! remora's server. (Being written.)
pub mod backend;
