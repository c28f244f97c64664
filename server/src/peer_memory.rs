//! Same-host copies straight between the worker and its client's memory
//! ([`remora_wire::Opcode::MemcpyProcess`]): `process_vm_writev` / `process_vm_readv` on the
//! client's pid as the kernel reported it for the shm control socket (`SO_PEERCRED`), never a pid
//! the client names. The kernel checks the worker may access that process (same user, or the
//! client allowed it with `PR_SET_PTRACER`, or privilege); where it may not, the copy answers
//! `NOT_SUPPORTED` and the client copies through the ring. A bad address answers
//! `INVALID_VALUE`, never touches the worker's own memory.

use remora_wire::Status;

fn status_of(e: &std::io::Error) -> Status {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::ESRCH) | Some(libc::ENOSYS) => Status::NOT_SUPPORTED,
        _ => Status::INVALID_VALUE,
    }
}

/// Move `len` bytes between `local` (this process) and `addr` in process `pid`.
fn transfer(pid: u32, addr: u64, local: *mut u8, len: usize, to_peer: bool) -> Result<(), Status> {
    let addr = usize::try_from(addr).map_err(|_| Status::INVALID_VALUE)?;
    let pid = libc::pid_t::try_from(pid).map_err(|_| Status::NOT_SUPPORTED)?;
    let mut done = 0usize;
    while done < len {
        let at = addr.checked_add(done).ok_or(Status::INVALID_VALUE)?;
        // SAFETY: `local + done` stays inside the caller's buffer of `len` bytes.
        let here = libc::iovec { iov_base: unsafe { local.add(done) }.cast(), iov_len: len - done };
        let there = libc::iovec { iov_base: at as *mut libc::c_void, iov_len: len - done };
        // SAFETY: `here` describes memory of this process the caller lends for the call
        // (readable for a write to the peer, writable for a read); `there` is checked by the
        // kernel against the other process's mappings and never dereferenced here.
        let n = unsafe {
            if to_peer {
                libc::process_vm_writev(pid, &here, 1, &there, 1, 0)
            } else {
                libc::process_vm_readv(pid, &here, 1, &there, 1, 0)
            }
        };
        if n <= 0 {
            let e = std::io::Error::last_os_error();
            if n < 0 && e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(if n == 0 { Status::INVALID_VALUE } else { status_of(&e) });
        }
        done += n.unsigned_abs();
    }
    Ok(())
}

/// Copy `data` to `addr` in process `pid`.
pub fn write(pid: u32, addr: u64, data: &[u8]) -> Result<(), Status> {
    // The kernel only reads `data` for a write to the peer.
    transfer(pid, addr, data.as_ptr().cast_mut(), data.len(), true)
}

/// Copy `buf.len()` bytes at `addr` in process `pid` into `buf`.
pub fn read(pid: u32, addr: u64, buf: &mut [u8]) -> Result<(), Status> {
    transfer(pid, addr, buf.as_mut_ptr(), buf.len(), false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn copies_within_this_process_and_refuses_bad_addresses() {
        let me = std::process::id();
        let src = vec![7u8; 100_000];
        let mut dst = vec![0u8; 100_000];
        write(me, dst.as_mut_ptr() as u64, &src).unwrap();
        assert!(dst == src);
        let mut back = vec![0u8; 100_000];
        read(me, dst.as_ptr() as u64, &mut back).unwrap();
        assert!(back == src);
        assert_eq!(write(me, 8, &src[..16]), Err(Status::INVALID_VALUE));
        assert_eq!(read(me, 8, &mut back[..16]), Err(Status::INVALID_VALUE));
        // A process that does not exist.
        assert_eq!(write(i32::MAX.unsigned_abs(), 4096, &src[..16]), Err(Status::NOT_SUPPORTED));
    }
}
