//! Thin, checked wrappers over the few socket system calls the backends share. Every function
//! retries `EINTR` where that is the right answer and returns the raw [`io::Error`]; callers add
//! context with [`crate::Error::io`].

use std::io::{self, IoSlice};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// `recv(2)` into `buf` with `flags`, retrying `EINTR`. `Ok(0)` is end of stream (for a
/// non-empty `buf`).
pub(crate) fn recv(fd: RawFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is a valid, exclusively borrowed region of `buf.len()` writable bytes
        // for the duration of the call; the kernel writes at most that many.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `send(2)` of `buf` with `flags` (`MSG_NOSIGNAL` is always added), retrying `EINTR`.
pub(crate) fn send(fd: RawFd, buf: &[u8], flags: libc::c_int) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is a valid region of `buf.len()` readable bytes for the call.
        let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), flags | libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Most iovecs one `sendmsg` takes (Linux `UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

/// Write every byte of `parts` to a blocking stream socket with `sendmsg(2)`, gathering the
/// parts without copying them and continuing after partial writes. `MSG_NOSIGNAL`: a closed
/// peer is `EPIPE`, never a `SIGPIPE` that kills the process.
pub(crate) fn send_all_vectored(fd: RawFd, parts: &[&[u8]]) -> io::Result<()> {
    const INLINE: usize = 8;
    let mut inline = [IoSlice::new(&[]); INLINE];
    let mut heap = Vec::new();
    let slices: &mut [IoSlice<'_>] = if parts.len() <= INLINE {
        for (s, p) in inline.iter_mut().zip(parts) {
            *s = IoSlice::new(p);
        }
        &mut inline[..parts.len()]
    } else {
        heap.extend(parts.iter().map(|p| IoSlice::new(p)));
        &mut heap
    };
    let mut slices = slices;
    // Skip leading empty parts so that an all-empty send makes no system call.
    IoSlice::advance_slices(&mut slices, 0);
    while slices.iter().any(|s| !s.is_empty()) {
        // SAFETY: msghdr is plain data; all-zero is a valid "empty" value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        // IoSlice is guaranteed ABI-compatible with `struct iovec` on Unix.
        msg.msg_iov = slices.as_mut_ptr().cast::<libc::iovec>();
        msg.msg_iovlen = slices.len().min(IOV_MAX) as _;
        // SAFETY: `msg` points to `msg_iovlen` live iovecs borrowed from `parts`; the kernel
        // only reads them during the call. No control buffer.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        IoSlice::advance_slices(&mut slices, n as usize);
    }
    Ok(())
}

/// `poll(2)` one descriptor for `events` until something is ready or `timeout` passes
/// (`None`: forever). Returns the `revents` (0 on timeout). `EINTR` resumes with the time left.
pub(crate) fn poll_one(fd: RawFd, events: libc::c_short, timeout: Option<Duration>) -> io::Result<libc::c_short> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let ms: libc::c_int = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up so that a sub-millisecond wait does not become a busy loop.
                let ms = left.as_nanos().div_ceil(1_000_000);
                libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
            }
        };
        let mut pfd = libc::pollfd { fd, events, revents: 0 };
        // SAFETY: `pfd` is one valid pollfd, alive for the call.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r >= 0 {
            return Ok(pfd.revents);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `size_of::<T>()` as a `socklen_t`, for the small option structs passed below.
#[expect(clippy::cast_possible_truncation, reason = "socket option values are a few bytes")]
const fn socklen_of<T>() -> libc::socklen_t {
    size_of::<T>() as libc::socklen_t
}

/// `setsockopt(2)` for an `int` option.
pub(crate) fn set_int_opt(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: we pass a pointer to a live c_int and its exact size.
    let r = unsafe { libc::setsockopt(fd, level, name, (&raw const value).cast(), socklen_of::<libc::c_int>()) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `getsockopt(2)` for an `int` option.
pub(crate) fn get_int_opt(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = socklen_of::<libc::c_int>();
    // SAFETY: `value` and `len` are live locals; the kernel writes at most `len` bytes.
    let r = unsafe { libc::getsockopt(fd, level, name, (&raw mut value).cast(), &mut len) };
    if r == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The peer's process id on a Unix socket (`SO_PEERCRED`), for logs.
pub(crate) fn peer_pid(fd: RawFd) -> Option<i32> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = socklen_of::<libc::ucred>();
    // SAFETY: `cred` and `len` are live locals; the kernel writes at most `len` bytes.
    let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERCRED, (&raw mut cred).cast(), &mut len) };
    (r == 0 && cred.pid > 0).then_some(cred.pid)
}
