//! Passing file descriptors between processes over Unix sockets (SCM_RIGHTS). (Being written.)
