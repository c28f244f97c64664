//! Shared pinned memory on the same host (the `shm://` transport): the client's
//! `cudaMallocHost` memory is a file in `/dev/shm` both processes map at the *same address*; the
//! worker registers it with the driver (`cuMemHostRegister`, device-mapped), so copies between it
//! and the GPU are DMA with no copy through the transport, asynchronous copies are truly
//! asynchronous, and kernels may read and write it directly (mapped memory, as on a local GPU).

use std::collections::BTreeMap;
use std::ffi::CString;

use remora_wire::Status;

/// One mapped arena.
#[derive(Debug)]
pub struct Arena {
    /// Bytes mapped.
    pub len: u64,
}

/// The arenas of one session, by address (the same in the client and the worker).
#[derive(Debug, Default)]
pub struct Arenas {
    map: BTreeMap<u64, Arena>,
    bytes: u64,
}

/// Whether `name` is one the client library makes (`remora-arena-…`, no path separators).
fn valid_name(name: &str) -> bool {
    name.starts_with("remora-arena-")
        && name.len() <= 200
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl Arenas {
    /// Map `/dev/shm/<name>` (at least `len` bytes, made by the client) at exactly `addr`.
    /// `ADDRESS_IN_USE` when this process has something there; `INVALID_VALUE` for a bad name,
    /// a short file or a bad range; `NOT_PERMITTED` when the file cannot be opened.
    pub fn map(&mut self, name: &str, addr: u64, len: u64, budget: u64) -> Result<(), Status> {
        if !valid_name(name) || len == 0 || addr == 0 || !addr.is_multiple_of(4096) || !len.is_multiple_of(4096) {
            return Err(Status::INVALID_VALUE);
        }
        if self.bytes.saturating_add(len) > budget {
            return Err(Status::OUT_OF_MEMORY);
        }
        let end = addr.checked_add(len).ok_or(Status::INVALID_VALUE)?;
        if self.map.range(..end).next_back().is_some_and(|(&b, a)| b + a.len > addr) {
            return Err(Status::ADDRESS_IN_USE);
        }
        let path = CString::new(format!("/dev/shm/{name}")).map_err(|_| Status::INVALID_VALUE)?;
        let ulen = usize::try_from(len).map_err(|_| Status::INVALID_VALUE)?;
        let uaddr = usize::try_from(addr).map_err(|_| Status::INVALID_VALUE)?;
        // SAFETY: `path` is a NUL-terminated string; the descriptor is closed below.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC | libc::O_NOFOLLOW) };
        if fd < 0 {
            tracing::warn!(name, "cannot open the client's shared pinned memory: {}", std::io::Error::last_os_error());
            return Err(Status::NOT_PERMITTED);
        }
        // SAFETY: an all-zero `stat` is a valid value for fstat to fill; `fd` is open.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let size_ok = unsafe { libc::fstat(fd, &mut st) } == 0 && u64::try_from(st.st_size).is_ok_and(|s| s >= len);
        let p = if size_ok {
            // SAFETY: MAP_FIXED_NOREPLACE never replaces a mapping of this process: it fails when
            // anything is at `[addr, addr + len)`. The file is at least `len` bytes long.
            unsafe {
                libc::mmap(
                    uaddr as *mut libc::c_void,
                    ulen,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_FIXED_NOREPLACE,
                    fd,
                    0,
                )
            }
        } else {
            libc::MAP_FAILED
        };
        // SAFETY: `fd` is ours; the mapping (if any) keeps the file alive.
        unsafe { libc::close(fd) };
        if !size_ok {
            return Err(Status::INVALID_VALUE);
        }
        if p == libc::MAP_FAILED {
            return Err(Status::ADDRESS_IN_USE);
        }
        if p as usize != uaddr {
            // A kernel that treats the flag as a hint (older than 4.17).
            // SAFETY: `p` is the mapping just made, `len` bytes.
            unsafe { libc::munmap(p, ulen) };
            return Err(Status::ADDRESS_IN_USE);
        }
        self.map.insert(addr, Arena { len });
        self.bytes += len;
        Ok(())
    }

    /// Unmap the arena at `addr`; its length. The caller unregistered it from the driver.
    pub fn unmap(&mut self, addr: u64) -> Result<u64, Status> {
        let a = self.map.remove(&addr).ok_or(Status::INVALID_VALUE)?;
        self.bytes -= a.len;
        // Both fitted a usize when the arena was mapped.
        let (uaddr, ulen) = (usize::try_from(addr).unwrap_or(0), usize::try_from(a.len).unwrap_or(0));
        // SAFETY: `[addr, addr + len)` is a mapping `map` made and nothing of this process keeps
        // a reference into it once the driver has let go of it (the caller's job).
        unsafe { libc::munmap(std::ptr::with_exposed_provenance_mut(uaddr), ulen) };
        Ok(a.len)
    }

    /// Whether `[ptr, ptr + len)` lies inside one arena.
    pub fn contains(&self, ptr: u64, len: u64) -> bool {
        let Some(end) = ptr.checked_add(len) else { return false };
        self.map.range(..=ptr).next_back().is_some_and(|(&b, a)| end <= b + a.len)
    }

    /// Every arena's address and length (for teardown).
    pub fn all(&self) -> Vec<(u64, u64)> {
        self.map.iter().map(|(&b, a)| (b, a.len)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(valid_name("remora-arena-123-4"));
        for bad in ["../etc/passwd", "remora-arena-/x", "other", "remora-arena-a b"] {
            assert!(!valid_name(bad), "{bad}");
        }
        let mut a = Arenas::default();
        assert_eq!(a.map("../x", 0x1000_0000, 4096, u64::MAX), Err(Status::INVALID_VALUE));
        assert_eq!(a.map("remora-arena-none", 0x1000_0000, 4096, u64::MAX), Err(Status::NOT_PERMITTED));
        assert_eq!(a.map("remora-arena-x", 0x1000_0001, 4096, u64::MAX), Err(Status::INVALID_VALUE));
    }
}
