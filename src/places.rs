//! Places by name: countries by ISO 3166-1 code (alpha-2 or alpha-3) or English name, so
//! that "USA", "United States" and "us" all mean US. The table is compiled in
//! (`src/countries.tsv`, from the npm package i18n-iso-countries, MIT; made by
//! `scripts/data/make_countries.py`). Knows nothing of catalogs or HTTP.

use std::collections::HashMap;
use std::sync::OnceLock;

const TABLE: &str = include_str!("countries.tsv");

/// A country of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Country {
    /// ISO 3166-1 alpha-2, e.g. `US`.
    pub alpha2: &'static str,
    /// ISO 3166-1 alpha-3, e.g. `USA`.
    pub alpha3: &'static str,
    /// The English name, e.g. `United States of America`.
    pub name: &'static str,
}

/// A name or code as looked up: case, dots and runs of spaces do not count.
fn key(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").replace('.', "").to_lowercase()
}

fn index() -> &'static HashMap<String, Country> {
    static INDEX: OnceLock<HashMap<String, Country>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut by = HashMap::new();
        for line in TABLE.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let fields: Vec<&'static str> = line.split('\t').collect();
            let [alpha2, alpha3, name, ..] = fields[..] else { continue };
            let c = Country { alpha2, alpha3, name };
            // Codes first: a name never shadows a code.
            for f in &fields[2..] {
                by.entry(key(f)).or_insert(c);
            }
            by.insert(key(alpha2), c);
            by.insert(key(alpha3), c);
        }
        by
    })
}

/// The country `text` names (a code or an English name), if any.
pub fn country(text: &str) -> Option<Country> {
    index().get(&key(text)).copied()
}

/// Whether two texts name the same country (either may be a code or a name; texts the
/// table does not know compare as text, ignoring case).
pub fn same_country(a: &str, b: &str) -> bool {
    match (country(a), country(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.trim().eq_ignore_ascii_case(b.trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_name_one_country() {
        for t in ["US", "us", "USA", "U.S.A.", "United States", "united  states of america"] {
            assert_eq!(country(t).map(|c| c.alpha2), Some("US"), "{t}");
        }
        assert_eq!(country("Great Britain").map(|c| (c.alpha2, c.alpha3)), Some(("GB", "GBR")));
        assert_eq!(country("Czechia").map(|c| c.name), Some("Czech Republic"));
        assert!(country("Narnia").is_none() && country("").is_none());
        assert!(same_country("Germany", "de") && !same_country("DE", "DK") && same_country("Atlantis", "atlantis"));
        assert!(index().len() > 700, "codes and names of about 250 countries");
    }
}
