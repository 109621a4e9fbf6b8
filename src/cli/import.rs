//! `hotelmatch import`: imports hotels and photos from CSV files.

use super::*;

#[derive(Args)]
pub(super) struct ImportArgs {
    /// CSV: id,name,chain,address,city,country,latitude,longitude.
    #[arg(long)]
    hotels: Option<PathBuf>,
    /// CSV: path,hotel,room (paths relative to the CSV; hotel = the id in hotels.csv).
    #[arg(long)]
    images: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(cfg: &Config, args: ImportArgs, out: &mut impl Write) -> Result<()> {
    let ImportArgs { hotels, images, json } = args;
    let engine = open_engine(cfg, true)?;
    let mut report = ImportReport::default();
    if let Some(h) = hotels {
        report.hotels = hotelmatch::import::import_hotels(&engine, &h, "cli")?;
    }
    if let Some(i) = images {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} photos {elapsed} (eta {eta})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let r = hotelmatch::import::import_images(&engine, &i, "cli", &|done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })?;
        bar.finish_and_clear();
        report = ImportReport { hotels: report.hotels, ..r };
    }
    if json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        writeln!(
            out,
            "hotels: {}  added: {}  duplicates: {}  already imported: {}  rejected: {}",
            report.hotels,
            report.added,
            report.duplicates,
            report.skipped_already_imported,
            report.rejected.len()
        )?;
        for (p, of, d) in &report.duplicate_of {
            writeln!(out, "  duplicate: {} (of image {of}, PDQ distance {d})", p.display())?;
        }
        for r in &report.rejected {
            writeln!(out, "  rejected line {}: {}: {}", r.line, r.path.display(), r.reason)?;
        }
    }
    Ok(())
}
