//! Arbitrary bytes as one side's half of the handshake, fed to the other side over an
//! in-memory link that reports the peer gone once the bytes are used up (so nothing can block).
//!
//! The first byte picks the side under test (the rest is what its peer sent):
//! - 0: the server's authentication (`server_authenticate`) without a token,
//! - 1: the same with a token: it must never succeed (the proof covers a fresh server nonce),
//! - 2, 3: the client's handshake without and with a token (a hostile or broken server),
//! - 4: the client's statistics request.
//!
//! Every run must end in `Ok` or an error, never a panic or a hang, and what the side under
//! test sent must be whole, valid frames.

#![no_main]

use libfuzzer_sys::fuzz_target;
use remora_transport::handshake::{client_handshake, client_stats, server_authenticate};
use remora_transport::testing::MemLink;
use remora_wire::{Capabilities, Flags, PROTOCOL_VERSION};

const TOKEN: &[u8] = b"fuzz-token";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, peer)) = data.split_first() else { return };
    let (mut link, sent) = MemLink::new(peer);
    let server_caps = Capabilities::ASYNC_OPS | Capabilities::SHM | Capabilities::STATS | Capabilities::EMULATED;
    let is_server = matches!(mode % 5, 0 | 1);
    match mode % 5 {
        0 => {
            if let Ok(n) = server_authenticate(&mut link, None, server_caps) {
                assert_eq!(n.version, PROTOCOL_VERSION);
                assert_eq!(n.capabilities.0 & !server_caps.0, 0, "capabilities the server never offered");
            }
        }
        1 => {
            let r = server_authenticate(&mut link, Some(TOKEN), server_caps);
            assert!(r.is_err(), "authenticated without knowing the token: {r:?}");
        }
        2 => {
            let _ = client_handshake(&mut link, None, Capabilities::ASYNC_OPS);
        }
        3 => {
            let _ = client_handshake(&mut link, Some(TOKEN), Capabilities::ASYNC_OPS | Capabilities::SHM);
        }
        _ => {
            let _ = client_stats(&mut link, Some(TOKEN));
        }
    }
    let frames = match sent.frames() {
        Ok(f) => f,
        Err(e) => panic!("the side under test sent a malformed frame: {e}"),
    };
    for (hdr, _) in &frames {
        // The server sends only replies (Challenge, refusals); the client only requests.
        assert_eq!(hdr.flags().contains(Flags::REPLY), is_server, "{hdr:?}");
    }
    // Each side sends at most two frames in its half (Challenge + refusal; Hello + Auth).
    assert!(frames.len() <= 2, "{} frames", frames.len());
});
