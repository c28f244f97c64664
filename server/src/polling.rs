//! The session's polling threads.
//!
//! The reader thread (pinned near device 0) busy-polls the link, reads each frame and checks
//! it. Work for device 0, and work that names no device, runs on the reader. A session with
//! several devices gets one more polling thread per extra device, pinned near that device; the
//! reader lends the session to it (`&mut Session` travels through a channel and comes back), so
//! every driver call for a GPU is issued from a core next to that GPU while frames stay in order
//! and no state is shared between threads.

use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use crate::placement;
use crate::session::{End, Frame, Session};

type Outcome = Result<Option<End>, End>;

/// Serve `session` until it ends. `cores[d]` is the core for device `d` (missing: unpinned).
/// `spin` is how long a polling thread spins before it parks; `park` bounds one park.
pub fn serve(session: &mut Session<'_>, cores: &[usize], spin: Duration, park: Duration) -> End {
    let devices = session.device_count() as usize;
    std::thread::scope(|scope| {
        let (back_tx, back_rx) = mpsc::channel::<(&mut Session<'_>, Outcome)>();
        let mut executors: Vec<Option<Sender<(&mut Session<'_>, Frame)>>> = vec![None];
        let mut threads = Vec::new();
        for dev in 1..devices {
            let (tx, rx) = mpsc::channel::<(&mut Session<'_>, Frame)>();
            let back = back_tx.clone();
            let core = cores.get(dev).copied();
            let spawned = std::thread::Builder::new()
                .name(format!("remora-dev{dev}"))
                .spawn_scoped(scope, move || executor(dev, core, &rx, &back, spin));
            match spawned {
                Ok(thread) => {
                    executors.push(Some(tx));
                    threads.push(thread);
                }
                Err(e) => {
                    tracing::warn!(dev, "no polling thread for device {dev} ({e}); the reader serves it");
                    executors.push(None);
                }
            }
        }
        let end = reader(session, &executors, &back_rx, spin, park);
        // Executors see their channel close and return. They are joined, not left to the scope:
        // the scope waits only until a thread's work is done, a join until the thread is gone,
        // its thread-local storage freed too.
        drop(executors);
        for thread in threads {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        end
    })
}

fn reader<'a, 's>(
    mut s: &'a mut Session<'s>,
    executors: &[Option<Sender<(&'a mut Session<'s>, Frame)>>],
    back: &Receiver<(&'a mut Session<'s>, Outcome)>,
    spin: Duration,
    park: Duration,
) -> End {
    let mut last = Instant::now();
    loop {
        match s.link().poll_readable() {
            Ok(true) => {}
            Ok(false) => {
                if last.elapsed() >= spin {
                    if let Err(e) = s.link().wait_readable(Some(park)) {
                        return e.into();
                    }
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
            Err(e) => return e.into(),
        }
        let frame = match s.read_frame() {
            Ok(f) => f,
            Err(end) => return end,
        };
        let target = s.device_of(&frame).and_then(|d| executors.get(d as usize)).and_then(Option::as_ref);
        let outcome = match target {
            None => s.execute(frame),
            Some(tx) => match tx.send((s, frame)) {
                Ok(()) => match back.recv() {
                    Ok((back_s, outcome)) => {
                        s = back_s;
                        outcome
                    }
                    Err(_) => return End::Protocol("a device polling thread died".into()),
                },
                // The executor is gone: the session and frame come back inside the error.
                Err(mpsc::SendError((back_s, frame))) => {
                    s = back_s;
                    s.execute(frame)
                }
            },
        };
        match outcome {
            Ok(None) => {}
            Ok(Some(end)) | Err(end) => return end,
        }
        last = Instant::now();
    }
}

fn executor<'a, 's>(
    dev: usize,
    core: Option<usize>,
    rx: &Receiver<(&'a mut Session<'s>, Frame)>,
    back: &Sender<(&'a mut Session<'s>, Outcome)>,
    spin: Duration,
) {
    if let Some(c) = core {
        if placement::pin_current_thread(c) {
            tracing::info!(dev, core = c, "device polling thread pinned");
        }
    }
    let mut last = Instant::now();
    loop {
        let job = match rx.try_recv() {
            Ok(job) => job,
            Err(TryRecvError::Empty) if last.elapsed() < spin => {
                std::hint::spin_loop();
                continue;
            }
            Err(TryRecvError::Empty) => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Err(TryRecvError::Disconnected) => return,
        };
        let (s, frame) = job;
        s.note_routed();
        let outcome = s.execute(frame);
        if back.send((s, outcome)).is_err() {
            return;
        }
        last = Instant::now();
    }
}
