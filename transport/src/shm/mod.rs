//! `shm://name` backend. (Being written.)
