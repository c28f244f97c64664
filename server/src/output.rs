//! Capture of the worker's stdout, so that device `printf` output reaches the client.
//!
//! The CUDA driver prints a kernel's `printf` output on the C `stdout` stream of the process
//! that runs the kernel, when the host synchronises (device/stream/event synchronisation,
//! blocking copies, module load/unload, launches, context destruction). In a worker that is
//! the wrong process: [`OutputCapture::start`] points fd 1 at a pipe the worker owns, and the
//! session sends what arrives there with its replies (`Flags::OUTPUT`), so the client writes it
//! to the application's stdout before the synchronising call returns.
//!
//! A collector thread reads the pipe as soon as bytes arrive, so the driver never blocks on a
//! full pipe in the middle of a synchronisation (a pipe holds 64 KiB; the device's printf FIFO
//! alone is 1 MiB by default). [`OutputCapture::drain`] first flushes C stdio (the driver
//! writes through `stdout`, which is fully buffered on a pipe), then reads whatever the
//! collector has not, so after it returns every byte the driver printed is in hand.
//!
//! The worker's own logs go to stderr and are not captured.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

/// Most output kept between two drains (64 MiB). Beyond that, bytes are dropped and counted,
/// and a note saying how many takes their place.
pub const MAX_PENDING: usize = 64 << 20;

/// fd 1 redirected into a pipe read by a collector thread; restored when dropped.
#[derive(Debug)]
pub struct OutputCapture {
    shared: Arc<Shared>,
    /// The redirected descriptor (1 for [`OutputCapture::start`]).
    target: RawFd,
    /// What `target` was before, to restore on drop (`None`: it was closed).
    saved: Option<OwnedFd>,
}

#[derive(Debug)]
struct Shared {
    /// The pipe's read end, non-blocking.
    read: OwnedFd,
    pending: Mutex<Pending>,
    /// Set when the collector has bytes waiting (cheap check for [`OutputCapture::take_collected`]).
    ready: AtomicBool,
    max_pending: usize,
}

#[derive(Debug, Default)]
struct Pending {
    bytes: Vec<u8>,
    dropped: u64,
    closed: bool,
    /// Where `read_available` reads: allocated once (zeroing a fresh 64 KiB buffer cost about
    /// 1.5 µs on every synchronising reply).
    scratch: Vec<u8>,
}

/// Flush every C stdio output stream (the driver's `printf` output sits in `stdout`'s buffer).
fn flush_c_stdio() {
    // SAFETY: fflush(NULL) flushes all open output streams; it takes the streams' own locks and
    // touches no memory of ours.
    unsafe { libc::fflush(std::ptr::null_mut()) };
}

/// `fd`, moved above 0–2 if it landed there (possible only when a standard descriptor was
/// closed), so redirecting fd 1 never closes it.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        Ok(fd)
    } else {
        // `try_clone` duplicates with F_DUPFD_CLOEXEC from 3 up; the low copy is closed on return.
        fd.try_clone()
    }
}

impl OutputCapture {
    /// Redirect this process's stdout (fd 1) into the capture.
    pub fn start() -> io::Result<OutputCapture> {
        OutputCapture::redirect(libc::STDOUT_FILENO, MAX_PENDING)
    }

