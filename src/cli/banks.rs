//! `hotelmatch banks`: hash banks: import, list, export.

use super::*;

#[derive(Subcommand)]
pub(super) enum BanksCmd {
    /// Import a hash list file into the bank NAME (created when new).
    Import { name: String, file: PathBuf },
    /// List the banks.
    List,
    /// Print the gallery's hashes for sharing: `tx` (python-threatexchange) or `csv`.
    Export {
        #[arg(long, default_value = "tx")]
        format: String,
    },
}

pub(super) fn run(cfg: &Config, init: bool, cmd: BanksCmd, out: &mut impl Write) -> Result<()> {
    let engine = open_engine(cfg, init)?;
    match cmd {
        BanksCmd::Import { name, file } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let r = engine.import_bank(&name, &text, "cli")?;
            writeln!(out, "{}", serde_json::to_string(&r)?)?;
        }
        BanksCmd::List => {
            for b in engine.banks()? {
                writeln!(out, "{}", serde_json::to_string(&b)?)?;
            }
        }
        BanksCmd::Export { format } => {
            let format: hotelmatch::engine::HashFormat = format.parse().map_err(anyhow::Error::msg)?;
            write!(out, "{}", engine.export_hashes(format, "cli")?)?;
        }
    }
    Ok(())
}
