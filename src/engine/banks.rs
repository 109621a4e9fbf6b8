//! Hash banks: named lists of PDQ hashes shared in ThreatExchange's formats (known
//! advertisement photos, a partner's list), matched against every upload and query; and the
//! gallery's own hashes exported for sharing.

use std::collections::HashMap;

use serde::Serialize;

use super::{Engine, EngineError};
use crate::catalog::Bank;
use crate::hamming::HammingIndex;
use crate::pdq::{self, PdqHash};

/// A bank hash an upload or query matched.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct BankMatch {
    pub bank: String,
    /// The label the hash came with (the sharing party's id or tag; may be empty).
    pub label: String,
    pub pdq: String,
    pub distance: u32,
}

/// Bank matches kept for one search or upload: the closest; the others are only counted
/// (5,000 near-identical bank hashes made each matching search write a 0.6 MB audit row).
pub const MAX_BANK_MATCHES: usize = 20;
/// Longest label kept from an imported hash list, in characters (control and
/// bidirectional-override characters dropped).
pub const MAX_LABEL: usize = 200;

/// `matches` (closest first) cut to the closest `MAX_BANK_MATCHES`, and how many there were.
pub(super) fn closest(mut matches: Vec<BankMatch>) -> (Vec<BankMatch>, usize) {
    let n = matches.len();
    matches.truncate(MAX_BANK_MATCHES);
    (matches, n)
}

/// The banks' hashes, searchable by Hamming distance; grown as hashes are added to the
/// catalog, through this replica or another.
#[derive(Default)]
pub(super) struct BankIndex {
    index: HammingIndex,
    /// Per bank hash id: its bank's name and its label.
    about: HashMap<u64, (String, String, PdqHash)>,
    /// Bank names by id.
    names: HashMap<i64, String>,
    /// The last bank hash id taken up: the catalog's hashes up to it are in the index.
    last: i64,
}

/// Bank hashes read, and added to the catalog, per step: the index's write lock and the
/// catalog's connection are held for one step at a time, so searches go on during an import.
const BANK_STEP: usize = 5_000;

/// How an import went.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BankImport {
    pub bank: Bank,
    /// PDQ hashes read from the file.
    pub read: usize,
    /// Of those, new to the bank.
    pub added: usize,
    /// Lines of other signal types (ThreatExchange files mix them), left out.
    pub other_signal_types: usize,
    /// Lines that hold no valid hash, with their line numbers (the first 20).
    pub rejected: Vec<(usize, String)>,
}

/// Formats the gallery's hashes can be exported in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFormat {
    /// python-threatexchange's signal file: `pdq <hash>` per line (`tx` reads it).
    Tx,
    /// CSV with a header: `pdq,quality,image_id,hotel_id` (pdq-photo-hasher's order first).
    Csv,
}

impl std::str::FromStr for HashFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tx" | "te" | "txt" => Ok(HashFormat::Tx),
            "csv" => Ok(HashFormat::Csv),
            _ => Err(format!("unknown hash list format {s:?} (tx, csv)")),
        }
    }
}

/// The largest hash list read in one import.
const MAX_LINES: usize = 1_000_000;

impl Engine {
    /// Takes up the bank hashes added to the catalog since the last look (all of them at
    /// open; an import's, step by step; another replica's, at each look of the follower):
    /// a look that finds nothing new is one indexed query.
    pub(super) fn follow_banks(&self) -> Result<usize, EngineError> {
        // One taker at a time (an import and the follower), so no step is taken up twice.
        let _one = self.banks_taking.lock();
        let mut taken = 0;
        loop {
            let last = self.banks.read().last;
            let fresh = self.catalog.bank_hashes_after(last, BANK_STEP)?;
            let Some(end) = fresh.last().map(|h| h.id) else { return Ok(taken) };
            let unknown = {
                let b = self.banks.read();
                fresh.iter().any(|h| !b.names.contains_key(&h.bank_id))
            };
            let names: Option<HashMap<i64, String>> =
                if unknown { Some(self.catalog.banks()?.into_iter().map(|b| (b.id, b.name)).collect()) } else { None };
            let mut b = self.banks.write();
            if let Some(names) = names {
                b.names = names;
            }
            for h in &fresh {
                let bank = b.names.get(&h.bank_id).cloned().unwrap_or_default();
                b.index.add(h.id as u64, &h.pdq);
                b.about.insert(h.id as u64, (bank, h.label.clone(), h.pdq));
            }
            b.last = end;
            taken += fresh.len();
            if fresh.len() < BANK_STEP {
                return Ok(taken);
            }
        }
    }

    /// How many bank hashes this replica matches uploads and queries against.
    pub fn bank_hashes_held(&self) -> usize {
        self.banks.read().about.len()
    }