    /// Redirect `target` into a new pipe, keeping at most `max_pending` bytes between drains
    /// (tests redirect a spare descriptor rather than their own stdout).
    pub(crate) fn redirect(target: RawFd, max_pending: usize) -> io::Result<OutputCapture> {
        // Whatever C stdio holds for the old stdout goes there, not into the capture.
        flush_c_stdio();
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let read = above_stdio(read)?;
        let write = above_stdio(write)?;
        // Only the read end is non-blocking: writers (the driver) block on a full pipe until the
        // collector makes room, rather than lose output.
        // SAFETY: F_GETFL/F_SETFL on a descriptor we own.
        unsafe {
            let fl = libc::fcntl(read.as_raw_fd(), libc::F_GETFL);
            if fl < 0 || libc::fcntl(read.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: F_DUPFD_CLOEXEC only reads the descriptor number; a closed `target` fails
        // with EBADF, which means there is nothing to restore.
        let saved = unsafe { libc::fcntl(target, libc::F_DUPFD_CLOEXEC, 3) };
        // SAFETY: a non-negative result is a new descriptor that only we hold.
        let saved = (saved >= 0).then(|| unsafe { OwnedFd::from_raw_fd(saved) });

        let shared = Arc::new(Shared {
            read,
            pending: Mutex::new(Pending::default()),
            ready: AtomicBool::new(false),
            max_pending,
        });
        // Start the collector before anything can write into the pipe; if it cannot start,
        // nothing has been redirected yet.
        let theirs = Arc::clone(&shared);
        std::thread::Builder::new().name("remora-output".into()).spawn(move || collect(&theirs))?;
        // SAFETY: both descriptors are open; dup2 replaces `target` atomically (the old file
        // stays open through `saved`).
        if unsafe { libc::dup2(write.as_raw_fd(), target) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // `target` is now the pipe's only write end: when it is restored, the collector sees EOF.
        drop(write);
        Ok(OutputCapture { shared, target, saved })
    }

    /// Everything written to stdout since the last drain, appended to `into`: flushes C stdio,
    /// then reads what the collector has not yet. Never blocks on the pipe.
    pub fn drain(&mut self, into: &mut Vec<u8>) {
        // Not under the lock: a flush may block on a full pipe until the collector empties it.
        flush_c_stdio();
        let mut p = self.shared.pending.lock();
        read_available(&self.shared.read, &mut p, self.shared.max_pending);
        self.take(&mut p, into);
    }

    /// What the collector has already read, appended to `into`, without flushing or a system
    /// call: a single atomic load when there is nothing (for replies that are not
    /// synchronisation points, where the driver may still have printed, e.g. at a launch).
    pub fn take_collected(&mut self, into: &mut Vec<u8>) {
        if self.shared.ready.load(Ordering::Acquire) {
            let mut p = self.shared.pending.lock();
            self.take(&mut p, into);
        }
    }

    fn take(&self, p: &mut Pending, into: &mut Vec<u8>) {
        self.shared.ready.store(false, Ordering::Relaxed);
        if into.is_empty() {
            // Hand the buffer over instead of copying it; the next output starts a fresh one.
            std::mem::swap(into, &mut p.bytes);
        } else {
            into.append(&mut p.bytes);
        }
        if p.dropped > 0 {
            let note = format!(
                "\n[remora: {} bytes of device output dropped: more than {} bytes between two synchronisations]\n",
                p.dropped, self.shared.max_pending
            );
            into.extend_from_slice(note.as_bytes());
            p.dropped = 0;
        }
    }
}

impl Drop for OutputCapture {
    /// Put the original stdout back. Output not drained by then is dropped; the collector
    /// reads the pipe to its end and exits.
    fn drop(&mut self) {
        flush_c_stdio();
        match &self.saved {
            // SAFETY: both descriptors are open; the pipe's write end at `target` is closed by
            // the replacement.
            Some(saved) => unsafe {
                libc::dup2(saved.as_raw_fd(), self.target);
            },
            // SAFETY: `target` was closed before the capture; closing it again restores that.
            None => unsafe {
                libc::close(self.target);
            },
        }
    }
}

/// The collector thread: wait for bytes, read them into `pending`, until the write end closes.
fn collect(shared: &Shared) {
    loop {
        let mut pfd = libc::pollfd { fd: shared.read.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, for the call's duration.
        let n = unsafe { libc::poll(&mut pfd, 1, -1) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        let mut p = shared.pending.lock();
        read_available(&shared.read, &mut p, shared.max_pending);
        if !p.bytes.is_empty() || p.dropped > 0 {
            shared.ready.store(true, Ordering::Release);
        }
        if p.closed {
            return;
        }
    }
}

/// Read everything the pipe holds now into `p` (keeping at most `max` bytes, counting the
/// rest as dropped). Sets `p.closed` at end of file or on an error.
fn read_available(read: &OwnedFd, p: &mut Pending, max: usize) {
    if p.closed {
        return;
    }
    if p.scratch.is_empty() {
        p.scratch = vec![0; 64 * 1024];
    }
    loop {
        let chunk = &mut p.scratch;
        // SAFETY: `chunk` is valid for writes of `chunk.len()` bytes.
        let n = unsafe { libc::read(read.as_raw_fd(), chunk.as_mut_ptr().cast(), chunk.len()) };
        match usize::try_from(n) {
            Ok(0) => {
                p.closed = true;
                return;
            }
            Ok(n) => {
                let keep = n.min(max.saturating_sub(p.bytes.len()));
                let Pending { bytes, scratch, .. } = &mut *p;
                bytes.extend_from_slice(&scratch[..keep]);
                p.dropped += (n - keep) as u64;
            }
            Err(_) => match io::Error::last_os_error().kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => return,
                _ => {
                    p.closed = true;
                    return;
                }
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A spare descriptor to redirect (pointing at /dev/null), so these tests leave the test
    /// harness's own stdout alone.
    fn spare_fd() -> OwnedFd {
        std::fs::OpenOptions::new().write(true).open("/dev/null").unwrap().into()
    }

    fn write_all(fd: RawFd, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            // SAFETY: `bytes` is valid for reads of its length.
            let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
            let n = usize::try_from(n).unwrap();
            bytes = &bytes[n..];
        }
    }

    #[test]
    fn drain_returns_what_was_written_in_order() {
        let fd = spare_fd();
        let mut cap = OutputCapture::redirect(fd.as_raw_fd(), MAX_PENDING).unwrap();
        let mut out = Vec::new();
        cap.drain(&mut out);
        assert!(out.is_empty());
        write_all(fd.as_raw_fd(), b"one\n");
        write_all(fd.as_raw_fd(), b"two\n");
        cap.drain(&mut out);
        assert_eq!(out, b"one\ntwo\n");
        out.clear();
        cap.drain(&mut out);
        assert!(out.is_empty(), "a drain takes the bytes it returns");
    }

    #[test]
    fn collector_picks_up_output_without_a_drain() {
        let fd = spare_fd();
        let mut cap = OutputCapture::redirect(fd.as_raw_fd(), MAX_PENDING).unwrap();
        write_all(fd.as_raw_fd(), b"launch-time output\n");
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while out.is_empty() && Instant::now() < deadline {
            cap.take_collected(&mut out);
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(out, b"launch-time output\n");
    }

    #[test]
    fn more_than_a_pipe_holds_does_not_block_the_writer() {
        let fd = spare_fd();
        let mut cap = OutputCapture::redirect(fd.as_raw_fd(), MAX_PENDING).unwrap();
        // 4 MiB, far beyond a pipe's 64 KiB: without the collector this write would block for ever.
        let data: Vec<u8> = (0..4u32 << 20).map(|i| u8::try_from(i % 251).unwrap()).collect();
        write_all(fd.as_raw_fd(), &data);
        let mut out = Vec::new();
        cap.drain(&mut out);
        assert_eq!(out.len(), data.len());
        assert!(out == data);
    }

    #[test]
    fn excess_output_is_dropped_with_a_note() {
        let fd = spare_fd();
        let mut cap = OutputCapture::redirect(fd.as_raw_fd(), 8).unwrap();
        write_all(fd.as_raw_fd(), b"0123456789abcdef");
        let mut out = Vec::new();
        cap.drain(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("01234567\n[remora: 8 bytes of device output dropped"), "{text}");
        let mut out = Vec::new();
        write_all(fd.as_raw_fd(), b"ok");
        cap.drain(&mut out);
        assert_eq!(out, b"ok", "the count starts again after a drain");
    }

    #[test]
    fn drop_restores_the_descriptor() {
        let fd = spare_fd();
        let before = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        let cap = OutputCapture::redirect(fd.as_raw_fd(), MAX_PENDING).unwrap();
        let during = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert!(during.to_string_lossy().starts_with("pipe:"), "{during:?}");
        drop(cap);
        let after = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert_eq!(after, before);
    }

    const CHILD: &str = "REMORA_TEST_OUTPUT_CHILD";

    /// The real thing, in a child process (redirecting this process's fd 1 would swallow the
    /// test harness's output): C `printf` to `stdout`, captured from fd 1, then fd 1 restored.
    #[test]
    fn captures_c_stdout_in_a_child() {
        if std::env::var_os(CHILD).is_some() {
            return child_role();
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["output::tests::captures_c_stdout_in_a_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child failed: {stdout}\n{stderr}");
        assert!(stderr.contains(r#"CAPTURED "raw write\ndevice: hello 42\n""#), "{stderr}");
        assert!(!stdout.contains("device: hello"), "captured output leaked to stdout: {stdout}");
        assert!(stdout.contains("after restore 7"), "fd 1 not restored: {stdout}");
    }

    fn child_role() {
        let mut cap = OutputCapture::start().unwrap();
        // A raw write goes straight to the pipe; printf's bytes wait in C stdio's buffer until
        // the drain flushes them.
        write_all(1, b"raw write\n");
        // SAFETY: a NUL-terminated format whose one conversion matches the one int argument.
        unsafe { libc::printf(c"device: hello %d\n".as_ptr(), 42 as libc::c_int) };
        let mut out = Vec::new();
        cap.drain(&mut out);
        drop(cap);
        eprintln!("CAPTURED {:?}", String::from_utf8_lossy(&out));
        // SAFETY: as above.
        unsafe {
            libc::printf(c"after restore %d\n".as_ptr(), 7 as libc::c_int);
            libc::fflush(std::ptr::null_mut());
        }
    }
}
