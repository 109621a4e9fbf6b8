-- API keys: the secret is never stored, only its sha256.
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('uploader', 'investigator', 'admin')),
    label         TEXT,
    created       INTEGER NOT NULL,
    revoked       INTEGER
);
