//! `hotelmatch classify`: imageNet top-5 of a photo (a conversion check).

use super::*;

#[derive(Args)]
pub(super) struct ClassifyArgs {
    /// The photo to classify.
    image: PathBuf,
}

pub(super) fn run(cfg: &Config, args: ClassifyArgs, out: &mut impl Write) -> Result<()> {
    let ClassifyArgs { image } = args;
    let embedder = cfg.onnx_embedder()?;
    let probs = embedder.classify(&read(&image)?)?;
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    for &i in idx.iter().take(5) {
        writeln!(out, "{{\"class\": {i}, \"p\": {:.4}}}", probs[i])?;
    }
    Ok(())
}
