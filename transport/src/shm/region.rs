//! The shared region: layout, creation and validated mapping.
//!
//! ```text
//! offset 0        header page (HEADER_LEN = 4096 bytes)
//!   0             magic      u64  b"RMRA-SHM"
//!   8             version    u32  LAYOUT_VERSION
//!   16            ring_size  u64  bytes in each ring, a power of two
//!   256 + 256*d   direction d (0: client→server, 1: server→client), one 64-byte line each:
//!     +0            head            u64  bytes ever written (producer stores, Release)
//!     +64           tail            u64  bytes ever read (consumer stores, Release)
//!     +128          reader_parked   u32  consumer sleeps in poll(2); producer rings the doorbell
//!     +192          writer_parked   u32  producer sleeps waiting for space; consumer rings
//! offset 4096                 ring 0 (client→server), ring_size bytes
//! offset 4096 + ring_size     ring 1 (server→client), ring_size bytes
//! ```
//! Every header field is accessed only through atomics, in both processes. The counters grow
//! monotonically (a `u64` of bytes never wraps in practice); a position in a ring is
//! `counter & (ring_size - 1)`.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use memmap2::MmapMut;

use crate::{Error, Result};

/// `b"RMRA-SHM"` read as a little-endian `u64`.
pub(crate) const REGION_MAGIC: u64 = u64::from_le_bytes(*b"RMRA-SHM");
/// Layout version; bumped on any incompatible change to the header.
pub(crate) const LAYOUT_VERSION: u32 = 1;
/// Bytes before the first ring.
pub(crate) const HEADER_LEN: usize = 4096;
/// Smallest ring accepted.
pub const MIN_RING_SIZE: usize = 4096;
/// Largest ring accepted.
pub const MAX_RING_SIZE: usize = 1 << 30;
/// Ring size when none is given: 8 MiB each way.
pub const DEFAULT_RING_SIZE: usize = 8 << 20;
/// Where regions are created.
const SHM_DIR: &str = "/dev/shm";

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 8;
const OFF_RING_SIZE: usize = 16;
const OFF_DIRS: usize = 256;
const DIR_STRIDE: usize = 256;
const LINE: usize = 64;

/// A ring's direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// Client writes, server reads.
    ClientToServer = 0,
    /// Server writes, client reads.
    ServerToClient = 1,
}

/// The control words of one ring, borrowed from the mapping.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingCtrl<'a> {
    pub(crate) head: &'a AtomicU64,
    pub(crate) tail: &'a AtomicU64,
    pub(crate) reader_parked: &'a AtomicU32,
    pub(crate) writer_parked: &'a AtomicU32,
}

/// A mapped region. The rings hold it in an `Arc`, so the mapping outlives every pointer into it.
#[derive(Debug)]
pub(crate) struct Region {
    file: File,
    map: MmapMut,
    /// `map`'s start, taken once from `as_mut_ptr` so that later accesses need no `&mut`.
    base: *mut u8,
    ring_size: usize,
}

// SAFETY: `base` points into `map`, which `Region` owns and never remaps or moves (an mmap's
// address is fixed for its lifetime). Through `base` the header is accessed only with atomics
// and ring bytes only with raw copies, never through references, and which thread may copy
// which bytes is governed by the single-producer/single-consumer protocol in `ring.rs`
// (each `Producer`/`Consumer` is owned by one link, used by one thread at a time).
unsafe impl Send for Region {}
// SAFETY: as for `Send`: shared access goes through atomics or through the SPSC protocol.
unsafe impl Sync for Region {}

fn bad_region(why: String) -> Error {
    Error::Protocol(format!("bad shared-memory region: {why}"))
}

/// Total region length for `ring_size`, or `None` when out of range or not a power of two.
pub(crate) fn region_len(ring_size: usize) -> Option<usize> {
    if !ring_size.is_power_of_two() || !(MIN_RING_SIZE..=MAX_RING_SIZE).contains(&ring_size) {
        return None;
    }
    HEADER_LEN.checked_add(ring_size.checked_mul(2)?)
}

