//! `tcp://host:port` backend. (Being written.)
