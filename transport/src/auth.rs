//! Token authentication: HMAC-SHA256 over the handshake transcript, so the token never crosses
//! the network.

use hmac::{Hmac, Mac};
use remora_wire::handshake::{auth_transcript, Challenge, Hello, MAC_LEN, NONCE_LEN};
use sha2::Sha256;

/// Fresh random nonce from the OS.
pub fn nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    // The OS random source failing is not recoverable in any useful way; fall back to a
    // time-and-pid mix only so that a broken getrandom never yields a constant nonce.
    if getrandom::getrandom(&mut n).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        n[..16].copy_from_slice(&t.to_le_bytes());
        n[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    }
    n
}

/// The proof a client holding `token` sends.
pub fn proof(token: &[u8], hello: &Hello, challenge: &Challenge) -> [u8; MAC_LEN] {
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(token).unwrap_or_else(|_| unreachable_key());
    mac.update(&auth_transcript(hello, challenge));
    mac.finalize().into_bytes().into()
}

/// Check a proof in constant time.
pub fn verify(token: &[u8], hello: &Hello, challenge: &Challenge, proof_bytes: &[u8; MAC_LEN]) -> bool {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(token).unwrap_or_else(|_| unreachable_key());
    mac.update(&auth_transcript(hello, challenge));
    mac.verify_slice(proof_bytes).is_ok()
}

fn unreachable_key() -> Hmac<Sha256> {
    // HMAC-SHA256 takes keys of every length; new_from_slice cannot fail.
    unreachable!("HMAC accepts keys of any length")
}

/// Whether two secrets are equal, compared without an early exit (no timing hint of how much
/// of a guess was right).
pub(crate) fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use remora_wire::{U16, U32, U64};

    #[test]
    fn proof_verifies_only_with_the_same_token_and_nonces() {
        let hello = Hello {
            min_version: U16::new(1),
            max_version: U16::new(1),
            client_pid: U32::new(1),
            capabilities: U64::new(0),
            client_nonce: nonce(),
        };
        let ch = Challenge {
            version: U16::new(1),
            auth_required: 1,
            reserved: [0; 5],
            capabilities: U64::new(0),
            server_nonce: nonce(),
        };
        let p = proof(b"secret", &hello, &ch);
        assert!(verify(b"secret", &hello, &ch, &p));
        assert!(!verify(b"Secret", &hello, &ch, &p));
        let mut ch2 = ch;
        ch2.server_nonce[0] ^= 1;
        assert!(!verify(b"secret", &hello, &ch2, &p));
        assert_ne!(hello.client_nonce, ch.server_nonce);
    }
}
