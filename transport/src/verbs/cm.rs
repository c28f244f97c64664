//! Connection setup with rdma_cm, and the verbs resources of one reliable-connected queue pair.
//!
//! rdma_cm resolves the peer's IP address to a device, port and (RoCE) GID and the route to it,
//! and runs the connection handshake; the data path never touches it. [`Connection`] owns, in
//! the order they are torn down: the queue pair, both completion queues, the completion channel
//! (used only to park an idle receiver), the protection domain, the connection id and the event
//! channel. Memory regions ([`Mr`]) borrow the protection domain and are dropped by their
//! owners first.

// Narrowing casts here are of constants (slot counts, 32-byte secrets, address families) or of
// lengths bounded by `SLOT` / `RDMA_CHUNK`, and of completion fields the C API declares wider.
#![allow(clippy::cast_possible_truncation)]

use std::ffi::c_void;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::ptr;
use std::time::{Duration, Instant};

use rdma_sys::*;

use super::ffi::{text, verbs, Verbs};
use crate::{Error, Result};

/// Receive slots each side posts, and so the credits each side starts with.
pub const RECV_SLOTS: u32 = 64;
/// Send slots (one signaled send every [`SIGNAL_EVERY`]).
pub(crate) const SEND_SLOTS: u32 = 64;
/// At most this many RDMA READ/WRITE operations in flight.
pub(crate) const RDMA_DEPTH: u32 = 16;
/// Inline data asked for (sends this small skip the DMA read of the send buffer).
const INLINE: u32 = 220;
/// `RDMA_MAX_RESP_RES` and `RDMA_MAX_INIT_DEPTH` of `<rdma/rdma_cma.h>`: "as many as the
/// device allows".
const RDMA_MAX_RESP_RES: u8 = 0xFF;
const RDMA_MAX_INIT_DEPTH: u8 = 0xFF;
/// Length of the secret a client proves in its connect request's private data.
pub(crate) const SECRET_LEN: usize = 32;

pub(crate) fn fail(what: &str) -> Error {
    Error::Io { op: "rdma", source: std::io::Error::other(format!("{what}: {}", std::io::Error::last_os_error())) }
}

fn rdma_err(what: String) -> Error {
    Error::Io { op: "rdma", source: std::io::Error::other(what) }
}

/// A socket address in the form the C API takes.
fn sockaddr_of(a: SocketAddr) -> libc::sockaddr_storage {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match a {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let sin = unsafe { &mut *ptr::addr_of_mut!(ss).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above.
            let sin6 = unsafe { &mut *ptr::addr_of_mut!(ss).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            sin6.sin6_scope_id = v6.scope_id();
        }
    }
    ss
}

/// An event channel and the ids on it.
struct Channel {
    v: &'static Verbs,
    ch: *mut rdma_event_channel,
}

impl Channel {
    fn new(v: &'static Verbs) -> Result<Channel> {
        // SAFETY: no arguments; null on failure.
        let ch = unsafe { (v.rdma_create_event_channel)() };
        if ch.is_null() {
            return Err(fail("rdma_create_event_channel"));
        }
        Ok(Channel { v, ch })
    }

    fn fd(&self) -> RawFd {
        // SAFETY: `ch` is a live event channel.
        unsafe { (*self.ch).fd }
    }

    fn create_id(&self) -> Result<*mut rdma_cm_id> {
        let mut id = ptr::null_mut();
        // SAFETY: `ch` is live; `id` receives the new id.
        if unsafe { (self.v.rdma_create_id)(self.ch, &mut id, ptr::null_mut(), rdma_port_space::RDMA_PS_TCP) } != 0 {
            return Err(fail("rdma_create_id"));
        }
        Ok(id)
    }

    /// The next event within `deadline`: (type, status, id, private data). Acknowledged before
    /// returning (the private data is copied first).
    fn next(&self, deadline: Instant) -> Result<(rdma_cm_event_type::Type, i32, *mut rdma_cm_id, Vec<u8>)> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout(Duration::ZERO));
            }
            let mut pfd = libc::pollfd { fd: self.fd(), events: libc::POLLIN, revents: 0 };
            let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1);
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(fail("poll rdma_cm events"));
            }
            if n == 0 {
                continue;
            }
            let mut ev = ptr::null_mut();
            // SAFETY: the channel is readable, so this does not block; `ev` receives the event.
            if unsafe { (self.v.rdma_get_cm_event)(self.ch, &mut ev) } != 0 {
                return Err(fail("rdma_get_cm_event"));
            }
            // SAFETY: `ev` is a live event until acknowledged below.
            let (kind, status, id, data) = unsafe {
                let e = &*ev;
                let conn = e.param.conn;
                let data = if conn.private_data.is_null() {
                    Vec::new()
                } else {
                    std::slice::from_raw_parts(conn.private_data.cast::<u8>(), usize::from(conn.private_data_len))
                        .to_vec()
                };
                (e.event, e.status, e.id, data)
            };
            // SAFETY: acknowledges the event got above, once.
            unsafe { (self.v.rdma_ack_cm_event)(ev) };
            return Ok((kind, status, id, data));
        }
    }

    /// Wait for `want` on any id; any other event is an error naming it.
    fn expect(&self, want: rdma_cm_event_type::Type, deadline: Instant, what: &str) -> Result<*mut rdma_cm_id> {
        let (kind, status, id, _) = self.next(deadline).map_err(|e| match e {
            Error::Timeout(_) => rdma_err(format!("{what}: no answer in time")),
            e => e,
        })?;
        if kind != want || status != 0 {
            // SAFETY: rdma_event_str returns a static string for any value.
            let name = text(unsafe { (self.v.rdma_event_str)(kind) });
            return Err(rdma_err(format!("{what}: got {name} (status {status})")));
        }
        Ok(id)
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        // SAFETY: every id on the channel has been destroyed by now (owners drop them first).
        unsafe { (self.v.rdma_destroy_event_channel)(self.ch) };
    }
}

