//! `hotelmatch eval`: measures retrieval quality through the engine (or exact cosine).

use super::*;

#[derive(Args)]
pub(super) struct EvalArgs {
    /// CSV of gallery photos: path,hotel,room (paths relative to the CSV).
    #[arg(long)]
    gallery: PathBuf,
    /// CSV of query photos: path,hotel,room[,mask] (repeatable: one row each).
    #[arg(long, required = true)]
    queries: Vec<PathBuf>,
    /// Print one JSON object per query file instead of a table.
    #[arg(long)]
    json: bool,
    /// Skip the engine: embeddings and exact cosine search only (quick model comparison).
    #[arg(long)]
    exact: bool,
    /// Which query photos are searched together: the CSV's `group` column (default), all
    /// photos of one hotel, or none (each alone). A row is then one search.
    #[arg(long, value_enum, default_value_t = hotelmatch::eval::GroupBy::Column)]
    group_by: hotelmatch::eval::GroupBy,
}

pub(super) fn run(cfg: &Config, args: EvalArgs, out: &mut impl Write) -> Result<()> {
    let EvalArgs { gallery, queries, json, exact, group_by } = args;
    let sets = queries.iter().map(|q| hotelmatch::eval::QuerySet::read(q, group_by)).collect::<Result<Vec<_>, _>>()?;
    if exact && group_by == hotelmatch::eval::GroupBy::Hotel {
        bail!("--exact searches one photo at a time: drop --group-by hotel, or --exact");
    }
    let reports = if exact {
        let embedder = cfg.onnx_embedder()?;
        hotelmatch::eval::evaluate_exact(&embedder, &hotelmatch::eval::read_csv(&gallery)?, &sets, &cfg.limits)?
    } else {
        evaluate_in_scratch(cfg, &gallery, &sets)?
    };
    if !json {
        writeln!(
            out,
            "| queries | model | path | n | hotel@1 (95 % CI) | hotel@5 | hotel@10 | MRR | room@1 | auto-masked | wrong strong | query ms p50 | p95 |"
        )?;
        writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")?;
    }
    for r in &reports {
        if json {
            writeln!(out, "{}", serde_json::to_string(r)?)?;
            continue;
        }
        let [lo, hi] = r.hotel_at_1_ci95;
        writeln!(
            out,
            "| {} | {} | {} | {} | {:.3} ({lo:.2}–{hi:.2}) | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {:.1} | {:.1} |",
            r.queries_file.display(),
            r.model,
            r.path,
            r.queries,
            r.hotel_at_1,
            r.hotel_at_5,
            r.hotel_at_10,
            r.mrr,
            r.room_at_1,
            r.auto_masked,
            r.wrong_strong.len(),
            r.query_ms_p50,
            r.query_ms_p95
        )?;
    }
    // Every wrong "strong" answer by name: the ones an investigator would have been misled by.
    let wrong: Vec<_> = reports.iter().flat_map(|r| r.wrong_strong.iter()).collect();
    if !json && !wrong.is_empty() {
        writeln!(out, "\n| wrong strong: query | its hotel | answered | probability | right hotel's rank | matched points |")?;
        writeln!(out, "|---|---|---|---|---|---|")?;
        for w in wrong {
            let rank = w.right_rank.map_or("> shown".to_string(), |r| r.to_string());
            writeln!(
                out,
                "| {} | {} | {} | {:.0} % | {rank} | {} |",
                w.query.display(),
                w.truth,
                w.answered,
                w.probability * 100.0,
                w.matched_points
            )?;
        }
    }
    Ok(())
}
