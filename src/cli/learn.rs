//! `hotelmatch learn`: learns the whitening from the catalog's labels.

use super::*;

pub(super) fn run(cfg: &Config, init: bool, out: &mut impl Write) -> Result<()> {
    let engine = open_engine(cfg, init)?;
    if cfg.marks.enabled {
        let m = engine.learn_marks("cli")?;
        writeln!(
            out,
            "shared marks version {}: {} keypoints recur at one place in photos of {}+ hotels; {} photos embedded again without them",
            m.version, m.marks, cfg.marks.min_hotels, m.remasked
        )?;
    }
    let learned = engine.learn_whitening("cli")?;
    match (&learned.fitted, &learned.skipped) {
        (Some(f), _) => writeln!(
            out,
            "whitening version {}: {} pairs of {} photos of {} hotels, shrinkage {}; index rebuilt with it ({} photos)",
            learned.version,
            f.pairs,
            f.photos,
            f.hotels,
            f.shrinkage,
            engine.indexed()
        )?,
        (None, why) => writeln!(out, "whitening version {}: none ({})", learned.version, why.as_deref().unwrap_or("off"))?,
    }
    Ok(())
}