/// A registered memory region.
pub(crate) struct Mr {
    v: &'static Verbs,
    mr: *mut ibv_mr,
}

// SAFETY: an ibv_mr is a handle the library lets any thread use or deregister.
unsafe impl Send for Mr {}

impl Mr {
    /// Register `len` bytes at `addr` with `pd` for local writes and remote reads and writes.
    ///
    /// # Safety
    /// The memory must stay mapped while the region exists.
    pub(crate) unsafe fn register(v: &'static Verbs, pd: *mut ibv_pd, addr: *mut u8, len: usize) -> Result<Mr> {
        let access = ibv_access_flags::IBV_ACCESS_LOCAL_WRITE.0
            | ibv_access_flags::IBV_ACCESS_REMOTE_READ.0
            | ibv_access_flags::IBV_ACCESS_REMOTE_WRITE.0;
        // SAFETY: per the caller, `[addr, addr + len)` is mapped memory of this process.
        let mr = unsafe { (v.ibv_reg_mr)(pd, addr.cast::<c_void>(), len, access as i32) };
        if mr.is_null() {
            let e = std::io::Error::last_os_error();
            let hint = if e.raw_os_error() == Some(libc::ENOMEM) || e.raw_os_error() == Some(libc::EPERM) {
                " (raise the locked-memory limit: ulimit -l unlimited)"
            } else {
                ""
            };
            return Err(rdma_err(format!("ibv_reg_mr of {len} bytes: {e}{hint}")));
        }
        Ok(Mr { v, mr })
    }

    pub(crate) fn lkey(&self) -> u32 {
        // SAFETY: `mr` is live.
        unsafe { (*self.mr).lkey }
    }

    pub(crate) fn rkey(&self) -> u32 {
        // SAFETY: `mr` is live.
        unsafe { (*self.mr).rkey }
    }

    pub(crate) fn addr(&self) -> usize {
        // SAFETY: `mr` is live.
        unsafe { (*self.mr).addr as usize }
    }

    pub(crate) fn len(&self) -> usize {
        // SAFETY: `mr` is live.
        unsafe { (*self.mr).length }
    }
}

impl Drop for Mr {
    fn drop(&mut self) {
        // SAFETY: registered by `register`, deregistered once. Its protection domain outlives it
        // (the owners drop regions before the connection).
        unsafe { (self.v.ibv_dereg_mr)(self.mr) };
    }
}

