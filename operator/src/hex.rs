//! Hex digests: the one place names and keys are made from SHA-256.

use sha2::{Digest, Sha256};

/// Lowercase hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first `chars` hex digits of the SHA-256 of `data`.
pub fn digest(data: &[u8], chars: usize) -> String {
    let mut hex = encode(&Sha256::digest(data));
    hex.truncate(chars);
    hex
}
