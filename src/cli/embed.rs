//! `hotelmatch embed`: embeds photos and prints one JSON line each.

use super::*;

#[derive(Args)]
pub(super) struct EmbedArgs {
    /// Photos (JPEG, PNG, WebP, ...).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Mask image (same aspect ratio as the photo; light pixels are left out of matching).
    #[arg(long, conflicts_with = "rect")]
    mask: Option<PathBuf>,
    /// Rectangle to leave out, x,y,width,height in photo pixels (repeatable).
    #[arg(long, value_parser = parse_rect)]
    rect: Vec<[u32; 4]>,
    /// Print the whole vector, not only its hash.
    #[arg(long)]
    vector: bool,
    /// With no mask, look for a region already painted out and mask it (as searches do).
    #[arg(long)]
    auto_mask: bool,
}

pub(super) fn run(cfg: &Config, args: EmbedArgs, out: &mut impl Write) -> Result<()> {
    let EmbedArgs { images, mask, rect, vector, auto_mask } = args;
    let embedder = cfg.onnx_embedder()?;
    let mask = match (mask, rect.is_empty()) {
        (Some(path), _) => Some(load_mask(&path, cfg)?),
        (None, false) => Some(Mask::Rects(rect)),
        (None, true) => None,
    };
    let mut failed = 0;
    for path in &images {
        let t = Instant::now();
        let bytes = read(path)?;
        let res = embedder.embed_input(Input {
            bytes: &bytes,
            mask: mask.as_ref(),
            auto_mask: auto_mask && mask.is_none(),
            decoded: None,
            marks: &[],
        });
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let line = match res {
            Ok(e) => {
                let mut h = Sha256::new();
                e.vector.iter().for_each(|x| h.update(x.to_le_bytes()));
                let mut j = serde_json::json!({
                    "file": path, "model": embedder.card().name, "pooling": cfg.embed.pooling.to_string(),
                    "dim": e.vector.len(), "vector_sha256": hex::encode(h.finalize()),
                    "cells_used": e.cells_used, "cells_total": e.cells_total, "ms": (ms * 100.0).round() / 100.0,
                });
                if let Some(area) = e.auto_mask {
                    j["auto_mask"] = serde_json::json!(area);
                }
                if vector {
                    j["vector"] = serde_json::json!(e.vector);
                }
                j
            }
            Err(e) => {
                failed += 1;
                serde_json::json!({ "file": path, "error": e.to_string() })
            }
        };
        writeln!(out, "{line}")?;
    }
    if failed > 0 {
        bail!("{failed} of {} photos could not be embedded", images.len());
    }
    Ok(())
}