/// One connected RC queue pair with its completion queues and protection domain.
pub(crate) struct Connection {
    pub(crate) v: &'static Verbs,
    id: *mut rdma_cm_id,
    pub(crate) pd: *mut ibv_pd,
    pub(crate) comp: *mut ibv_comp_channel,
    pub(crate) send_cq: *mut ibv_cq,
    pub(crate) recv_cq: *mut ibv_cq,
    pub(crate) qp: *mut ibv_qp,
    pub(crate) max_inline: u32,
    /// Completion-channel events got and not acknowledged yet (acknowledged before the CQ is
    /// destroyed, which would otherwise wait for them for ever).
    pub(crate) unacked: u32,
    qp_made: bool,
    connected: bool,
    // Declared last: dropped after everything above.
    channel: Channel,
}

// SAFETY: verbs objects may be used from any thread; the link that owns the connection is used
// by one thread at a time.
unsafe impl Send for Connection {}

impl Connection {
    fn new(channel: Channel, id: *mut rdma_cm_id) -> Connection {
        Connection {
            v: channel.v,
            id,
            pd: ptr::null_mut(),
            comp: ptr::null_mut(),
            send_cq: ptr::null_mut(),
            recv_cq: ptr::null_mut(),
            qp: ptr::null_mut(),
            max_inline: 0,
            unacked: 0,
            qp_made: false,
            connected: false,
            channel,
        }
    }

    /// Protection domain, completion queues and the queue pair on the id's device.
    fn make_queues(&mut self) -> Result<()> {
        let v = self.v;
        // SAFETY: `id` has a device once its address is resolved (client) or it came from a
        // connect request (server).
        let ctx = unsafe { (*self.id).verbs };
        if ctx.is_null() {
            return Err(rdma_err("the rdma_cm id has no device".into()));
        }
        // SAFETY: `ctx` is the id's open device context; each object is checked for null and
        // owned by `self`, whose Drop destroys it.
        unsafe {
            self.pd = (v.ibv_alloc_pd)(ctx);
            if self.pd.is_null() {
                return Err(fail("ibv_alloc_pd"));
            }
            self.comp = (v.ibv_create_comp_channel)(ctx);
            if self.comp.is_null() {
                return Err(fail("ibv_create_comp_channel"));
            }
            let fd = (*self.comp).fd;
            let fl = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
            let send_depth = (SEND_SLOTS + RDMA_DEPTH) as i32;
            self.send_cq = (v.ibv_create_cq)(ctx, send_depth, ptr::null_mut(), ptr::null_mut(), 0);
            if self.send_cq.is_null() {
                return Err(fail("ibv_create_cq (send)"));
            }
            self.recv_cq = (v.ibv_create_cq)(ctx, RECV_SLOTS as i32, ptr::null_mut(), self.comp, 0);
            if self.recv_cq.is_null() {
                return Err(fail("ibv_create_cq (receive)"));
            }
        }
        for inline in [INLINE, 0] {
            // SAFETY: all-zero is a valid ibv_qp_init_attr; the fields set below complete it.
            let mut attr: ibv_qp_init_attr = unsafe { std::mem::zeroed() };
            attr.send_cq = self.send_cq;
            attr.recv_cq = self.recv_cq;
            attr.qp_type = ibv_qp_type::IBV_QPT_RC;
            attr.sq_sig_all = 0;
            attr.cap.max_send_wr = SEND_SLOTS + RDMA_DEPTH;
            attr.cap.max_recv_wr = RECV_SLOTS;
            attr.cap.max_send_sge = 1;
            attr.cap.max_recv_sge = 1;
            attr.cap.max_inline_data = inline;
            // SAFETY: `id`, `pd` and the CQs are live; the attributes are complete.
            if unsafe { (v.rdma_create_qp)(self.id, self.pd, &mut attr) } == 0 {
                self.qp_made = true;
                // SAFETY: rdma_create_qp stored the new queue pair in the id.
                self.qp = unsafe { (*self.id).qp };
                self.max_inline = attr.cap.max_inline_data.min(inline);
                return Ok(());
            }
        }
        Err(fail("rdma_create_qp"))
    }

