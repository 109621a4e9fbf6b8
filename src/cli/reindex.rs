//! `hotelmatch reindex`: re-embeds and re-indexes, as a job.

use super::*;

pub(super) fn run(cfg: &Config, init: bool, out: &mut impl Write) -> Result<()> {
    let engine = open_engine(cfg, init)?;
    let bar = indicatif::ProgressBar::new(0);
    let (job, reembedded) = hotelmatch::jobs::run_reindex(&engine, "cli", &|step, done, total| {
        bar.set_message(step.as_str());
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    writeln!(
        out,
        "job {}: re-embedded {reembedded} photos with {}; indexed {} photos",
        job.id,
        engine.embedder().model(),
        engine.indexed()
    )?;
    Ok(())
}
