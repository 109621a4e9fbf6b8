//! `hotelmatch status`: sets a photo's status.

use super::*;

#[derive(Args)]
pub(super) struct StatusArgs {
    /// The image id (as in search results and `GET /api/v1/hotels/{id}/photos`).
    image_id: i64,
    /// active, quarantined or deleted.
    status: Status,
}

pub(super) fn run(cfg: &Config, init: bool, args: StatusArgs, out: &mut impl Write) -> Result<()> {
    let StatusArgs { image_id, status } = args;
    let engine = open_engine(cfg, init)?;
    engine.set_status(image_id, status, "cli")?;
    engine.save_index()?;
    writeln!(out, "image {image_id}: {status:?}")?;
    Ok(())
}
