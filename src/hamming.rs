//! Hamming index: exact search of PDQ hashes by bit distance.
//!
//! Small sets are scanned flat (XOR + hardware popcount over four 64-bit words). Large sets
//! also keep a multi-index hash (Norouzi et al.): the 256 bits cut into sixteen 16-bit
//! chunks, one table per chunk. Two hashes within distance d agree within ⌊d/16⌋ bits on at
//! least one chunk (pigeonhole), so probing every chunk value within that radius finds every
//! match, and only those candidates are compared in full. Hashes added since the tables
//! were built are scanned flat until the next rebuild; removals are tombstones.

use std::collections::HashMap;

use crate::digest::hamming256 as dist;
use crate::pdq::PdqHash;

/// Below this many hashes a flat scan beats building and probing tables (see README).
pub const MIH_MIN_SIZE: usize = 16_384;
/// Largest per-chunk radius worth probing; beyond it a flat scan is cheaper.
const MAX_CHUNK_RADIUS: u32 = 2;

/// One match: the caller's id and the bit distance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hit {
    pub distance: u32,
    pub id: u64,
}

/// Exact Hamming-distance index over 256-bit hashes.
#[derive(Default)]
pub struct HammingIndex {
    ids: Vec<u64>,
    hashes: Vec<[u64; 4]>,
    live: Vec<bool>,
    slot_of: HashMap<u64, usize>,
    tables: Option<Tables>,
    dead: usize,
}

/// Per chunk, a bucket per 16-bit value in CSR form: slots of bucket v are
/// `slots[offsets[v]..offsets[v + 1]]`.
struct Tables {
    covered: usize,
    offsets: Vec<Vec<u32>>,
    slots: Vec<Vec<u32>>,
}

fn chunk(h: &[u64; 4], c: usize) -> u16 {
    (h[c / 4] >> (16 * (c % 4))) as u16
}

/// Calls `f(slot, distance)` for every slot in `hashes`.
#[inline(always)]
fn scan(hashes: &[[u64; 4]], q: &[u64; 4], mut f: impl FnMut(usize, u32)) {
    for (i, h) in hashes.iter().enumerate() {
        f(i, dist(h, q));
    }
}

/// Every 16-bit value within `radius` bits of `v`, calling `f` on each once.
#[inline(always)]
fn neighbours(v: u16, radius: u32, f: &mut impl FnMut(u16)) {
    fn rec(v: u16, from: u32, left: u32, f: &mut impl FnMut(u16)) {
        f(v);
        if left == 0 {
            return;
        }
        for b in from..16 {
            rec(v ^ (1 << b), b + 1, left - 1, f);
        }
    }
    rec(v, 0, radius, f);
}

