//! Shared marks: keypoints that recur, at the same place in the frame, in photos of many
//! different hotels are a broker's logo, a site's stamp or a date stamp, not a room. They
//! are learned from the catalog (Sivic and Zisserman's stop-words: what is everywhere tells
//! nothing) and left out of the matched points an investigator is shown. Knows nothing of
//! catalogs or engines.

use base64::Engine as _;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::digest::hamming256;
use crate::verify::Keypoints;

/// How marks are learned.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MarkOptions {
    /// Learn the stop-list with the whitening (`learn`, `reindex`, `eval`).
    pub enabled: bool,
    /// A keypoint is a mark when keypoints like it, at its place, are in photos of at least
    /// this many other hotels.
    pub min_hotels: usize,
    /// Photos sampled from the catalog to learn from, at most (spread over all of them).
    pub max_photos: usize,
    /// Bits (of 256) within which two descriptors are alike. A stamped mark's keypoints are
    /// near-identical; at 40 bits ordinary corners of any room matched across hotels and
    /// 99 % of the keypoints of listings-dev-nowm (no marks) were flagged, at 10 bits 0.1 %
    /// (docs/retrieval.md).
    pub distance: u32,
    /// Mask a photo's marks before it is embedded, gallery and query photos alike. Off by
    /// default: on listings-dev-nowm it cost masked queries hotel@1 (0.415 → 0.358) and on
    /// the marked listings-dev it gained nothing (docs/retrieval.md).
    pub mask_embedding: bool,
}

impl Default for MarkOptions {
    fn default() -> Self {
        MarkOptions { enabled: true, min_hotels: 3, max_photos: 400, distance: 10, mask_embedding: false }
    }
}

/// Keypoints of a photo learned from, at most: the finest level's strongest (marks are
/// small and sharp), which bounds the learning's cost (quadratic within a cell).
const PER_PHOTO: usize = 500;

/// Keypoints alike learned marks a photo must have before any of its keypoints count as on
/// a mark (one chance likeness wipes nothing out).
const MIN_HITS: usize = 3;

/// How far (fraction of the frame, each way) around a keypoint alike a learned mark other
/// keypoints count as on the same mark.
const REACH: f32 = 0.05;

/// How far (fraction of the frame, each way) a mark's region reaches past its outermost
/// keypoints: a keypoint sits inside the strokes it was found on.
const PAD: f32 = 0.02;

/// Positions are compared on a grid this many cells a side (fractions of the frame): a
/// mark sits at the same place in every photo it is stamped on.
const GRID: usize = 16;

/// A learned mark: a descriptor and where in the frame (fractions) it was seen.
type Entry = ([u64; 4], [f32; 2]);

/// A keypoint seen while learning: its hotel, descriptor and position (fractions).
type Seen = (i64, [u64; 4], [f32; 2]);

/// The learned marks: descriptors and where in the frame (fractions) they were seen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StopList {
    entries: Vec<Entry>,
    /// The entries' descriptors by grid cell (row-major), for lookups near a position.
    by_cell: Vec<Vec<[u64; 4]>>,
    /// Photos and hotels it was learned from.
    pub photos: usize,
    pub hotels: usize,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    /// base64 of 40 bytes per entry: the descriptor (32, little-endian words), then x and y.
    entries: String,
    photos: usize,
    hotels: usize,
}

fn cell(xy: [f32; 2]) -> (usize, usize) {
    let c = |v: f32| ((v * GRID as f32) as usize).min(GRID - 1);
    (c(xy[0]), c(xy[1]))
}

/// Each keypoint's position as fractions of its picture.
fn fractions(k: &Keypoints) -> impl Iterator<Item = [f32; 2]> + '_ {
    let [w, h] = k.size;
    k.xy.iter().map(move |p| [p[0] / w.max(1.0), p[1] / h.max(1.0)])
}

impl StopList {
    /// Learns from `photos` (hotel id, keypoints): every keypoint with alike ones, in the same
    /// or a neighbouring cell of the frame, in photos of `min_hotels` other hotels.
    pub fn learn(photos: &[(i64, Keypoints)], opts: &MarkOptions) -> StopList {
        // Every keypoint, bucketed by cell: (hotel, descriptor, position).
        let mut cells: Vec<Vec<Seen>> = vec![Vec::new(); GRID * GRID];
        for (hotel, k) in photos {
            for (d, xy) in k.descriptors.iter().zip(fractions(k)).take(PER_PHOTO) {
                let (cx, cy) = cell(xy);
                cells[cy * GRID + cx].push((*hotel, *d, xy));
            }
        }
        let entries: Vec<Entry> = (0..GRID * GRID)
            .into_par_iter()
            .flat_map_iter(|c| {
                let (cx, cy) = (c % GRID, c / GRID);
                let near: Vec<&Seen> = (cy.saturating_sub(1)..=(cy + 1).min(GRID - 1))
                    .flat_map(|y| (cx.saturating_sub(1)..=(cx + 1).min(GRID - 1)).map(move |x| y * GRID + x))
                    .flat_map(|n| cells[n].iter())
                    .collect();
                let mut out = Vec::new();
                for (hotel, d, xy) in &cells[c] {
                    let mut others: Vec<i64> = Vec::new();
                    for (h, d2, _) in &near {
                        if h != hotel && !others.contains(h) && hamming256(d, d2) <= opts.distance {
                            others.push(*h);
                            if others.len() >= opts.min_hotels {
                                out.push((*d, *xy));
                                break;
                            }
                        }
                    }
                }
                out.into_iter()
            })
            .collect();
        let mut hotels: Vec<i64> = photos.iter().map(|p| p.0).collect();
        hotels.sort_unstable();
        hotels.dedup();
        StopList::new(entries, photos.len(), hotels.len())
    }

