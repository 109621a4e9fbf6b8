//! `hotelmatch search`: searches with one photo or several of the same place and prints the
//! ranked hotels.

use super::*;

#[derive(Args)]
pub(super) struct SearchArgs {
    /// The query photo (JPEG, PNG, WebP, ...), and up to 7 more of the same place: hotels
    /// are ranked on all of them together.
    #[arg(required = true, num_args = 1..=8)]
    images: Vec<PathBuf>,
    /// Mask image: light pixels are left out (paint over the victim). Repeat it for several
    /// photos, in their order; `none` for a photo without one.
    #[arg(long, conflicts_with = "rect")]
    mask: Vec<PathBuf>,
    /// Rectangle to leave out of the first photo, x,y,width,height (repeatable).
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
    let SearchArgs { images, mask, rect, near, radius_km, country, city, chain, hotels, top, save_case, no_auto_mask, ef, json } = args;
    if mask.len() > images.len() {
        bail!("{} masks for {} photos: give one --mask per photo, in order (`none` for a photo without one)", mask.len(), images.len());
    }
    let engine = open_engine(cfg, init)?;
    let mut masks: Vec<Option<Mask>> = Vec::with_capacity(images.len());
    for i in 0..images.len() {
        masks.push(match mask.get(i) {
            Some(path) if path.as_os_str() == "none" => None,
            Some(path) => Some(load_mask(path, cfg)?),
            None if i == 0 && !rect.is_empty() => Some(Mask::Rects(rect.clone())),
            None => None,
        });
    }
    let filter = HotelFilter {
        near: near.zip(radius_km).map(|((lat, lon), r)| (lat, lon, r)),
        country,
        city,
        chain,
        hotel_ids: (!hotels.is_empty()).then_some(hotels),
    };
    let bytes = images.iter().map(read).collect::<Result<Vec<_>>>()?;
    let more = bytes.iter().zip(&masks).skip(1).map(|(b, m)| QueryImage { bytes: b, mask: m.as_ref() }).collect();
    let (ef, skip_auto_mask) = (ef.unwrap_or(0) as usize, no_auto_mask);
    let res =
        engine.search(&Query { bytes: &bytes[0], mask: masks[0].as_ref(), more, filter, top, save_case, skip_auto_mask, ef }, "cli")?;
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
            for q in &res.queries {
                writeln!(out, "  kept as case image {}", q.sha256)?;
            }
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
                let room = e.room.as_deref().unwrap_or("?");
                let by = if res.queries.len() > 1 { format!(" (matches {})", images[e.query].display()) } else { String::new() };
                writeln!(out, "      image {} room {room} similarity {:.3}{by}", e.image_id, e.similarity)?;
            }
        }
    }
    Ok(())
}
