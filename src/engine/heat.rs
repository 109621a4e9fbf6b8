//! Which regions of two photos drove their match, for any model (SSCD has no feature map to
//! show): each cell of a grid over one photo is left out in turn, as a mask leaves out paint,
//! and how much the similarity to the other photo drops is that cell's heat. Computed on
//! demand, for one query photo and one evidence photo.

use std::time::Instant;

use serde::Serialize;

use super::search::QueryPhoto;
use super::{Engine, EngineError};
use crate::catalog::Status;
use crate::embed::pool::Mask;
use crate::embed::Input;

/// Columns and rows of the grid over each photo.
pub const HEAT_GRID: (u32, u32) = (4, 3);

/// The heat of every cell of both photos.
#[derive(Debug, Clone, Serialize)]
pub struct Heat {
    pub image_id: i64,
    /// Columns and rows of each grid.
    pub grid: (u32, u32),
    /// Cosine similarity of the two photos whole (as embedded, the query with its mask).
    pub similarity: f32,
    /// Per query cell, row by row: how much the similarity drops without it (negative: the
    /// cell looks less like the other photo than the rest does). A masked cell is about 0.
    pub query: Vec<f32>,
    /// The same for the evidence photo's cells.
    pub stored: Vec<f32>,
    /// What it cost.
    pub millis: f64,
}

/// `base` with the cell `[x, y, w, h]` (full-resolution pixels of a `width` × `height`
/// photo) left out too.
fn with_cell(base: Option<&Mask>, cell: [u32; 4], width: u32, height: u32) -> Mask {
    match base {
        None => Mask::Rects(vec![cell]),
        Some(Mask::Rects(r)) => Mask::Rects(r.iter().copied().chain([cell]).collect()),
        Some(Mask::Bitmap(g)) => {
            let mut g = g.clone();
            let (gw, gh) = (u64::from(g.width()), u64::from(g.height()));
            let sx = |v: u32| (u64::from(v) * gw / u64::from(width.max(1))) as u32;
            let sy = |v: u32| (u64::from(v) * gh / u64::from(height.max(1))) as u32;
            for y in sy(cell[1])..sy(cell[1] + cell[3]).min(g.height()) {
                for x in sx(cell[0])..sx(cell[0] + cell[2]).min(g.width()) {
                    g.put_pixel(x, y, image::Luma([255]));
                }
            }
            Mask::Bitmap(g)
        }
    }
}

/// The grid's cells over a `width` × `height` photo, row by row.
fn cells(width: u32, height: u32) -> Vec<[u32; 4]> {
    let (cols, rows) = HEAT_GRID;
    (0..rows)
        .flat_map(|r| {
            (0..cols).map(move |c| {
                let (x0, x1) = (c * width / cols, (c + 1) * width / cols);
                let (y0, y1) = (r * height / rows, (r + 1) * height / rows);
                [x0, y0, (x1 - x0).max(1), (y1 - y0).max(1)]
            })
        })
        .collect()
}

impl Engine {
    /// The heat of the query photo's and evidence photo `image_id`'s regions (see the module
    /// doc). Audited as `search-heat` (the query's sha256 and the photo, not the query).
    pub fn region_heat(&self, bytes: &[u8], mask: Option<&Mask>, image_id: i64, actor: &str) -> Result<Heat, EngineError> {
        let t = Instant::now();
        let img = self.catalog.image(image_id)?;
        if img.status != Status::Active {
            return Err(crate::catalog::CatalogError::NoImage(image_id).into());
        }
        let stored_bytes = self.store.get(&img.sha256)?;
        let query = QueryPhoto::decode(bytes, &self.settings.limits)?;
        let stored = QueryPhoto::decode(&stored_bytes, &self.settings.limits)?;
        let embed = |photo: &QueryPhoto, bytes: &[u8], mask: Option<&Mask>| -> Result<Vec<f32>, EngineError> {
            let input = Input { mask, decoded: Some(photo.decoded()), ..Input::photo(bytes) };
            Ok(self.embedder.embed(input)?.vector)
        };
        let q = embed(&query, bytes, mask)?;
        let s = embed(&stored, &stored_bytes, None)?;
        let similarity = crate::vector::dot(&q, &s);
        // One side's cells left out in turn, against the other side whole.
        let heat = |photo: &QueryPhoto, bytes: &[u8], base: Option<&Mask>, other: &[f32]| -> Result<Vec<f32>, EngineError> {
            let (w, h) = (photo.decoded().full_width, photo.decoded().full_height);
            cells(w, h)
                .into_iter()
                .map(|cell| match embed(photo, bytes, Some(&with_cell(base, cell, w, h))) {
                    Ok(v) => Ok(similarity - crate::vector::dot(&v, other)),
                    // The cell and the mask cover everything: nothing is left to compare.
                    Err(e) if e.kind().1 == "bad_mask" => Ok(0.0),
                    Err(e) => Err(e),
                })
                .collect()
        };
        let query_heat = heat(&query, bytes, mask, &s)?;
        let stored_heat = heat(&stored, &stored_bytes, None, &q)?;
        let detail = serde_json::json!({"query_sha256": crate::digest::sha256_hex(bytes), "image_id": image_id});
        self.catalog.audit(actor, "search-heat", &detail)?;
        Ok(Heat { image_id, grid: HEAT_GRID, similarity, query: query_heat, stored: stored_heat, millis: t.elapsed().as_secs_f64() * 1e3 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_tile_the_photo_and_a_cell_joins_any_mask() {
        let c = cells(640, 480);
        assert_eq!(c.len(), 12);
        assert_eq!(c.iter().map(|r| u64::from(r[2]) * u64::from(r[3])).sum::<u64>(), 640 * 480);
        assert_eq!(c[5], [160, 160, 160, 160]);
        let Mask::Rects(r) = with_cell(Some(&Mask::Rects(vec![[0, 0, 10, 10]])), c[5], 640, 480) else { panic!() };
        assert_eq!(r, vec![[0, 0, 10, 10], [160, 160, 160, 160]]);
        let Mask::Bitmap(g) = with_cell(Some(&Mask::Bitmap(image::GrayImage::new(64, 48))), c[5], 640, 480) else { panic!() };
        assert_eq!((g.get_pixel(20, 20)[0], g.get_pixel(15, 20)[0], g.get_pixel(20, 32)[0]), (255, 0, 0));
    }
}
