//! `hotelmatch calibrate`: fits the probabilities of search results and prints reliability tables.

use super::*;

#[derive(Args)]
pub(super) struct CalibrateArgs {
    /// CSV of gallery photos: path,hotel,room.
    #[arg(long, required_unless_present_any = ["from_cases", "samples"], conflicts_with = "from_cases")]
    gallery: Option<PathBuf>,
    /// CSV of labelled queries: path,hotel,room[,mask] (repeatable).
    #[arg(long, requires = "gallery")]
    queries: Vec<PathBuf>,
    /// Fit on the saved searches of cases that confirmed a hotel instead.
    #[arg(long)]
    from_cases: bool,
    /// Folds of the cross-validated reliability table.
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Print the tables but write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also write the labelled searches (scores and which was right) to this JSON file.
    #[arg(long)]
    samples_out: Option<PathBuf>,
    /// Which query photos are searched together (as `eval --group-by`).
    #[arg(long, value_enum, default_value_t = hotelmatch::eval::GroupBy::Column)]
    group_by: hotelmatch::eval::GroupBy,
    /// Fit on labelled searches saved by `--samples-out` instead of running them again.
    #[arg(long, conflicts_with_all = ["gallery", "from_cases"])]
    samples: Option<PathBuf>,
}

pub(super) fn run(cfg: &Config, init: bool, args: CalibrateArgs, out: &mut impl Write) -> Result<()> {
    let CalibrateArgs { gallery, queries, from_cases, folds, dry_run, samples_out, group_by, samples } = args;
    // (label, searches) of each query file, in order, for a table per file.
    let mut files: Vec<(String, usize)> = Vec::new();
    let (samples, source, engine) = if let Some(path) = samples {
        let s: Vec<hotelmatch::calibrate::Sample> =
            serde_json::from_slice(&std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?)?;
        (s, format!("samples: {}", path.display()), None)
    } else if from_cases {
        let engine = open_engine(cfg, init)?;
        let samples = engine.confirmed_samples()?.into_iter().map(|c| c.sample).collect();
        (samples, "cases".to_string(), Some(engine))
    } else {
        let gallery = gallery.context("--gallery is required")?;
        let sets = queries.iter().map(|q| hotelmatch::eval::QuerySet::read(q, group_by)).collect::<Result<Vec<_>, _>>()?;
        let reports = evaluate_in_scratch(cfg, &gallery, &sets)?;
        let names: Vec<String> = queries.iter().map(|q| q.display().to_string()).collect();
        files = names.iter().cloned().zip(reports.iter().map(|r| r.samples.len())).collect();
        (reports.into_iter().flat_map(|r| r.samples).collect(), format!("eval: {}", names.join(", ")), None)
    };
    if let Some(path) = samples_out {
        std::fs::write(&path, serde_json::to_vec(&samples)?).with_context(|| format!("writing {}", path.display()))?;
    }
    let model = cfg.embedder()?.model().to_string();
    let base = hotelmatch::calibrate::Calibration { model, scoring: cfg.engine_settings().scoring(), ..Default::default() };
    let fitted = base.fit_apart(&samples, &source)?;
    write!(out, "{}", hotelmatch::calibrate::Summary::new(&fitted, &samples, &files, folds))?;
    if dry_run {
        return Ok(());
    }
    // Into the catalog (every replica takes it up), or, with no catalog yet, a file in the
    // data directory that an engine starts from until the catalog holds one.
    let engine = match engine {
        Some(e) => Some(e),
        None if init || catalog_exists(&cfg.engine_settings().catalog_location()) => Some(open_engine(cfg, init)?),
        None => None,
    };
    match engine {
        Some(engine) => {
            let version = engine.set_calibration(fitted, samples.len(), "cli")?;
            writeln!(out, "\ncalibration version {version} stored in the catalog ({})", engine.catalog_backend())?;
        }
        None => {
            std::fs::create_dir_all(&cfg.data_dir)?;
            writeln!(out, "\nno catalog yet: wrote {}", fitted.save(&cfg.data_dir)?.display())?;
        }
    }
    Ok(())
}