impl HammingIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Live hashes in the index.
    pub fn len(&self) -> usize {
        self.ids.len() - self.dead
    }

    /// Whether the index holds no live hash.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `hash` under `id`, replacing what `id` had.
    pub fn add(&mut self, id: u64, hash: &PdqHash) {
        self.remove(id);
        self.slot_of.insert(id, self.ids.len());
        self.ids.push(id);
        self.hashes.push(hash.to_u64s());
        self.live.push(true);
        let covered = self.tables.as_ref().map_or(0, |t| t.covered);
        let pending = self.ids.len() - covered;
        if self.ids.len() >= MIH_MIN_SIZE && pending > (covered / 8).max(4096) {
            self.rebuild();
        }
    }

    /// Removes `id`; returns whether it was there.
    pub fn remove(&mut self, id: u64) -> bool {
        let Some(slot) = self.slot_of.remove(&id) else { return false };
        self.live[slot] = false;
        self.dead += 1;
        if self.dead > 1024 && self.dead * 4 > self.ids.len() {
            self.compact();
        }
        true
    }

    /// Drops tombstones and rebuilds the tables.
    fn compact(&mut self) {
        let keep: Vec<usize> = (0..self.ids.len()).filter(|&s| self.live[s]).collect();
        self.ids = keep.iter().map(|&s| self.ids[s]).collect();
        self.hashes = keep.iter().map(|&s| self.hashes[s]).collect();
        self.live = vec![true; self.ids.len()];
        self.slot_of = self.ids.iter().enumerate().map(|(s, &id)| (id, s)).collect();
        self.dead = 0;
        self.tables = None;
        if self.ids.len() >= MIH_MIN_SIZE {
            self.rebuild();
        }
    }

    /// Builds the chunk tables over every slot (counting sort per chunk).
    fn rebuild(&mut self) {
        let n = self.hashes.len();
        let mut offsets = Vec::with_capacity(16);
        let mut slots = Vec::with_capacity(16);
        for c in 0..16 {
            let mut off = vec![0u32; 65_537];
            for h in &self.hashes {
                off[chunk(h, c) as usize + 1] += 1;
            }
            for v in 0..65_536 {
                off[v + 1] += off[v];
            }
            let mut fill = off.clone();
            let mut s = vec![0u32; n];
            for (slot, h) in self.hashes.iter().enumerate() {
                let v = chunk(h, c) as usize;
                s[fill[v] as usize] = slot as u32;
                fill[v] += 1;
            }
            offsets.push(off);
            slots.push(s);
        }
        self.tables = Some(Tables { covered: n, offsets, slots });
    }

    /// Calls `f(slot, distance)` for every live slot that could be within `radius` chunk-bits
    /// of `q` on some chunk (tables), then for every slot the tables do not cover (flat).
    /// Slots may repeat.
    #[inline(always)]
    fn candidates(&self, q: &[u64; 4], chunk_radius: u32, mut f: impl FnMut(usize, u32)) {
        let covered = match &self.tables {
            Some(t) => {
                for c in 0..16 {
                    let (off, slots) = (&t.offsets[c], &t.slots[c]);
                    neighbours(chunk(q, c), chunk_radius, &mut |v| {
                        for &s in &slots[off[v as usize] as usize..off[v as usize + 1] as usize] {
                            let s = s as usize;
                            if self.live[s] {
                                f(s, dist(&self.hashes[s], q));
                            }
                        }
                    });
                }
                t.covered
            }
            None => 0,
        };
        scan(&self.hashes[covered..], q, |i, d| {
            if self.live[covered + i] {
                f(covered + i, d)
            }
        });
    }

    /// Every id within `max_distance` of `hash`, nearest first (ties by id).
    pub fn within(&self, hash: &PdqHash, max_distance: u32) -> Vec<Hit> {
        let q = hash.to_u64s();
        let mut hits = Vec::new();
        let mut push = |s: usize, d: u32| {
            if d <= max_distance {
                hits.push(Hit { distance: d, id: self.ids[s] });
            }
        };
        let chunk_radius = max_distance / 16;
        if self.tables.is_some() && chunk_radius <= MAX_CHUNK_RADIUS {
            self.candidates(&q, chunk_radius, &mut push);
        } else {
            self.flat(&q, &mut push);
        }
        hits.sort_unstable();
        hits.dedup();
        hits
    }

    /// The `k` nearest ids to `hash`, nearest first (ties by id).
    pub fn nearest(&self, hash: &PdqHash, k: usize) -> Vec<Hit> {
        let q = hash.to_u64s();
        if k == 0 {
            return Vec::new();
        }
        if self.tables.is_some() {
            // After probing chunk radius r everywhere, every hash within 16(r+1)-1 is found.
            for r in 0..=MAX_CHUNK_RADIUS {
                let mut hits = Vec::new();
                self.candidates(&q, r, |s, d| hits.push(Hit { distance: d, id: self.ids[s] }));
                hits.sort_unstable();
                hits.dedup();
                if hits.len() >= k && hits[k - 1].distance < 16 * (r + 1) {
                    hits.truncate(k);
                    return hits;
                }
            }
        }
        let mut hits = Vec::with_capacity(self.len());
        self.flat(&q, |s, d| hits.push(Hit { distance: d, id: self.ids[s] }));
        let k = k.min(hits.len());
        if k > 0 && k < hits.len() {
            hits.select_nth_unstable(k - 1);
        }
        hits.truncate(k);
        hits.sort_unstable();
        hits
    }

    /// Every live slot, flat.
    #[inline(always)]
    fn flat(&self, q: &[u64; 4], mut f: impl FnMut(usize, u32)) {
        scan(&self.hashes, q, |s, d| {
            if self.live[s] {
                f(s, d)
            }
        });
    }

    /// Every id within `max_distance`, by flat scan only (for benchmarks and cross-checks).
    pub fn within_flat(&self, hash: &PdqHash, max_distance: u32) -> Vec<Hit> {
        let mut hits = Vec::new();
        self.flat(&hash.to_u64s(), |s, d| {
            if d <= max_distance {
                hits.push(Hit { distance: d, id: self.ids[s] });
            }
        });
        hits.sort_unstable();
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random hash (splitmix64).
    pub(crate) fn random_hash(seed: u64) -> PdqHash {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let w: [u64; 4] = std::array::from_fn(|_| next());
        PdqHash(std::array::from_fn(|i| (w[i / 4] >> (16 * (i % 4))) as u16))
    }

    fn flip_bits(h: &PdqHash, bits: &[usize]) -> PdqHash {
        let mut out = *h;
        for &b in bits {
            out.0[b / 16] ^= 1 << (b % 16);
        }
        out
    }

    #[test]
    fn neighbour_enumeration_counts() {
        for (r, n) in [(0, 1), (1, 17), (2, 137)] {
            let mut seen = std::collections::HashSet::new();
            neighbours(0xBEEF, r, &mut |v| {
                assert!((v ^ 0xBEEF).count_ones() <= r);
                seen.insert(v);
            });
            assert_eq!(seen.len(), n);
        }
    }

    #[test]
    fn mih_finds_exactly_what_a_flat_scan_finds() {
        let mut idx = HammingIndex::new();
        let n = MIH_MIN_SIZE as u64 + 5000;
        for i in 0..n {
            idx.add(i, &random_hash(i));
        }
        assert!(idx.tables.is_some());
        // Planted near-duplicates at 0..=40 bits, some added after the tables were built.
        for (j, d) in (0..=40usize).enumerate() {
            let base = random_hash(j as u64 * 7);
            let bits: Vec<usize> = (0..d).map(|b| (b * 37 + j) % 256).collect();
            idx.add(1_000_000 + j as u64, &flip_bits(&base, &bits));
        }
        for j in 0..41u64 {
            let q = random_hash(j * 7);
            for radius in [0, 10, 31, 40] {
                assert_eq!(idx.within(&q, radius), idx.within_flat(&q, radius), "query {j} radius {radius}");
            }
            let mut flat = idx.within_flat(&q, 256);
            flat.truncate(5);
            assert_eq!(idx.nearest(&q, 5), flat);
        }
    }

    #[test]
    fn removed_ids_never_come_back() {
        let mut idx = HammingIndex::new();
        let h = random_hash(1);
        idx.add(7, &h);
        idx.add(8, &flip_bits(&h, &[3, 4]));
        assert_eq!(idx.within(&h, 31).len(), 2);
        assert!(idx.remove(7));
        assert!(!idx.remove(7));
        assert_eq!(idx.within(&h, 31), vec![Hit { distance: 2, id: 8 }]);
        idx.add(8, &random_hash(99)); // re-adding an id replaces it
        assert!(idx.within(&h, 31).is_empty());
        assert_eq!(idx.len(), 1);
        assert_eq!(idx.nearest(&h, 3).len(), 1);
    }

    #[test]
    fn compaction_keeps_the_live_set() {
        let mut idx = HammingIndex::new();
        for i in 0..(MIH_MIN_SIZE as u64 + 3000) {
            idx.add(i, &random_hash(i));
        }
        for i in (0..(MIH_MIN_SIZE as u64)).step_by(2) {
            idx.remove(i);
        }
        assert_eq!(idx.len(), MIH_MIN_SIZE / 2 + 3000);
        let q = random_hash(1);
        assert_eq!(idx.within(&q, 0), vec![Hit { distance: 0, id: 1 }]);
        assert!(idx.within(&random_hash(2), 0).is_empty());
    }
}