    /// Bank hashes within PDQ's match distance of any of `hashes` (a photo's hash, or a
    /// query's eight rotations and mirrors), closest first, one per bank hash.
    pub fn bank_matches(&self, hashes: &[PdqHash]) -> Vec<BankMatch> {
        let banks = self.banks.read();
        let mut best: HashMap<u64, u32> = HashMap::new();
        for h in hashes {
            for hit in banks.index.within(h, pdq::MATCH_DISTANCE) {
                let d = best.entry(hit.id).or_insert(hit.distance);
                *d = (*d).min(hit.distance);
            }
        }
        let mut out: Vec<BankMatch> = best
            .into_iter()
            .filter_map(|(id, distance)| {
                banks.about.get(&id).map(|(bank, label, pdq)| BankMatch {
                    bank: bank.clone(),
                    label: label.clone(),
                    pdq: pdq.to_string(),
                    distance,
                })
            })
            .collect();
        out.sort_by(|a, b| a.distance.cmp(&b.distance).then_with(|| a.bank.cmp(&b.bank)).then_with(|| a.pdq.cmp(&b.pdq)));
        out
    }

    /// Imports a hash list (ThreatExchange's formats, see `parse_hash_list`) into the bank
    /// `name`, creating it when new. Audited.
    pub fn import_bank(&self, name: &str, text: &str, actor: &str) -> Result<BankImport, EngineError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(crate::catalog::unsafe_char) {
            return Err(EngineError::Invalid { field: "name", message: "a bank name of 1 to 100 printable characters".into() });
        }
        let parsed = parse_hash_list(text)?;
        let find = || -> Result<Option<Bank>, EngineError> { Ok(self.catalog.banks()?.into_iter().find(|b| b.name == name)) };
        let bank = match find()? {
            Some(b) => b,
            None => match self.catalog.create_bank(name, actor) {
                Ok(b) => b,
                // Created meanwhile by another import of the same new bank: that one.
                Err(crate::catalog::CatalogError::BankExists(_)) => find()?.ok_or_else(|| EngineError::Internal("bank vanished".into()))?,
                Err(e) => return Err(e.into()),
            },
        };
        let mut added = 0;
        for step in parsed.hashes.chunks(BANK_STEP) {
            added += self.catalog.add_bank_hashes(bank.id, step)?;
            self.follow_banks()?;
        }
        let bank = self.catalog.banks()?.into_iter().find(|b| b.id == bank.id).unwrap_or(bank);
        let out =
            BankImport { bank, read: parsed.hashes.len(), added, other_signal_types: parsed.other_signal_types, rejected: parsed.rejected };
        self.catalog.audit(
            actor,
            "bank-import",
            &serde_json::json!({"bank": name, "read": out.read, "added": added, "rejected": out.rejected.len()}),
        )?;
        Ok(out)
    }

    /// Every bank.
    pub fn banks(&self) -> Result<Vec<Bank>, EngineError> {
        Ok(self.catalog.banks()?)
    }

    /// The gallery's active, trustworthy hashes, for sharing. Audited.
    pub fn export_hashes(&self, format: HashFormat, actor: &str) -> Result<String, EngineError> {
        let mut out = String::new();
        let hashes = self.catalog.active_pdq()?;
        if format == HashFormat::Csv {
            out.push_str("pdq,quality,image_id,hotel_id\n");
        }
        let mut n = 0;
        for a in hashes.iter().filter(|a| a.quality >= pdq::MIN_TRUSTED_QUALITY) {
            n += 1;
            match format {
                HashFormat::Tx => out.push_str(&format!("pdq {}\n", a.pdq)),
                HashFormat::Csv => out.push_str(&format!("{},{},{},{}\n", a.pdq, a.quality, a.image_id, a.hotel_id)),
            }
        }
        self.catalog.audit(actor, "hash-export", &serde_json::json!({"hashes": n, "format": format!("{format:?}").to_lowercase()}))?;
        Ok(out)
    }
}

/// A hash list, read.
#[derive(Debug, Default, PartialEq)]
pub struct ParsedList {
    pub hashes: Vec<(PdqHash, String)>,
    pub other_signal_types: usize,
    pub rejected: Vec<(usize, String)>,
}

