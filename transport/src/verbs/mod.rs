//! `rdma://host:port` backend: RDMA verbs over an RC queue pair (RoCE, InfiniBand, soft-RoCE).
//!
//! # Session start
//! A session starts like a `tcp://` one, at the same `host:port`: the supervisor accepts the
//! TCP connection, authenticates it and hands it to a worker, which sends the Welcome. A queue
//! pair cannot move between processes, so the worker then makes its own: it listens with
//! rdma_cm on the IP address the client reached (a port of rdma_cm's choosing) and sends an
//! [`Opcode::RdmaOffer`] frame over TCP with that port and a fresh 32-byte secret;
//! the client connects to it with rdma_cm (which resolves the RoCE GID and route) carrying the
//! secret as the connect request's private data, and the worker accepts only that request.
//! Why not exchange queue-pair numbers and GIDs over TCP and move the queue pairs to RTS by
//! hand: rdma_cm does the address, route and GID-index resolution that differs between RoCE v1,
//! v2 and InfiniBand, and what it needs (an IP address that reaches the server) is what the
//! client already has.
//!
//! The TCP connection stays open and silent for the session: its end of stream tells either
//! side at once that the other process is gone (a queue pair would only notice after its
//! transport retries), and keep-alive probes bound how long a vanished host goes unnoticed.
//!
//! # Message path
//! Each side posts [`RECV_SLOTS`] receives of 32 KiB before connecting, and so starts with that
//! many credits. A frame is copied into send slots and goes as SENDs with immediate data (small
//! ones inline); the immediate value returns the credits of the receives this side has
//! re-posted since its last send. A data send needs two credits, so one is always left for a
//! bare credit update (a zero-byte SEND), sent when half the slots are owed and nothing else is
//! going: a receiver is never not ready, and neither side can starve the other. One send in 16
//! is signaled; completion queues are busy-polled, and only an idle receiver (after the
//! [`PollPolicy`](crate::PollPolicy)'s spin time) parks on the receive queue's completion channel.
//!
//! # Bulk path
//! Memory either side registers ([`RemoteMemory::register`](crate::RemoteMemory::register)) can
//! be read and written by the peer with one-sided RDMA READ and WRITE: the client registers the
//! pinned memory the application allocates, and the worker moves copies between it and its own
//! registered staging without the client's CPU.
//!
//! # Failure
//! A completion error (peer unreachable, queue pair flushed) makes the link fail every later
//! call; a memory key or range the registration does not allow is a protocol error (the peer's
//! fault, and only its own connection suffers). Dropping the link deregisters every region,
//! then destroys the queue pair, completion queues, protection domain and connection id.

mod cm;
mod ffi;
mod link;

use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::time::Duration;

use remora_wire::{ops, Header, Opcode, Status, U16};
use zerocopy::{FromBytes, IntoBytes};

use self::cm::{Acceptor, Connection, SECRET_LEN};
pub use self::link::VerbsLink;
use crate::{send_frame, Error, Link, LinkKind, Result};

pub use self::cm::RECV_SLOTS;

/// How long either side waits for the other's part of the RDMA connection setup.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(20);

/// One RDMA device, as `remora doctor` reports it.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    /// Device name (`mlx5_0`, `rxe0`).
    pub name: String,
    /// State of port 1 (`ACTIVE`, `DOWN`, …).
    pub port_state: String,
    /// Link layer of port 1 (`Ethernet` for RoCE, `InfiniBand`).
    pub link_layer: String,
}

/// Whether this process can use verbs at all: rdma-core loads and lists at least one device.
/// The error says which of the two is missing.
pub fn available() -> std::result::Result<Vec<DeviceInfo>, String> {
    let list = devices()?;
    if list.is_empty() {
        return Err("rdma-core is installed but lists no RDMA device (no NIC, or rdma_rxe not set up)".into());
    }
    Ok(list)
}

