//! Passing file descriptors between processes over Unix sockets (`SCM_RIGHTS`).
//!
//! Two layers:
//! - [`send_fds`] / [`recv_fds`]: one `sendmsg`/`recvmsg` carrying bytes plus descriptors.
//!   Received descriptors are close-on-exec (`MSG_CMSG_CLOEXEC`) and owned ([`OwnedFd`]), so
//!   nothing leaks on an error path.
//! - [`send_handoff`] / [`recv_handoff`]: a [`Handoff`] (a link taken apart) plus up to
//!   [`MAX_HANDOFF_EXTRA`] bytes of the caller's own (e.g. the session's negotiated state), as one
//!   message on a `SOCK_STREAM` Unix socket. The receiver reads exactly the message's bytes, so
//!   messages may follow each other on the same socket.
//!
//! Handoff message layout (little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `b"RMHO"` |
//! | 4 | 1 | format version (1) |
//! | 5 | 1 | [`LinkKind`] |
//! | 6 | 1 | `server_side` (0 or 1) |
//! | 7 | 1 | number of descriptors attached |
//! | 8 | 4 | length of the extra bytes that follow |
//! | 12 | n | extra bytes |

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use crate::{Handoff, LinkKind};

/// Most descriptors one message may carry (the kernel's `SCM_MAX_FD`).
pub const MAX_FDS: usize = 253;
/// Most extra bytes [`send_handoff`] carries beside a [`Handoff`].
pub const MAX_HANDOFF_EXTRA: usize = 4096;
/// Most descriptors a [`Handoff`] may hold.
const MAX_HANDOFF_FDS: usize = 8;
const HANDOFF_MAGIC: [u8; 4] = *b"RMHO";
const HANDOFF_VERSION: u8 = 1;
const HANDOFF_HEADER_LEN: usize = 12;

fn invalid_input(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, why.to_string())
}

