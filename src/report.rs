//! Report: a case written out for handing over — one self-contained HTML file that prints
//! cleanly to PDF and reads on a phone (thumbnails embedded once each as data URIs and
//! drawn wherever they recur, no external assets, no script), a CSV of every ranked hotel
//! of every saved search, and JSON. Knows nothing of HTTP.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::engine::{CalibrationInfo, CaseEntry, CaseReport, JournalEntry, MaskRecord, SavedSearch, Verdict};

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// A JSON object's non-null fields as `key value, …` ("none" when there are none).
fn fields(v: &serde_json::Value) -> String {
    let parts: Vec<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, x)| !x.is_null())
        .map(|(k, x)| format!("{k} {}", x.as_str().map_or_else(|| x.to_string(), str::to_string)))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// A probability as the pages write it: "> 99 %" and "< 1 %" at the ends, never "100 %".
pub fn pct(p: f32) -> String {
    if p >= 0.995 {
        "> 99 %".into()
    } else if p < 0.01 {
        "< 1 %".into()
    } else {
        format!("{:.0} %", p * 100.0)
    }
}

/// A search's calibration in words.
fn calibration(c: &CalibrationInfo) -> String {
    format!("{}, {} labelled searches; strong from {}, weak below {}", c.source, c.samples, pct(c.strong), pct(c.possible))
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC` (the civil-from-days algorithm of H. Hinnant).
pub fn utc(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", secs / 3600, secs / 60 % 60, secs % 60)
}

const STYLE: &str = "body{font:12pt/1.4 system-ui,sans-serif;color:#111;max-width:60rem;margin:1rem auto;padding:0 1rem}\
h1{font-size:1.5rem}h2{font-size:1.2rem;border-bottom:1px solid #999;margin-top:2rem}h3{font-size:1rem}\
table{border-collapse:collapse;width:100%;margin:.5rem 0}td,th{border:1px solid #bbb;padding:.25rem .4rem;text-align:left;vertical-align:top}\
th{background:#eee}.meta td:first-child{font-weight:600;width:12rem}.ev{display:flex;flex-wrap:wrap;gap:.5rem}\
figure{margin:0;width:10rem}figure img,figure svg{width:10rem;height:7.5rem;border:1px solid #999;display:block}figcaption{font-size:.8rem}\
figure.big{width:16rem}figure.big img,figure.big svg{width:16rem;height:12rem}\
.q{display:flex;gap:1rem;flex-wrap:wrap}.note{white-space:pre-wrap;border-left:3px solid #555;padding-left:.6rem}\
.wide{overflow-x:auto}code{word-break:break-all}\
.strong{font-weight:700}.search,.hotel{break-inside:avoid;page-break-inside:avoid}\
@media (max-width:40rem){body{font-size:11pt;padding:0 .5rem}.meta td:first-child{width:auto}td,th{padding:.2rem}\
figure{width:9rem}figure img,figure svg{width:9rem;height:6.75rem}figure.big,figure.big img,figure.big svg{width:100%;height:auto}}\
@media print{body{margin:0;max-width:none}h2{break-before:auto}a{color:#000;text-decoration:none}}";

/// The photos of a report: each embedded once (an SVG `<image>` in a hidden definitions
/// block) and drawn wherever it recurs (`<use>`); a 45-search case embedded the same
/// evidence dozens of times.
#[derive(Default)]
struct Photos {
    /// Definition id → data URI.
    defs: BTreeMap<String, String>,
}

impl Photos {
    /// A photo drawn from its one definition (`key` names it; `uri` is its data).
    fn draw(&mut self, key: String, uri: &str, alt: &str) -> String {
        self.defs.entry(key.clone()).or_insert_with(|| uri.to_string());
        format!("<svg viewBox=\"0 0 4 3\" role=\"img\" aria-label=\"{}\"><use href=\"#{key}\"/></svg>", esc(alt))
    }

    /// The hidden block of definitions.
    fn defs(&self) -> String {
        let mut o = String::from("<svg width=\"0\" height=\"0\" aria-hidden=\"true\" style=\"position:absolute\"><defs>");
        for (key, uri) in &self.defs {
            let _ = write!(o, "<image id=\"{key}\" href=\"{uri}\" width=\"4\" height=\"3\"/>");
        }
        o.push_str("</defs></svg>");
        o
    }
}

/// The report as one HTML document.
pub fn html(r: &CaseReport) -> String {
    let v = &r.view;
    let mut o = String::new();
    let mut photos = Photos::default();
    let _ = write!(
        o,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Case {id}: {title}</title><style>{STYLE}</style></head><body>\
<h1>Case {id}: {title}</h1><table class=\"meta\">\
<tr><td>Opened</td><td>{opened} by key {owner}</td></tr>\
<tr><td>Exported</td><td>{gen} by key {by}</td></tr>\
<tr><td>Model</td><td>{model}</td></tr><tr><td>Index</td><td>{index}</td></tr>\
<tr><td>Saved searches</td><td>{searches}</td></tr></table>",
        id = v.case.id,
        title = esc(&v.case.title),
        opened = utc(v.case.created),
        owner = esc(&v.case.owner),
        gen = utc(r.generated_at),
        by = esc(&r.generated_by),
        model = esc(&r.model),
        index = esc(&fields(&r.index)),
        searches = v.entries.iter().filter(|e| e.entry.search().is_some()).count(),
    );
    if !v.verdicts.is_empty() {
        o.push_str("<h2>Verdicts</h2><table><tr><th>Hotel</th><th>Verdict</th><th>By</th><th>When</th></tr>");
        for x in &v.verdicts {
            let name = v.hotels.get(&x.hotel_id).map_or(format!("hotel {}", x.hotel_id), |h| h.name.clone());
            let _ = write!(
                o,
                "<tr><td>{}</td><td class=\"strong\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(&name),
                verdict_word(&x.verdict),
                esc(&x.by),
                utc(x.at)
            );
        }
        o.push_str("</table>");
    }
    o.push_str("<h2>Journal</h2>");
    for e in &v.entries {
        match &e.entry {
            CaseEntry::Search(search) => search_section(&mut o, &mut photos, r, e, search),
            CaseEntry::Note { text } => {
                let _ = write!(o, "<h3>Note {} — {} by key {}</h3><p class=\"note\">{}</p>", e.id, utc(e.at), esc(&e.actor), esc(text));
            }
            CaseEntry::Verdict { hotel_id, verdict, .. } => {
                let name = v.hotels.get(hotel_id).map_or(format!("hotel {hotel_id}"), |h| h.name.clone());
                let _ = write!(
                    o,
                    "<h3>Verdict {} — {} by key {}</h3><p>{}: <b>{}</b></p>",
                    e.id,
                    utc(e.at),
                    esc(&e.actor),
                    esc(&name),
                    verdict_tag(verdict)
                );
            }
        }
    }
    o.push_str("<p><small>Probabilities are calibrated estimates that the hotel is the right one; check the evidence photos before acting on any.</small></p>");
    o.push_str(&photos.defs());
    o.push_str("</body></html>\n");
    o
}

fn verdict_word(v: &Verdict) -> &'static str {
    match v {
        Verdict::Confirmed => "confirmed",
        Verdict::RuledOut => "ruled out",
        Verdict::Open => "open",
    }
}

/// A verdict as the journal spells it.
fn verdict_tag(v: &Verdict) -> &'static str {
    match v {
        Verdict::Confirmed => "confirmed",
        Verdict::RuledOut => "ruled-out",
        Verdict::Open => "open",
    }
}

/// Which search of its case entry `id` is (1, 2, …).
fn search_no(r: &CaseReport, id: i64) -> usize {
    r.view.entries.iter().filter(|e| e.entry.search().is_some()).take_while(|e| e.id != id).count() + 1
}

fn search_section(o: &mut String, shown: &mut Photos, r: &CaseReport, e: &JournalEntry, b: &SavedSearch) {
    let sha = b.query_sha256.as_str();
    let _ = write!(
        o,
        "<section class=\"search\"><h3>Search {} <small>(journal entry {})</small> — {} by key {}</h3><div class=\"q\">",
        search_no(r, e.id),
        e.id,
        utc(e.at),
        esc(&e.actor)
    );
    // Every photo of the search, each with its own mask.
    let photos: Vec<(&str, Option<&MaskRecord>)> =
        std::iter::once((sha, b.mask.as_ref())).chain(b.further.iter().map(|f| (f.sha256.as_str(), f.mask.as_ref()))).collect();
    for (i, (sha, mask)) in photos.iter().enumerate() {
        let n = if photos.len() > 1 { format!(" {}", i + 1) } else { String::new() };
        match r.queries.get(*sha) {
            Some(uri) => {
                let img = shown.draw(
                    format!("q-{}", &sha[..sha.len().min(16)]),
                    uri,
                    &format!("Query photo{n}, kept with the investigator's consent"),
                );
                let _ = write!(o, "<figure class=\"big\">{img}<figcaption>Query photo{n} (kept)</figcaption></figure>");
            }
            None => match (i, &b.masked_thumbnail) {
                (0, Some(jpeg)) => {
                    let uri = format!("data:image/jpeg;base64,{jpeg}");
                    let img = shown.draw(format!("m-{}", e.id), &uri, &format!("Query photo{n}, small, with its painted parts greyed out"));
                    let _ = write!(o, "<figure class=\"big\">{img}<figcaption>Query photo{n}: painted parts greyed out (the photo itself was not kept)</figcaption></figure>");
                }
                _ => {
                    let _ = write!(o, "<p>Query photo{n} not kept (the investigator did not ask to keep it).</p>");
                }
            },
        }
        match mask {
            Some(MaskRecord::Painted { png_base64, .. }) => {
                let _ = write!(o, "<figure class=\"big\"><img src=\"data:image/png;base64,{png_base64}\" alt=\"Mask{n}: white is what was left out of matching\"><figcaption>Mask{n} (white = left out)</figcaption></figure>");
            }
            Some(MaskRecord::Rects { rects }) => {
                let _ = write!(o, "<p>Mask{n}: rectangles {}</p>", esc(&serde_json::json!(rects).to_string()));
            }
            Some(MaskRecord::Extent { painted, bbox, .. }) => {
                let bbox = bbox.map(|b| format!(", within [{}, {}, {}, {}]", b[0], b[1], b[2], b[3])).unwrap_or_default();
                let _ = write!(o, "<p>Mask{n}: {:.0} % painted{bbox} (its shape is kept only with the photo).</p>", painted * 100.0);
            }
            Some(MaskRecord::Unreadable { .. }) | None => {}
        }
    }
    let sha = photos.iter().map(|p| p.0).collect::<Vec<_>>().join(" ");
    let _ = write!(
        o,
        "</div><table class=\"meta\"><tr><td>Query sha256</td><td><code>{}</code></td></tr><tr><td>Filters</td><td>{}</td></tr><tr><td>Model / index</td><td>{} / {}</td></tr><tr><td>Calibration</td><td>{}</td></tr>",
        esc(&sha),
        esc(&fields(&serde_json::to_value(&b.filters).unwrap_or_default())),
        esc(&b.model),
        esc(&fields(&b.index)),
        esc(&calibration(&b.calibration)),
    );
    if !b.bank_matches.is_empty() {
        let _ = write!(
            o,
            "<tr><td>Hash-bank matches</td><td class=\"strong\">{}</td></tr>",
            esc(&serde_json::to_string(&b.bank_matches).unwrap_or_default())
        );
    }
    o.push_str("</table><div class=\"wide\"><table><tr><th>#</th><th>Hotel</th><th>Place</th><th>Probability</th><th>Confidence</th><th>Score</th><th>Gap to next</th></tr>");
    for h in &b.hotels {
        let id = h.hotel_id;
        let place = r
            .view
            .hotels
            .get(&id)
            .map(|x| [x.city.clone(), x.country.clone()].into_iter().flatten().collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{} <small>(id {id})</small></td><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{}</td></tr>",
            h.rank,
            esc(&h.name),
            esc(&place),
            esc(&pct(h.probability)),
            h.confidence.as_str(),
            h.score,
            h.gap.map_or("—".to_string(), |g| format!("{g:.3}")),
        );
    }
    o.push_str("</table></div>");
    for h in b.hotels.iter().filter(|h| h.confidence != crate::calibrate::Confidence::Weak).take(3) {
        let _ = write!(o, "<div class=\"hotel\"><p>Evidence for {}:</p><div class=\"ev\">", esc(&h.name));
        for ev in &h.evidence {
            let id = ev.image_id;
            let room = ev.room.as_deref().unwrap_or("?");
            let img = match (r.thumbnails.get(&id), r.withdrawn.contains(&id)) {
                (_, true) => String::from("<p>(photo withdrawn)</p>"),
                (Some(uri), false) => shown.draw(format!("p-{id}"), uri, &format!("Stored photo {id}, room {room}")),
                (None, false) => String::from("<p>(photo no longer available)</p>"),
            };
            let points = ev.matched_points.map_or(String::new(), |n| format!(", {n} matching points"));
            let _ = write!(
                o,
                "<figure>{img}<figcaption>Stored photo {id}, room {}, similarity {:.3}{points}</figcaption></figure>",
                esc(room),
                ev.similarity
            );
        }
        o.push_str("</div></div>");
    }
    o.push_str("</section>");
}

/// One CSV row per ranked hotel of every saved search.
/// A text cell a spreadsheet will not run: one that begins with `=`, `+`, `-`, `@`, a tab
/// or a carriage return gets a leading `'` (OWASP's advice on CSV injection).
fn cell(text: &str) -> String {
    match text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        true => format!("'{text}"),
        false => text.to_string(),
    }
}