/// The RDMA devices rdma-core lists (empty when none), or why rdma-core cannot be loaded.
pub fn devices() -> std::result::Result<Vec<DeviceInfo>, String> {
    let v = ffi::verbs()?;
    let mut n = 0;
    // SAFETY: `n` receives the count; the list is freed below.
    let list = unsafe { (v.ibv_get_device_list)(&mut n) };
    if list.is_null() {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOSYS) {
            return Err("this kernel has no RDMA support (ibv_get_device_list: ENOSYS); see soft-roce-setup/".into());
        }
        return Err(format!("ibv_get_device_list: {e}"));
    }
    let mut out = Vec::new();
    for i in 0..usize::try_from(n).unwrap_or(0) {
        // SAFETY: `list` has `n` entries.
        let dev = unsafe { *list.add(i) };
        // SAFETY: `dev` is a listed device.
        let name = ffi::text(unsafe { (v.ibv_get_device_name)(dev) });
        let (mut port_state, mut link_layer) = ("unknown".to_string(), "unknown".to_string());
        // SAFETY: `dev` is a listed device; the context is closed below.
        let ctx = unsafe { (v.ibv_open_device)(dev) };
        if !ctx.is_null() {
            // SAFETY: all-zero is a valid ibv_port_attr, larger than what the call writes.
            let mut attr: rdma_sys::ibv_port_attr = unsafe { std::mem::zeroed() };
            // SAFETY: `ctx` is open; port 1 exists on every device.
            if unsafe { (v.ibv_query_port)(ctx, 1, &mut attr) } == 0 {
                port_state = match attr.state {
                    rdma_sys::ibv_port_state::IBV_PORT_ACTIVE => "ACTIVE",
                    rdma_sys::ibv_port_state::IBV_PORT_DOWN => "DOWN",
                    rdma_sys::ibv_port_state::IBV_PORT_INIT => "INIT",
                    rdma_sys::ibv_port_state::IBV_PORT_ARMED => "ARMED",
                    _ => "other",
                }
                .into();
                link_layer = match u32::from(attr.link_layer) {
                    1 => "InfiniBand",
                    2 => "Ethernet",
                    _ => "unspecified",
                }
                .into();
            }
            // SAFETY: opened above, closed once.
            unsafe { (v.ibv_close_device)(ctx) };
        }
        out.push(DeviceInfo { name, port_state, link_layer });
    }
    // SAFETY: the list got above, freed once; no entry is used afterwards.
    unsafe { (v.ibv_free_device_list)(list) };
    Ok(out)
}

fn tcp_of(link: Box<dyn Link>) -> Result<(TcpStream, String)> {
    let peer = link.peer();
    let h = link.into_handoff()?;
    if h.kind != LinkKind::Tcp {
        return Err(Error::Protocol("an rdma session must start on a tcp connection".into()));
    }
    let fd: OwnedFd = h.fds.into_iter().next().ok_or_else(|| Error::Protocol("tcp handoff without a socket".into()))?;
    Ok((TcpStream::from(fd), peer))
}

fn build(conn: Connection, tcp: TcpStream, peer: String, (send, recv): Bufs) -> Box<dyn Link> {
    Box::new(VerbsLink::new(conn, send, recv, tcp, peer))
}

type Bufs = ((cm::Mr, Box<[u8]>), (cm::Mr, Box<[u8]>));

/// Register both buffer rings and post every receive (before the connection is established,
/// so the peer's first send finds one).
fn prepare(c: &mut Connection) -> Result<Bufs> {
    let send = VerbsLink::buffers(c, cm::SEND_SLOTS)?;
    let (mr, mut buf) = VerbsLink::buffers(c, RECV_SLOTS)?;
    for slot in 0..RECV_SLOTS {
        VerbsLink::post_recv(c, &mr, &mut buf, slot)?;
    }
    Ok((send, (mr, buf)))
}

