//! `hotelmatch search`: searches one photo and prints the ranked hotels.

use super::*;

#[derive(Args)]
pub(super) struct SearchArgs {
    /// The query photo (JPEG, PNG, WebP, ...).
    image: PathBuf,
    /// Mask image: light pixels are left out (paint over the victim).
    #[arg(long, conflicts_with = "rect")]
    mask: Option<PathBuf>,
    /// Rectangle to leave out, x,y,width,height (repeatable).
    #[arg(long, value_parser = parse_rect)]
    rect: Vec<[u32; 4]>,
    /// Only hotels within --radius-km of LAT,LON.
    #[arg(long, value_parser = parse_point, requires = "radius_km")]
    near: Option<(f64, f64)>,
    /// Radius around --near, in km.
    #[arg(long, value_parser = parse_radius, requires = "near")]
    radius_km: Option<f64>,
    /// Only hotels in this country (as the catalog writes it, e.g. US; any case).
    #[arg(long)]
    country: Option<String>,
    /// Only hotels in this city (any case).
    #[arg(long)]
    city: Option<String>,
    /// Only hotels of this chain (any case).
    #[arg(long)]
    chain: Option<String>,
    /// Only these hotels (catalog ids; repeatable).
    #[arg(long = "hotel")]
    hotels: Vec<i64>,
    /// Hotels to return, 1 to 100.
    #[arg(long, default_value_t = 10, value_parser = parse_top)]
    top: usize,
    /// Keep the query photo in the data directory as a case image (by default it is
    /// written nowhere); the audit records its sha256.
    #[arg(long)]
    save_case: bool,
    /// Don't mask a region that looks already painted out (done by default without a mask).
    #[arg(long)]
    no_auto_mask: bool,
    /// The graph search's candidate list (default: the config's `index.ef_search`): larger
    /// finds more of the nearest photos, slower.
    #[arg(long, value_parser = clap::value_parser!(u64).range(10..=1000))]
    ef: Option<u64>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(cfg: &Config, init: bool, args: SearchArgs, out: &mut impl Write) -> Result<()> {
    let SearchArgs { image, mask, rect, near, radius_km, country, city, chain, hotels, top, save_case, no_auto_mask, ef, json } = args;
    let engine = open_engine(cfg, init)?;
    let mask = match (mask, rect.is_empty()) {
        (Some(path), _) => Some(load_mask(&path, cfg)?),
        (None, false) => Some(Mask::Rects(rect)),
        (None, true) => None,
    };
    let filter = HotelFilter {
        near: near.zip(radius_km).map(|((lat, lon), r)| (lat, lon, r)),
        country,
        city,
        chain,
        hotel_ids: (!hotels.is_empty()).then_some(hotels),
    };
    let bytes = read(&image)?;
    let res = engine.search(
        &Query { bytes: &bytes, mask: mask.as_ref(), filter, top, save_case, skip_auto_mask: no_auto_mask, ef: ef.unwrap_or(0) as usize },
        "cli",
    )?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&res)?)?;
    } else {
        writeln!(out, "{} hotels ({:.0} ms, {:?})", res.hotels.len(), res.millis, res.plan)?;
        for r in &res.reuse {
            writeln!(
                out,
                "  the query is a copy of image {} (hotel {}; PDQ distance {}, {})",
                r.image_id, r.hotel_id, r.distance, r.variant
            )?;
        }
        for b in &res.bank_matches {
            writeln!(out, "  the query matches hash bank {:?} ({}; PDQ distance {})", b.bank, b.label, b.distance)?;
        }
        if res.saved_case_image {
            writeln!(out, "  kept as case image {}", res.query_sha256)?;
        }
        if let Some(area) = res.auto_mask {
            writeln!(out, "  {:.0} % of the photo looked painted out and was masked (--no-auto-mask to keep it)", area * 100.0)?;
        }
        for h in &res.hotels {
            let place = [h.hotel.city.as_deref(), h.hotel.country.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(", ");
            writeln!(
                out,
                "{:>2}. {:>3.0} % {:<8} score {:.3}  {} ({place})",
                h.rank,
                h.probability * 100.0,
                format!("{:?}", h.confidence).to_lowercase(),
                h.score,
                h.hotel.name
            )?;
            for e in &h.evidence {
                writeln!(out, "      image {} room {} similarity {:.3}", e.image_id, e.room.as_deref().unwrap_or("?"), e.similarity)?;
            }
        }
    }
    Ok(())
}