pub fn csv(r: &CaseReport) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "case_id",
        "search_entry",
        "search_no",
        "searched_at_utc",
        "key_id",
        "query_sha256",
        "query_kept",
        "more_query_sha256",
        "model",
        "rank",
        "hotel_id",
        "hotel_external_id",
        "hotel",
        "address",
        "city",
        "country",
        "probability",
        "confidence",
        "score",
        "gap",
        "evidence_image_ids",
        "verdict",
        "verdict_search",
    ]);
    for (e, b) in r.view.entries.iter().filter_map(|e| e.entry.search().map(|b| (e, b))) {
        for h in &b.hotels {
            let id = h.hotel_id;
            let hotel = r.view.hotels.get(&id);
            // A verdict stands on the row of the search it was given on (one given outside
            // any search, on every row of its hotel).
            let verdict = r.view.verdicts.iter().find(|v| v.hotel_id == id && v.search_entry.is_none_or(|s| s == e.id));
            let (verdict, verdict_search) = verdict.map_or((String::new(), String::new()), |v| {
                (verdict_word(&v.verdict).to_string(), v.search_entry.map(|s| s.to_string()).unwrap_or_default())
            });
            let evidence: Vec<String> = h
                .evidence
                .iter()
                .map(|x| match r.withdrawn.contains(&x.image_id) {
                    true => format!("{} (photo withdrawn)", x.image_id),
                    false => x.image_id.to_string(),
                })
                .collect();
            let _ = w.write_record([
                r.view.case.id.to_string(),
                e.id.to_string(),
                search_no(r, e.id).to_string(),
                utc(e.at),
                cell(&e.actor),
                b.query_sha256.clone(),
                b.query_kept.to_string(),
                b.further.iter().map(|f| f.sha256.as_str()).collect::<Vec<_>>().join(" "),
                b.model.clone(),
                h.rank.to_string(),
                id.to_string(),
                cell(hotel.and_then(|x| x.external_id.as_deref()).unwrap_or_default()),
                cell(&h.name),
                cell(hotel.and_then(|x| x.address.as_deref()).unwrap_or_default()),
                cell(hotel.and_then(|x| x.city.as_deref()).unwrap_or_default()),
                cell(hotel.and_then(|x| x.country.as_deref()).unwrap_or_default()),
                format!("{:.4}", h.probability),
                h.confidence.as_str().to_string(),
                format!("{:.4}", h.score),
                h.gap.map_or(String::new(), |g| format!("{g:.4}")),
                evidence.join("; "),
                verdict,
                verdict_search,
            ]);
        }
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_795_000_000), "2026-11-18 11:06:40 UTC");
    }

    #[test]
    fn json_fields_read_as_words() {
        assert_eq!(fields(&serde_json::json!({"near": null, "country": "US", "top": 3})), "country US, top 3");
        assert_eq!(fields(&serde_json::json!({"near": null})), "none");
    }

    #[test]
    fn csv_text_cells_cannot_run_as_formulas() {
        for bad in ["=HYPERLINK(\"http://x\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(cell(bad), format!("'{bad}"));
        }
        assert_eq!(cell("Lone Star Lodge"), "Lone Star Lodge");
        assert_eq!(cell(""), "");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("<b a=\"x\">&'"), "&lt;b a=&quot;x&quot;&gt;&amp;&#39;");
    }
}
