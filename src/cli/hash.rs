//! `hotelmatch hash`: pDQ hashes of photos, and distances between them.

use super::*;

#[derive(Args)]
pub(super) struct HashArgs {
    /// Photos to hash.
    #[arg(required_unless_present = "compare")]
    images: Vec<PathBuf>,
    /// Also print the 8 rotation/flip variants.
    #[arg(long)]
    variants: bool,
    /// Print the Hamming distance between two photos (or 64-hex-digit hashes).
    #[arg(long, num_args = 2, value_names = ["A", "B"], conflicts_with = "images")]
    compare: Option<Vec<String>>,
}

pub(super) fn run(cfg: &Config, args: HashArgs, out: &mut impl Write) -> Result<()> {
    let HashArgs { images, variants, compare } = args;
    if let Some(pair) = compare {
        let a = hash_of(&pair[0], cfg)?;
        let b = hash_of(&pair[1], cfg)?;
        let d = a.hash.distance(&b.hash);
        let verdict = if d > pdq::MATCH_DISTANCE {
            "different"
        } else if a.trusted() && b.trusted() {
            "match"
        } else {
            "low-quality: a lead, not a match"
        };
        writeln!(out, "{}", serde_json::json!({"distance": d, "a_quality": a.quality, "b_quality": b.quality, "verdict": verdict}))?;
        return Ok(());
    }
    for path in &images {
        let d = decode::decode(&read(path)?, &cfg.limits, None).with_context(|| format!("{}", path.display()))?;
        let h = pdq::hash_dihedral(&d.rgb);
        let mut j = serde_json::json!({"file": path, "pdq": h.original.to_string(), "quality": h.quality, "trusted": h.quality >= pdq::MIN_TRUSTED_QUALITY});
        if variants {
            j["variants"] = h
                .named()
                .iter()
                .map(|(n, v)| (n.to_string(), serde_json::Value::from(v.to_string())))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        writeln!(out, "{j}")?;
    }
    Ok(())
}

/// A photo's PDQ, or a hash given as 64 hex digits (quality unknown: taken as 100).
fn hash_of(arg: &str, cfg: &Config) -> Result<pdq::Pdq> {
    if let Ok(hash) = arg.parse::<pdq::PdqHash>() {
        return Ok(pdq::Pdq { hash, quality: 100 });
    }
    let path = PathBuf::from(arg);
    let d = decode::decode(&read(&path)?, &cfg.limits, None).with_context(|| arg.to_string())?;
    Ok(pdq::hash(&d.rgb))
}
