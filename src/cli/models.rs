//! `hotelmatch models`: the model cards and which is in use.

use super::*;

pub(super) fn run(cfg: &Config, out: &mut impl Write) -> Result<()> {
    let in_use = ModelCard::find(&cfg.models_dir, &cfg.model).map(|c| c.name).unwrap_or_default();
    for card in ModelCard::list(&cfg.models_dir) {
        let state = if card.onnx_path().is_ok() { "ready" } else { "missing weights (scripts/setup.sh)" };
        let input = match card.short_side.as_slice() {
            [] => format!("{}x{}", card.size[0], card.size[1]),
            sides => format!("short side {}", sides.iter().map(u32::to_string).collect::<Vec<_>>().join("+")),
        };
        let default = if card.name == in_use { " (in use)" } else { "" };
        writeln!(out, "{:16} {:18} dim {:5} {}{default}\n  licence: {}", card.name, input, card.dim, state, card.licence)?;
    }
    Ok(())
}