fn invalid_data(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// Bytes of control buffer needed for `n` descriptors, in `u64` words (so it is aligned for
/// `cmsghdr`).
fn cmsg_words(n: usize) -> usize {
    let payload = u32::try_from(n * size_of::<RawFd>()).unwrap_or(u32::MAX);
    // SAFETY: CMSG_SPACE is pure arithmetic on its argument; it dereferences nothing.
    let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
    space.div_ceil(size_of::<u64>())
}

/// Block until `fd` is writable (used when a caller hands us a nonblocking socket).
fn wait_writable(fd: RawFd) -> io::Result<()> {
    let mut pfd = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
    loop {
        // SAFETY: `pfd` is a valid pollfd for the duration of the call and we pass a count of 1.
        let r = unsafe { libc::poll(&mut pfd, 1, -1) };
        if r >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Send all of `parts` with `fds` attached to the first byte. `parts` must hold at least one
/// byte: a stream socket carries descriptors only alongside data.
fn send_fds_vectored(sock: &UnixStream, parts: &[&[u8]], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if total == 0 {
        return Err(invalid_input("send_fds needs at least one data byte to carry descriptors"));
    }
    if fds.len() > MAX_FDS {
        return Err(invalid_input("too many descriptors for one message (at most 253)"));
    }
    let mut slices: Vec<io::IoSlice<'_>> =
        parts.iter().filter(|p| !p.is_empty()).map(|p| io::IoSlice::new(p)).collect();
    let mut slices: &mut [io::IoSlice<'_>] = &mut slices;
    let mut control = vec![0u64; if fds.is_empty() { 0 } else { cmsg_words(fds.len()) }];
    let mut fds_pending = !fds.is_empty();
    while !slices.is_empty() {
        // SAFETY: msghdr is plain data; all-zero is a valid "empty" value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        // IoSlice is guaranteed ABI-compatible with `struct iovec` on Unix.
        msg.msg_iov = slices.as_mut_ptr().cast::<libc::iovec>();
        msg.msg_iovlen = slices.len().min(1024) as _;
        if fds_pending {
            // At most MAX_FDS * 4 bytes (checked above).
            let bytes =
                u32::try_from(fds.len() * size_of::<RawFd>()).map_err(|_| invalid_input("too many descriptors"))?;
            msg.msg_control = control.as_mut_ptr().cast();
            // Exactly the space one header needs, as the kernel expects; `control` holds at
            // least that many bytes.
            // SAFETY: CMSG_SPACE is pure arithmetic.
            msg.msg_controllen = unsafe { libc::CMSG_SPACE(bytes) } as _;
            // SAFETY: `msg.msg_control` points to `control`, which is large enough
            // (CMSG_SPACE(bytes), rounded up) and u64-aligned, so CMSG_FIRSTHDR returns a
            // non-null pointer to its start, and CMSG_DATA stays inside it for `bytes` bytes.
            unsafe {
                let cmsg = libc::CMSG_FIRSTHDR(&msg);
                (*cmsg).cmsg_level = libc::SOL_SOCKET;
                (*cmsg).cmsg_type = libc::SCM_RIGHTS;
                (*cmsg).cmsg_len = libc::CMSG_LEN(bytes) as _;
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for (i, fd) in fds.iter().enumerate() {
                    data.add(i).write_unaligned(fd.as_raw_fd());
                }
            }
        }
        // SAFETY: `msg` points to live iovecs (borrowed from `parts`) and, when set, to the
        // control buffer filled above; the kernel only reads them during the call.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    wait_writable(sock.as_raw_fd())?;
                    continue;
                }
                _ => return Err(e),
            }
        }
        // Any byte sent means the descriptors went with it.
        fds_pending = false;
        io::IoSlice::advance_slices(&mut slices, n as usize);
    }
    Ok(())
}

/// Send `data` (at least one byte) with `fds` attached, over a Unix stream socket. Partial
/// writes are completed; the descriptors travel with the first byte. The caller keeps its own
/// copies of the descriptors.
pub fn send_fds(sock: &UnixStream, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    send_fds_vectored(sock, &[data], fds)
}

/// Receive up to `buf.len()` bytes and up to `max_fds` descriptors with one `recvmsg`.
///
/// Returns the byte count (0 at end of stream) and the descriptors received, close-on-exec.
/// More descriptors than `max_fds` is an error (`InvalidData`; the kernel has closed the excess
/// and the ones received are closed too). A short read leaves the rest of the sender's bytes in
/// the socket for plain reads; the descriptors always arrive with the first byte.
pub fn recv_fds(sock: &UnixStream, buf: &mut [u8], max_fds: usize) -> io::Result<(usize, Vec<OwnedFd>)> {
    if max_fds > MAX_FDS {
        return Err(invalid_input("max_fds above the kernel's limit of 253"));
    }
    // Always room for at least one descriptor, so that unexpected ones are detected (and
    // closed) rather than silently dropped by the kernel.
    let mut control = vec![0u64; cmsg_words(max_fds.max(1))];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    loop {
        // SAFETY: msghdr is plain data; all-zero is a valid "empty" value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = (control.len() * size_of::<u64>()) as _;
        // SAFETY: the iovec covers `buf` (writable, exclusively borrowed) and the control
        // buffer is `control`, both alive for the call; the kernel writes within the lengths.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut fds = Vec::new();
        // SAFETY: after a successful recvmsg, `msg.msg_control`/`msg_controllen` describe the
        // control messages the kernel wrote into `control`; CMSG_FIRSTHDR/NXTHDR walk them
        // within those bounds and return null at the end. Each SCM_RIGHTS payload holds
        // `(cmsg_len - CMSG_LEN(0)) / 4` descriptors that are newly installed in this process
        // and owned by nobody else, so wrapping each in an OwnedFd is sound.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                    let bytes = ((*cmsg).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                    for i in 0..bytes / size_of::<RawFd>() {
                        fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 || fds.len() > max_fds {
            return Err(invalid_data(format!(
                "peer sent more file descriptors than the {max_fds} expected; they were closed"
            )));
        }
        return Ok((n as usize, fds));
    }
}

/// Send `handoff`'s descriptors and identity, plus `extra` (at most [`MAX_HANDOFF_EXTRA`]
/// bytes), as one message.
///
/// The caller still owns `handoff` and must drop it once sent: while any copy of a link's socket
/// stays open, its peer never sees end of stream, so peer-death detection would stop working.
/// The receiver must read the message with [`recv_handoff`] (a plain `read` would discard the
/// descriptors).
pub fn send_handoff(sock: &UnixStream, handoff: &Handoff, extra: &[u8]) -> io::Result<()> {
    if extra.len() > MAX_HANDOFF_EXTRA {
        return Err(invalid_input("handoff extra bytes exceed 4096"));
    }
    if handoff.fds.is_empty() || handoff.fds.len() > MAX_HANDOFF_FDS {
        return Err(invalid_input("a handoff carries 1 to 8 descriptors"));
    }
    let mut hdr = [0u8; HANDOFF_HEADER_LEN];
    hdr[..4].copy_from_slice(&HANDOFF_MAGIC);
    hdr[4] = HANDOFF_VERSION;
    hdr[5] = handoff.kind as u8;
    hdr[6] = u8::from(handoff.server_side);
    hdr[7] = u8::try_from(handoff.fds.len()).map_err(|_| invalid_input("too many descriptors"))?;
    let extra_len = u32::try_from(extra.len()).map_err(|_| invalid_input("extra too long"))?;
    hdr[8..12].copy_from_slice(&extra_len.to_le_bytes());
    let fds: Vec<BorrowedFd<'_>> = handoff.fds.iter().map(AsFd::as_fd).collect();
    send_fds_vectored(sock, &[&hdr, extra], &fds)
}

/// Receive one message sent by [`send_handoff`]: the [`Handoff`] is returned and the extra
/// bytes replace the contents of `extra_buf`. End of stream before any byte is
/// `UnexpectedEof`; a malformed message is `InvalidData` (its descriptors are closed).
pub fn recv_handoff(sock: &UnixStream, extra_buf: &mut Vec<u8>) -> io::Result<Handoff> {
    let mut hdr = [0u8; HANDOFF_HEADER_LEN];
    let (n, fds) = recv_fds(sock, &mut hdr, MAX_HANDOFF_FDS)?;
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "socket closed before a handoff arrived"));
    }
    let mut reader = sock;
    reader.read_exact(&mut hdr[n..])?;
    if hdr[..4] != HANDOFF_MAGIC || hdr[4] != HANDOFF_VERSION {
        return Err(invalid_data(format!("not a handoff message (header {:02x?})", &hdr[..5])));
    }
    let kind = match hdr[5] {
        1 => LinkKind::Tcp,
        2 => LinkKind::Shm,
        k => return Err(invalid_data(format!("handoff of unknown link kind {k}"))),
    };
    let server_side = match hdr[6] {
        0 => false,
        1 => true,
        s => return Err(invalid_data(format!("handoff server_side byte {s} is not 0 or 1"))),
    };
    if usize::from(hdr[7]) != fds.len() {
        return Err(invalid_data(format!("handoff announced {} descriptors but carried {}", hdr[7], fds.len())));
    }
    let extra_len = u32::from_le_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]) as usize;
    if extra_len > MAX_HANDOFF_EXTRA {
        return Err(invalid_data(format!("handoff announced {extra_len} extra bytes (at most 4096)")));
    }
    extra_buf.clear();
    extra_buf.resize(extra_len, 0);
    reader.read_exact(extra_buf)?;
    Ok(Handoff { kind, fds, server_side })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::{Seek, SeekFrom, Write};

    fn tmpfile(content: &[u8]) -> File {
        let path = std::env::temp_dir().join(format!("remora-fdpass-{}-{}", std::process::id(), content.len()));
        let mut f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        f.write_all(content).unwrap();
        f
    }

    fn read_all(fd: OwnedFd) -> Vec<u8> {
        let mut f = File::from(fd);
        f.seek(SeekFrom::Start(0)).unwrap();
        let mut v = Vec::new();
        f.read_to_end(&mut v).unwrap();
        v
    }

    fn is_cloexec(fd: &OwnedFd) -> bool {
        // SAFETY: F_GETFD on a descriptor we own; no memory is passed.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
        flags & libc::FD_CLOEXEC != 0
    }

    #[test]
    fn bytes_and_fds_round_trip() {
        let (a, b) = UnixStream::pair().unwrap();
        let f1 = tmpfile(b"first");
        let f2 = tmpfile(b"second!");
        send_fds(&a, b"hello", &[f1.as_fd(), f2.as_fd()]).unwrap();
        send_fds(&a, b"no fds", &[]).unwrap();
        let mut buf = [0u8; 5];
        let (n, fds) = recv_fds(&b, &mut buf, 4).unwrap();
        assert_eq!((n, &buf), (5, b"hello"));
        assert_eq!(fds.len(), 2);
        assert!(fds.iter().all(is_cloexec));
        let mut it = fds.into_iter();
        assert_eq!(read_all(it.next().unwrap()), b"first");
        assert_eq!(read_all(it.next().unwrap()), b"second!");
        let mut buf = [0u8; 16];
        let (n, fds) = recv_fds(&b, &mut buf, 4).unwrap();
        assert_eq!(&buf[..n], b"no fds");
        assert!(fds.is_empty());
        drop(a);
        assert_eq!(recv_fds(&b, &mut buf, 4).unwrap().0, 0);
    }

    #[test]
    fn too_many_fds_is_an_error_and_empty_data_refused() {
        let (a, b) = UnixStream::pair().unwrap();
        let f = tmpfile(b"x");
        send_fds(&a, b"x", &[f.as_fd(), f.as_fd(), f.as_fd()]).unwrap();
        let mut buf = [0u8; 1];
        let e = recv_fds(&b, &mut buf, 1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(send_fds(&a, b"", &[f.as_fd()]).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn handoffs_follow_each_other_with_extra_bytes() {
        let (a, b) = UnixStream::pair().unwrap();
        let h1 = Handoff {
            kind: LinkKind::Shm,
            fds: vec![OwnedFd::from(tmpfile(b"sock")), OwnedFd::from(tmpfile(b"region"))],
            server_side: true,
        };
        let h2 = Handoff { kind: LinkKind::Tcp, fds: vec![OwnedFd::from(tmpfile(b"tcp"))], server_side: false };
        let big = vec![0x5a; MAX_HANDOFF_EXTRA];
        send_handoff(&a, &h1, b"session state").unwrap();
        send_handoff(&a, &h2, &big).unwrap();
        send_handoff(&a, &h2, &[]).unwrap();
        assert_eq!(send_handoff(&a, &h2, &[0; MAX_HANDOFF_EXTRA + 1]).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        drop((h1, h2));
        let mut extra = Vec::new();
        let r1 = recv_handoff(&b, &mut extra).unwrap();
        assert_eq!((r1.kind, r1.server_side, r1.fds.len()), (LinkKind::Shm, true, 2));
        assert_eq!(extra, b"session state");
        let mut it = r1.fds.into_iter();
        assert_eq!(read_all(it.next().unwrap()), b"sock");
        assert_eq!(read_all(it.next().unwrap()), b"region");
        let r2 = recv_handoff(&b, &mut extra).unwrap();
        assert_eq!((r2.kind, r2.server_side, r2.fds.len()), (LinkKind::Tcp, false, 1));
        assert_eq!(extra, big);
        let r3 = recv_handoff(&b, &mut extra).unwrap();
        assert_eq!(r3.kind, LinkKind::Tcp);
        assert!(extra.is_empty());
        drop(a);
        assert_eq!(recv_handoff(&b, &mut extra).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn garbage_is_not_a_handoff() {
        let (a, b) = UnixStream::pair().unwrap();
        let f = tmpfile(b"x");
        send_fds(&a, b"GARBAGE_BYTES", &[f.as_fd()]).unwrap();
        let mut extra = Vec::new();
        assert_eq!(recv_handoff(&b, &mut extra).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