/// Worker side, right after the Welcome: offer an RDMA connection on the TCP `link` and move
/// the session to it. On failure the client is told why (an error-status `RdmaOffer`) where
/// that is still possible.
pub fn serve_upgrade(link: Box<dyn Link>, timeout: Duration) -> Result<Box<dyn Link>> {
    let (tcp, peer) = tcp_of(link)?;
    let mut reply = crate::tcp::TcpLink::from_stream(tcp.try_clone().map_err(|e| Error::io("tcp clone", e))?, true)?;
    let local = tcp.local_addr().map_err(|e| Error::io("tcp local address", e))?;
    let acceptor = match Acceptor::bind(local.ip()) {
        Ok(a) => a,
        Err(e) => {
            let why = format!("the server cannot listen for RDMA on {}: {e}", local.ip());
            let to = Header::request(Opcode::RdmaOffer, 0, 0);
            let _ = crate::handshake::refuse(&mut reply, &to, Status::NOT_SUPPORTED, &why);
            return Err(e);
        }
    };
    let secret = crate::auth::nonce();
    let offer = ops::RdmaOffer { port: U16::new(acceptor.port()), reserved: [0; 6], secret };
    let hdr = Header::request(Opcode::RdmaOffer, 0, offer.as_bytes().len() as u64);
    send_frame(&mut reply, &hdr, offer.as_bytes(), &[])?;
    let (conn, bufs) = acceptor.accept(&secret, timeout, prepare)?;
    tracing::info!(
        device = conn.device_name(),
        port = offer.port.get(),
        "session moved to rdma; bulk copies by RDMA READ/WRITE through pinned staging (GPUDirect RDMA not used)"
    );
    Ok(build(conn, tcp, peer, bufs))
}

/// Client side, right after the Welcome: take the worker's [`Opcode::RdmaOffer`] and connect
/// to it; the session continues on the returned link.
pub fn client_upgrade(mut link: Box<dyn Link>, timeout: Duration) -> Result<Box<dyn Link>> {
    let (_, payload) = crate::handshake::recv_payload_of(&mut *link, Opcode::RdmaOffer, 4096)?;
    let offer = ops::RdmaOffer::read_from_prefix(&payload).map_err(|_| Error::Handshake("short RDMA offer".into()))?.0;
    let (tcp, peer) = tcp_of(link)?;
    let server = tcp.peer_addr().map_err(|e| Error::io("tcp peer address", e))?;
    let to = SocketAddr::new(server.ip(), offer.port.get());
    let secret: [u8; SECRET_LEN] = offer.secret;
    let (conn, bufs) = Connection::connect(to, &secret, timeout, prepare)?;
    tracing::debug!(device = conn.device_name(), %to, "session moved to rdma");
    Ok(build(conn, tcp, peer, bufs))
}

/// IPv4 addresses that RDMA devices carry (RoCE v2 GIDs of the form `::ffff:a.b.c.d`, read
/// from sysfs), with the device name: where an `rdma://` server can listen.
pub fn ipv4_addresses() -> Vec<(String, std::net::Ipv4Addr)> {
    let mut out = Vec::new();
    let Ok(devs) = std::fs::read_dir("/sys/class/infiniband") else { return out };
    for dev in devs.flatten() {
        let name = dev.file_name().to_string_lossy().into_owned();
        let Ok(gids) = std::fs::read_dir(dev.path().join("ports/1/gids")) else { continue };
        for gid in gids.flatten() {
            let Ok(text) = std::fs::read_to_string(gid.path()) else { continue };
            let Ok(ip) = u128::from_str_radix(&text.trim().replace(':', ""), 16) else { continue };
            if let Some(v4) = std::net::Ipv6Addr::from(ip).to_ipv4_mapped() {
                if !out.iter().any(|(_, a)| *a == v4) {
                    out.push((name.clone(), v4));
                }
            }
        }
    }
    out
}