    fn new(entries: Vec<Entry>, photos: usize, hotels: usize) -> StopList {
        let mut by_cell = vec![Vec::new(); GRID * GRID];
        for (d, xy) in &entries {
            let (cx, cy) = cell(*xy);
            by_cell[cy * GRID + cx].push(*d);
        }
        StopList { entries, by_cell, photos, hotels }
    }

    /// Marks it knows.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it knows none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// For each keypoint of `k`, whether it lies on a mark: near (within `REACH` of the
    /// frame) a keypoint alike a learned one at its place, once `MIN_HITS` are alike. The
    /// reach covers the rest of a mark's keypoints, which the list need not all hold.
    pub fn on_marks(&self, k: &Keypoints, distance: u32) -> Vec<bool> {
        let xy: Vec<[f32; 2]> = fractions(k).collect();
        let hits: Vec<[f32; 2]> = k
            .descriptors
            .iter()
            .zip(&xy)
            .filter(|(d, p)| {
                let (cx, cy) = cell(**p);
                (cy.saturating_sub(1)..=(cy + 1).min(GRID - 1))
                    .flat_map(|y| (cx.saturating_sub(1)..=(cx + 1).min(GRID - 1)).map(move |x| y * GRID + x))
                    .any(|c| self.by_cell.get(c).is_some_and(|ms| ms.iter().any(|m| hamming256(d, m) <= distance)))
            })
            .map(|(_, p)| *p)
            .collect();
        if hits.len() < MIN_HITS {
            return vec![false; xy.len()];
        }
        xy.iter().map(|p| hits.iter().any(|h| (h[0] - p[0]).abs() <= REACH && (h[1] - p[1]).abs() <= REACH)).collect()
    }

    /// The regions of the frame a photo's shared marks cover, as `[x0, y0, x1, y1]` fractions:
    /// its keypoints on marks grouped by nearness (within `REACH`), each group's bounding box
    /// widened by `PAD`. Empty when the photo carries none.
    pub fn regions(&self, k: &Keypoints, distance: u32) -> Vec<[f32; 4]> {
        if self.is_empty() {
            return Vec::new();
        }
        let on: Vec<[f32; 2]> = fractions(k).zip(self.on_marks(k, distance)).filter(|(_, on)| *on).map(|(p, _)| p).collect();
        // Union-find over the points on marks: two within reach belong to one mark.
        let mut parent: Vec<usize> = (0..on.len()).collect();
        fn root(parent: &mut [usize], mut i: usize) -> usize {
            while parent[i] != i {
                parent[i] = parent[parent[i]];
                i = parent[i];
            }
            i
        }
        for i in 0..on.len() {
            for j in i + 1..on.len() {
                if (on[i][0] - on[j][0]).abs() <= REACH && (on[i][1] - on[j][1]).abs() <= REACH {
                    let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                    parent[a] = b;
                }
            }
        }
        let mut boxes: std::collections::BTreeMap<usize, [f32; 4]> = std::collections::BTreeMap::new();
        for (i, p) in on.iter().enumerate() {
            let b = boxes.entry(root(&mut parent, i)).or_insert([p[0], p[1], p[0], p[1]]);
            *b = [b[0].min(p[0]), b[1].min(p[1]), b[2].max(p[0]), b[3].max(p[1])];
        }
        boxes.into_values().map(|b| [(b[0] - PAD).max(0.0), (b[1] - PAD).max(0.0), (b[2] + PAD).min(1.0), (b[3] + PAD).min(1.0)]).collect()
    }

    /// The stored form.
    pub fn to_json(&self) -> serde_json::Value {
        let mut bytes = Vec::with_capacity(self.entries.len() * 40);
        for (d, xy) in &self.entries {
            d.iter().for_each(|w| bytes.extend_from_slice(&w.to_le_bytes()));
            xy.iter().for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
        }
        let stored = Stored { entries: base64::engine::general_purpose::STANDARD.encode(bytes), photos: self.photos, hotels: self.hotels };
        serde_json::to_value(stored).unwrap_or_default()
    }

    /// Reads the stored form.
    pub fn from_json(body: serde_json::Value) -> Result<Self, String> {
        let s: Stored = serde_json::from_value(body).map_err(|e| e.to_string())?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(&s.entries).map_err(|e| e.to_string())?;
        if bytes.len() % 40 != 0 {
            return Err(format!("{} bytes of marks: not whole entries of 40", bytes.len()));
        }
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
        let float = |b: &[u8]| f32::from_le_bytes(b.try_into().unwrap_or_default());
        let entries = bytes
            .chunks_exact(40)
            .map(|e| ([word(&e[0..8]), word(&e[8..16]), word(&e[16..24]), word(&e[24..32])], [float(&e[32..36]), float(&e[36..40])]))
            .collect();
        Ok(StopList::new(entries, s.photos, s.hotels))
    }
}