    fn conn_param(secret: Option<&[u8; SECRET_LEN]>) -> rdma_conn_param {
        // SAFETY: all-zero is a valid rdma_conn_param.
        let mut p: rdma_conn_param = unsafe { std::mem::zeroed() };
        if let Some(s) = secret {
            p.private_data = s.as_ptr().cast();
            p.private_data_len = SECRET_LEN as u8;
        }
        // librdmacm replaces these maxima with the device's own limits (a fixed number above
        // a device's limit is refused). More RDMA READs than the negotiated depth only queue.
        p.responder_resources = RDMA_MAX_RESP_RES;
        p.initiator_depth = RDMA_MAX_INIT_DEPTH;
        p.retry_count = 7;
        // Credits guarantee a posted receive for every send: receiver-not-ready never happens
        // unless a peer misbehaves, and then the connection should fail rather than hang.
        p.rnr_retry_count = 3;
        p
    }

    /// Client: resolve `to`, make the queues, let `prepare` register buffers and post receives,
    /// connect proving `secret`. What `prepare` made comes back with the connection; on a later
    /// failure it is dropped first (its regions before the protection domain).
    pub(crate) fn connect<T>(
        to: SocketAddr,
        secret: &[u8; SECRET_LEN],
        timeout: Duration,
        prepare: impl FnOnce(&mut Connection) -> Result<T>,
    ) -> Result<(Connection, T)> {
        let v = verbs().map_err(rdma_err)?;
        let deadline = Instant::now() + timeout;
        let channel = Channel::new(v)?;
        let id = channel.create_id()?;
        let mut c = Connection::new(channel, id);
        let mut dst = sockaddr_of(to);
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `id` is live; `dst` is a valid sockaddr for its family.
        if unsafe { (v.rdma_resolve_addr)(id, ptr::null_mut(), ptr::addr_of_mut!(dst).cast(), ms) } != 0 {
            return Err(fail(&format!("rdma_resolve_addr {to}")));
        }
        c.channel.expect(
            rdma_cm_event_type::RDMA_CM_EVENT_ADDR_RESOLVED,
            deadline,
            &format!("resolve {to} to an RDMA device (is there one on a network that reaches it?)"),
        )?;
        // SAFETY: `id` is live and its address resolved.
        if unsafe { (v.rdma_resolve_route)(id, ms) } != 0 {
            return Err(fail("rdma_resolve_route"));
        }
        c.channel.expect(rdma_cm_event_type::RDMA_CM_EVENT_ROUTE_RESOLVED, deadline, &format!("route to {to}"))?;
        c.make_queues()?;
        // Declared after `c`: dropped before it on every early return below.
        let made = prepare(&mut c)?;
        let mut p = Connection::conn_param(Some(secret));
        // SAFETY: `id` has a queue pair; `p` and the secret it points to live across the call.
        if unsafe { (v.rdma_connect)(id, &mut p) } != 0 {
            return Err(fail("rdma_connect"));
        }
        c.channel.expect(rdma_cm_event_type::RDMA_CM_EVENT_ESTABLISHED, deadline, &format!("connect to {to}"))?;
        c.connected = true;
        Ok((c, made))
    }

    /// Device name of the connection, for logs.
    pub(crate) fn device_name(&self) -> String {
        // SAFETY: `id` is live; its device context (if any) is open while the id is.
        unsafe {
            let ctx = (*self.id).verbs;
            if ctx.is_null() || (*ctx).device.is_null() {
                return "?".into();
            }
            text((self.v.ibv_get_device_name)((*ctx).device))
        }
    }

