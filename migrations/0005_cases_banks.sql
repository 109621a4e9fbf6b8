-- Cases: an investigator's searches, notes and verdicts, kept as an append-only journal
-- (every review stays on record, as Hasher-Matcher-Actioner keeps its match reviews).
CREATE TABLE cases (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    owner TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE INDEX cases_owner ON cases (owner);
CREATE TABLE case_entries (
    id INTEGER PRIMARY KEY,
    case_id INTEGER NOT NULL REFERENCES cases (id),
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX case_entries_case ON case_entries (case_id, id);
-- Hash banks: named lists of PDQ hashes (ThreatExchange / HMA), matched against uploads and queries.
CREATE TABLE hash_banks (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created INTEGER NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE bank_hashes (
    id INTEGER PRIMARY KEY,
    bank_id INTEGER NOT NULL REFERENCES hash_banks (id),
    pdq TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    UNIQUE (bank_id, pdq)
);
