-- The catalog: the source of truth. Indexes are derived from it and rebuilt from it.
CREATE TABLE hotels (
    id          INTEGER PRIMARY KEY,
    external_id TEXT UNIQUE,
    name        TEXT NOT NULL,
    chain       TEXT,
    address     TEXT,
    city        TEXT,
    country     TEXT,
    latitude    REAL CHECK (latitude IS NULL OR latitude BETWEEN -90 AND 90),
    longitude   REAL CHECK (longitude IS NULL OR longitude BETWEEN -180 AND 180),
    created     INTEGER NOT NULL
);
CREATE INDEX hotels_country_city ON hotels(country, city);
CREATE INDEX hotels_chain ON hotels(chain);

CREATE TABLE models (
    id       INTEGER PRIMARY KEY,
    name     TEXT NOT NULL,
    pooling  TEXT NOT NULL,
    dim      INTEGER NOT NULL,
    settings TEXT NOT NULL,
    created  INTEGER NOT NULL,
    UNIQUE (name, pooling, settings)
);

CREATE TABLE images (
    id              INTEGER PRIMARY KEY,
    sha256          TEXT NOT NULL,
    hotel_id        INTEGER NOT NULL REFERENCES hotels(id),
    room            TEXT,
    source          TEXT NOT NULL CHECK (source IN ('crowd', 'import')),
    uploader_key_id TEXT,
    created         INTEGER NOT NULL,
    width           INTEGER NOT NULL,
    height          INTEGER NOT NULL,
    pdq             TEXT NOT NULL,
    pdq_quality     INTEGER NOT NULL,
    status          TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'quarantined', 'deleted'))
);
CREATE INDEX images_hotel ON images(hotel_id);
CREATE INDEX images_sha256 ON images(sha256);

CREATE TABLE embeddings (
    image_id INTEGER NOT NULL REFERENCES images(id),
    model_id INTEGER NOT NULL REFERENCES models(id),
    vector   BLOB NOT NULL,
    PRIMARY KEY (image_id, model_id)
);

-- Every change to images, in order: derived indexes catch up from their watermark.
CREATE TABLE changes (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id INTEGER NOT NULL REFERENCES images(id),
    kind     TEXT NOT NULL CHECK (kind IN ('add', 'status'))
);

CREATE TABLE audit (
    id     INTEGER PRIMARY KEY,
    at     INTEGER NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);

-- Resumable imports: one row per source line already handled.
CREATE TABLE imports (
    source_key TEXT PRIMARY KEY,
    image_id   INTEGER REFERENCES images(id),
    outcome    TEXT NOT NULL,
    detail     TEXT
);