/// Reads the hash list formats ThreatExchange tools write:
/// - python-threatexchange's signal file (`tx`, HMA): `pdq <hash>` per line, or bare hashes;
/// - CSV or TSV with a header naming the hash column (`hash`, `signal`, `pdq`, `indicator`,
///   `pdq_hash`), optionally a type column (`signal_type`, `type`, `hash_type`: rows of
///   other types are left out) and a label column (`label`, `id`, `name`, `filename`,
///   `descriptor_id`, `tags`);
/// - headerless CSV or TSV such as pdq-photo-hasher's `hash,quality,filename`: the 64-hex
///   field is the hash, the last other non-numeric field the label.
///
/// Blank lines and `#` comments are skipped.
pub fn parse_hash_list(text: &str) -> Result<ParsedList, EngineError> {
    // A list saved by a spreadsheet may start with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<(usize, &str)> =
        text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty() && !l.starts_with('#')).collect();
    if lines.len() > MAX_LINES {
        return Err(EngineError::Invalid { field: "hashes", message: format!("at most {MAX_LINES} lines per import") });
    }
    let mut out = ParsedList::default();
    let Some(&(_, first)) = lines.first() else { return Ok(out) };
    let sep = if first.contains('\t') {
        '\t'
    } else if first.contains(',') {
        ','
    } else {
        ' '
    };
    let split = |l: &str| -> Vec<String> { l.split(sep).map(|f| f.trim().trim_matches('"').to_string()).collect() };
    let is_hash = |f: &str| f.len() == 64 && f.bytes().all(|b| b.is_ascii_hexdigit());
    let header = split(first);
    let has_header = sep != ' ' && !header.iter().any(|f| is_hash(f));
    let col = |names: &[&str]| header.iter().position(|h| names.contains(&h.to_ascii_lowercase().as_str()));
    let (hash_col, type_col, label_col) = if has_header {
        let Some(h) = col(&["hash", "signal", "pdq", "indicator", "pdq_hash", "hash_value"]) else {
            return Err(EngineError::Invalid {
                field: "hashes",
                message: format!("the header {first:?} names no hash column (hash, signal, pdq, indicator)"),
            });
        };
        (
            Some(h),
            col(&["signal_type", "type", "hash_type", "indicator_type"]),
            col(&["label", "id", "name", "filename", "descriptor_id", "tags"]),
        )
    } else {
        (None, None, None)
    };
    for &(no, line) in lines.iter().skip(usize::from(has_header)) {
        let fields = split(line);
        if let Some(t) = type_col.and_then(|t| fields.get(t)) {
            if !t.to_ascii_lowercase().contains("pdq") {
                out.other_signal_types += 1;
                continue;
            }
        }
        // python-threatexchange's file: "<signal type> <signal>".
        if sep == ' ' && fields.len() == 2 && !is_hash(&fields[0]) && !fields[0].eq_ignore_ascii_case("pdq") {
            out.other_signal_types += 1;
            continue;
        }
        let hash = match hash_col {
            Some(h) => fields.get(h).filter(|f| is_hash(f)),
            None => fields.iter().find(|f| is_hash(f)),
        };
        let Some(hash) = hash else {
            if out.rejected.len() < 20 {
                out.rejected.push((no, line.chars().take(80).collect()));
            }
            continue;
        };
        let label = match (has_header, label_col) {
            (true, Some(l)) => fields.get(l).cloned().unwrap_or_default(),
            (true, None) => String::new(),
            (false, _) => fields
                .iter()
                .rev()
                .find(|f| !is_hash(f) && f.parse::<f64>().is_err() && !f.eq_ignore_ascii_case("pdq"))
                .cloned()
                .unwrap_or_default(),
        };
        let label: String = label.chars().filter(|c| !crate::catalog::unsafe_char(*c)).take(MAX_LABEL).collect();
        match PdqHash::from_hex(hash) {
            Ok(h) => out.hashes.push((h, label)),
            Err(_) => out.rejected.push((no, line.chars().take(80).collect())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22";
    const B: &str = "e64cc9d91c623882f8d1f1d9a398e78c9f199b3bd83924f2b7e11e0bf861b064";

    #[test]
    fn reads_the_threatexchange_formats() {
        let tx = parse_hash_list(&format!("# comment\npdq {A}\nmd5 0123456789abcdef0123456789abcdef\n\npdq {B}\npdq nothex\n")).unwrap();
        assert_eq!(tx.hashes.len(), 2);
        assert_eq!((tx.other_signal_types, tx.rejected.len()), (1, 1));
        let bare = parse_hash_list(&format!("{A}\n{B}\n")).unwrap();
        assert_eq!(bare.hashes.len(), 2);
        let hasher = parse_hash_list(&format!("{A},100,bridge-1.jpg\n{B},87,small.jpg\n")).unwrap();
        assert_eq!(hasher.hashes[1].1, "small.jpg");
        let tsv = parse_hash_list(&format!("indicator_type\tindicator\tdescriptor_id\nHASH_PDQ\t{A}\t42\nHASH_MD5\tabc\t43\n")).unwrap();
        assert_eq!((tsv.hashes.len(), tsv.hashes[0].1.as_str(), tsv.other_signal_types), (1, "42", 1));
        assert!(parse_hash_list("foo,bar\n1,2\n").is_err(), "a header without a hash column");
    }

    #[test]
    fn a_byte_order_mark_and_long_or_control_labels_are_tamed() {
        let bom = parse_hash_list(&format!("\u{feff}pdq,label\n{A},first\n")).unwrap();
        assert_eq!((bom.hashes.len(), bom.hashes[0].1.as_str()), (1, "first"), "the header is read past a BOM");
        let long = parse_hash_list(&format!("{A},a\u{202e}b{}\n", "x".repeat(5000))).unwrap();
        assert_eq!(long.hashes[0].1.chars().count(), MAX_LABEL);
        assert!(long.hashes[0].1.starts_with("abx"), "the override is dropped");
    }
}