impl Region {
    /// Create a fresh region with two rings of `ring_size` bytes: a new file in `/dev/shm`,
    /// unlinked at once (it lives exactly as long as some process holds a descriptor or mapping),
    /// sized, mapped, and its header written.
    pub(crate) fn create(ring_size: usize) -> Result<Region> {
        let len = region_len(ring_size).ok_or_else(|| {
            Error::Protocol(format!(
                "shm ring size {ring_size} must be a power of two in {MIN_RING_SIZE}..={MAX_RING_SIZE}"
            ))
        })?;
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let mut last = None;
        let mut file = None;
        for _ in 0..16 {
            let nonce = crate::auth::nonce();
            let path = format!(
                "{SHM_DIR}/remora-{}-{}-{:02x}{:02x}{:02x}{:02x}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed),
                nonce[0],
                nonce[1],
                nonce[2],
                nonce[3]
            );
            // O_EXCL (create_new): never opens someone else's file, never follows a symlink.
            match std::fs::OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&path) {
                Ok(f) => {
                    std::fs::remove_file(&path).map_err(|e| Error::io("unlink shm region", e))?;
                    file = Some(f);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => {
                    return Err(Error::Io {
                        op: "create shm region",
                        source: io::Error::new(e.kind(), format!("{path}: {e}")),
                    })
                }
            }
        }
        let Some(file) = file else {
            let source = last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists));
            return Err(Error::Io { op: "create shm region", source });
        };
        file.set_len(len as u64).map_err(|e| Error::io("size shm region", e))?;
        // SAFETY: the file was just created with O_EXCL and unlinked, so no other process can
        // reach it yet; it will only be shared, by descriptor, with peers running this protocol,
        // which never resize it. (A hostile peer that truncated it could make our accesses fault
        // with SIGBUS, but could not make us read or write outside the mapping.)
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(|e| Error::io("map shm region", e))?;
        let region = Region::from_map(file, map, ring_size);
        region.u64_at(OFF_RING_SIZE).store(ring_size as u64, Ordering::Relaxed);
        region.u32_at(OFF_VERSION).store(LAYOUT_VERSION, Ordering::Relaxed);
        // Counters and flags are zero: a new file reads as zeros.
        region.u64_at(OFF_MAGIC).store(REGION_MAGIC, Ordering::Release);
        Ok(region)
    }

    /// Map a region received from a peer, validating its header and size. A bad region is an
    /// error, never undefined behaviour.
    pub(crate) fn open(file: File) -> Result<Region> {
        let meta = file.metadata().map_err(|e| Error::io("stat shm region", e))?;
        if !meta.is_file() {
            return Err(bad_region("the descriptor is not a regular file".into()));
        }
        let len = meta.len();
        let max = region_len(MAX_RING_SIZE).unwrap_or(usize::MAX) as u64;
        if len < (HEADER_LEN + 2 * MIN_RING_SIZE) as u64 || len > max {
            return Err(bad_region(format!("size {len} is out of range")));
        }
        // SAFETY: the region's creator never resizes it after sending it (see `create`); we
        // checked above that the file covers a header and two minimum rings, and the ring size
        // is checked against the actual mapping length below before any ring access.
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(|e| Error::io("map shm region", e))?;
        if map.len() as u64 != len {
            return Err(bad_region(format!("mapped {} bytes of {len}", map.len())));
        }
        let region = Region::from_map(file, map, 0);
        let magic = region.u64_at(OFF_MAGIC).load(Ordering::Acquire);
        if magic != REGION_MAGIC {
            return Err(bad_region(format!("magic {magic:#018x}, expected {REGION_MAGIC:#018x}")));
        }
        let version = region.u32_at(OFF_VERSION).load(Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(bad_region(format!("layout version {version}, this side speaks {LAYOUT_VERSION}")));
        }
        let ring_size = region.u64_at(OFF_RING_SIZE).load(Ordering::Relaxed);
        let ring_size = usize::try_from(ring_size).map_err(|_| bad_region(format!("ring size {ring_size}")))?;
        if region_len(ring_size).map(|l| l as u64) != Some(len) {
            return Err(bad_region(format!("ring size {ring_size} does not fit a region of {len} bytes")));
        }
        Ok(Region { ring_size, ..region })
    }

    fn from_map(file: File, mut map: MmapMut, ring_size: usize) -> Region {
        let base = map.as_mut_ptr();
        Region { file, map, base, ring_size }
    }

    /// The region's file (to hand the link to another process).
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Unmap and return the file.
    pub(crate) fn into_file(self) -> File {
        drop(self.map);
        self.file
    }

    /// Bytes in each ring.
    pub(crate) fn ring_size(&self) -> usize {
        self.ring_size
    }

    fn u64_at(&self, off: usize) -> &AtomicU64 {
        assert!(off + 8 <= HEADER_LEN && off.is_multiple_of(8) && HEADER_LEN <= self.map.len());
        // SAFETY: `off` is inside the header page, which lies inside the mapping (asserted),
        // and 8-aligned; the mapping is page-aligned, so the address is aligned for AtomicU64.
        // The mapping lives as long as `&self`. Both processes access header words only
        // atomically, with the same width.
        unsafe { AtomicU64::from_ptr(self.base.add(off).cast()) }
    }

    fn u32_at(&self, off: usize) -> &AtomicU32 {
        assert!(off + 4 <= HEADER_LEN && off.is_multiple_of(4) && HEADER_LEN <= self.map.len());
        // SAFETY: as in `u64_at`, with 4-byte alignment.
        unsafe { AtomicU32::from_ptr(self.base.add(off).cast()) }
    }

    /// The control words of direction `d`.
    pub(crate) fn ctrl(&self, d: Dir) -> RingCtrl<'_> {
        let o = OFF_DIRS + DIR_STRIDE * d as usize;
        RingCtrl {
            head: self.u64_at(o),
            tail: self.u64_at(o + LINE),
            reader_parked: self.u32_at(o + 2 * LINE),
            writer_parked: self.u32_at(o + 3 * LINE),
        }
    }

    /// Start of direction `d`'s ring bytes; `ring_size()` bytes from here are in the mapping.
    pub(crate) fn ring_ptr(&self, d: Dir) -> *mut u8 {
        let off = HEADER_LEN + self.ring_size * d as usize;
        debug_assert!(off + self.ring_size <= self.map.len());
        self.base.wrapping_add(off)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    fn file_from(region: Region) -> File {
        region.into_file()
    }

    #[test]
    fn create_then_open_agrees() {
        let r = Region::create(MIN_RING_SIZE).unwrap();
        assert_eq!(r.ring_size(), MIN_RING_SIZE);
        r.ctrl(Dir::ServerToClient).head.store(42, Ordering::Release);
        let f = r.file().try_clone().unwrap();
        let o = Region::open(f).unwrap();
        assert_eq!(o.ring_size(), MIN_RING_SIZE);
        assert_eq!(o.ctrl(Dir::ServerToClient).head.load(Ordering::Acquire), 42);
        assert_eq!(o.ctrl(Dir::ClientToServer).head.load(Ordering::Acquire), 0);
        // The region's file is already unlinked: nothing is left to leak if we are killed.
        let fd = std::os::fd::AsRawFd::as_raw_fd(r.file());
        let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        let target = target.to_string_lossy();
        assert!(target.starts_with("/dev/shm/remora-") && target.ends_with(" (deleted)"), "{target}");
    }

    #[test]
    fn bad_regions_are_errors() {
        assert!(Region::create(MIN_RING_SIZE + 1).is_err());
        assert!(Region::create(MIN_RING_SIZE / 2).is_err());
        // Wrong magic.
        let mut f = file_from(Region::create(MIN_RING_SIZE).unwrap());
        f.seek(SeekFrom::Start(0)).unwrap();
        f.write_all(b"XXXXXXXX").unwrap();
        assert!(matches!(Region::open(f), Err(Error::Protocol(m)) if m.contains("magic")));
        // Ring size that disagrees with the file's size.
        let mut f = file_from(Region::create(MIN_RING_SIZE).unwrap());
        f.seek(SeekFrom::Start(OFF_RING_SIZE as u64)).unwrap();
        f.write_all(&(1u64 << 40).to_le_bytes()).unwrap();
        assert!(matches!(Region::open(f), Err(Error::Protocol(m)) if m.contains("ring size")));
        // File grown after the fact.
        let f = file_from(Region::create(MIN_RING_SIZE).unwrap());
        f.set_len((HEADER_LEN + 4 * MIN_RING_SIZE) as u64).unwrap();
        assert!(matches!(Region::open(f), Err(Error::Protocol(_))));
        // Too small to hold a header.
        let f = file_from(Region::create(MIN_RING_SIZE).unwrap());
        f.set_len(100).unwrap();
        assert!(matches!(Region::open(f), Err(Error::Protocol(m)) if m.contains("size")));
        // Version.
        let mut f = file_from(Region::create(MIN_RING_SIZE).unwrap());
        f.seek(SeekFrom::Start(OFF_VERSION as u64)).unwrap();
        f.write_all(&7u32.to_le_bytes()).unwrap();
        assert!(matches!(Region::open(f), Err(Error::Protocol(m)) if m.contains("version")));
        // Not a regular file.
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let f = File::from(std::os::fd::OwnedFd::from(a));
        assert!(matches!(Region::open(f), Err(Error::Protocol(_))));
    }
}