    /// Whether rdma_cm reported the peer disconnecting (checked without blocking).
    pub(crate) fn disconnected(&self) -> bool {
        let mut pfd = libc::pollfd { fd: self.channel.fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, no wait.
        if unsafe { libc::poll(&mut pfd, 1, 0) } <= 0 {
            return false;
        }
        matches!(
            self.channel.next(Instant::now() + Duration::from_millis(1)),
            Ok((rdma_cm_event_type::RDMA_CM_EVENT_DISCONNECTED, ..))
        )
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let v = self.v;
        // SAFETY: each object was created by this connection and is destroyed once, queue pair
        // first and protection domain last; memory regions were dropped by the link already.
        unsafe {
            if self.connected {
                (v.rdma_disconnect)(self.id);
            }
            if self.qp_made {
                (v.rdma_destroy_qp)(self.id);
            }
            if !self.recv_cq.is_null() && self.unacked > 0 {
                (v.ibv_ack_cq_events)(self.recv_cq, self.unacked);
            }
            for cq in [self.send_cq, self.recv_cq] {
                if !cq.is_null() {
                    (v.ibv_destroy_cq)(cq);
                }
            }
            if !self.comp.is_null() {
                (v.ibv_destroy_comp_channel)(self.comp);
            }
            if !self.pd.is_null() {
                (v.ibv_dealloc_pd)(self.pd);
            }
            (v.rdma_destroy_id)(self.id);
        }
    }
}

/// Server side: an rdma_cm listener for one expected client.
pub(crate) struct Acceptor {
    listen: *mut rdma_cm_id,
    channel: Option<Channel>,
    port: u16,
}

// SAFETY: the listener's id and channel are used by one thread at a time.
unsafe impl Send for Acceptor {}

impl Acceptor {
    /// Listen on `ip` (the address the client reached the server at), a port of rdma_cm's choosing.
    pub(crate) fn bind(ip: std::net::IpAddr) -> Result<Acceptor> {
        let v = verbs().map_err(rdma_err)?;
        let channel = Channel::new(v)?;
        let listen = channel.create_id()?;
        let mut a = Acceptor { listen, channel: Some(channel), port: 0 };
        let mut addr = sockaddr_of(SocketAddr::new(ip, 0));
        // SAFETY: `listen` is live; `addr` is a valid sockaddr.
        if unsafe { (v.rdma_bind_addr)(listen, ptr::addr_of_mut!(addr).cast()) } != 0 {
            return Err(fail(&format!("rdma_bind_addr {ip} (no RDMA device has this address?)")));
        }
        // SAFETY: `listen` is bound.
        if unsafe { (v.rdma_listen)(listen, 1) } != 0 {
            return Err(fail("rdma_listen"));
        }
        // SAFETY: `listen` is bound; the port comes back in network order.
        a.port = u16::from_be(unsafe { (v.rdma_get_src_port)(listen) });
        Ok(a)
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Accept the first connect request that proves `secret` (others are rejected), making
    /// the queues and letting `prepare` register buffers and post receives before accepting.
    pub(crate) fn accept<T>(
        mut self,
        secret: &[u8; SECRET_LEN],
        timeout: Duration,
        prepare: impl FnOnce(&mut Connection) -> Result<T>,
    ) -> Result<(Connection, T)> {
        let deadline = Instant::now() + timeout;
        let channel = self.channel.as_ref().ok_or_else(|| rdma_err("acceptor used twice".into()))?;
        let v = channel.v;
        let child = loop {
            let (kind, _, id, data) = channel.next(deadline).map_err(|e| match e {
                Error::Timeout(_) => rdma_err(format!("no RDMA connection from the client within {timeout:?}")),
                e => e,
            })?;
            if kind != rdma_cm_event_type::RDMA_CM_EVENT_CONNECT_REQUEST {
                continue;
            }
            if data.len() >= SECRET_LEN && crate::auth::same_secret(&data[..SECRET_LEN], secret) {
                break id;
            }
            tracing::warn!("rejected an RDMA connect request without this session's secret");
            // SAFETY: `id` is the new id of a connect request not accepted; rejected then destroyed.
            unsafe {
                (v.rdma_reject)(id, ptr::null(), 0);
                (v.rdma_destroy_id)(id);
            }
        };
        // One client per listener: the listening id goes now (before the connection takes the
        // channel, so no id is left on a channel being destroyed).
        // SAFETY: `listen` is live and destroyed once (Drop sees null).
        unsafe { (v.rdma_destroy_id)(self.listen) };
        self.listen = ptr::null_mut();
        let channel = self.channel.take().ok_or_else(|| rdma_err("acceptor used twice".into()))?;
        let mut c = Connection::new(channel, child);
        c.make_queues()?;
        // Declared after `c`: dropped before it on every early return below.
        let made = prepare(&mut c)?;
        let mut p = Connection::conn_param(None);
        // SAFETY: `child` has a queue pair with receives posted.
        if unsafe { (v.rdma_accept)(child, &mut p) } != 0 {
            return Err(fail("rdma_accept"));
        }
        c.channel.expect(rdma_cm_event_type::RDMA_CM_EVENT_ESTABLISHED, deadline, "accept the RDMA connection")?;
        c.connected = true;
        Ok((c, made))
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        if let Some(ch) = &self.channel {
            if !self.listen.is_null() {
                // SAFETY: the listening id, destroyed once, before its channel.
                unsafe { (ch.v.rdma_destroy_id)(self.listen) };
            }
        }
    }
}
