//! Digests and codecs shared across modules: sha256 content addresses, the Hamming distance
//! of 256-bit hashes, and the little-endian bytes of f32 vectors.

use sha2::{Digest, Sha256};

/// The sha256 of `bytes`, in lowercase hex (content addresses, key secrets, audit).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Bits that differ between two 256-bit values: one `popcnt` per word (the build enables
/// it, see .cargo/config.toml).
#[inline(always)]
pub fn hamming256(a: &[u64; 4], b: &[u64; 4]) -> u32 {
    (a[0] ^ b[0]).count_ones() + (a[1] ^ b[1]).count_ones() + (a[2] ^ b[2]).count_ones() + (a[3] ^ b[3]).count_ones()
}

/// A vector as little-endian bytes (how catalogs and dumps store it).
pub fn f32_to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A vector from its little-endian bytes (a trailing partial value is ignored).
pub fn bytes_to_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_round_trip_and_distances_count_bits() {
        let v = [0.5f32, -1.25, f32::MAX];
        assert_eq!(bytes_to_f32(&f32_to_bytes(&v)), v);
        assert_eq!(hamming256(&[0, 0, 0, 0], &[1, 3, 0, u64::MAX]), 67);
        assert_eq!(sha256_hex(b"hello"), "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    }
}
