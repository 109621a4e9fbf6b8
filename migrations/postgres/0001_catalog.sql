-- The catalog in PostgreSQL: the same tables as SQLite's migrations 0001-0004, in one step.
CREATE TABLE hotels (
    id          BIGSERIAL PRIMARY KEY,
    external_id TEXT UNIQUE,
    name        TEXT NOT NULL,
    chain       TEXT,
    address     TEXT,
    city        TEXT,
    country     TEXT,
    latitude    DOUBLE PRECISION CHECK (latitude IS NULL OR latitude BETWEEN -90 AND 90),
    longitude   DOUBLE PRECISION CHECK (longitude IS NULL OR longitude BETWEEN -180 AND 180),
    created     BIGINT NOT NULL
);
CREATE INDEX hotels_country_city ON hotels(country, city);
CREATE INDEX hotels_chain ON hotels(chain);

CREATE TABLE models (
    id       BIGSERIAL PRIMARY KEY,
    name     TEXT NOT NULL,
    pooling  TEXT NOT NULL,
    dim      BIGINT NOT NULL,
    settings TEXT NOT NULL,
    created  BIGINT NOT NULL,
    UNIQUE (name, pooling, settings)
);

CREATE TABLE images (
    id              BIGSERIAL PRIMARY KEY,
    sha256          TEXT NOT NULL,
    hotel_id        BIGINT NOT NULL REFERENCES hotels(id),
    room            TEXT,
    source          TEXT NOT NULL CHECK (source IN ('crowd', 'import')),
    uploader_key_id TEXT,
    created         BIGINT NOT NULL,
    width           BIGINT NOT NULL,
    height          BIGINT NOT NULL,
    pdq             TEXT NOT NULL,
    pdq_quality     SMALLINT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'quarantined', 'deleted'))
);
CREATE INDEX images_hotel ON images(hotel_id);
CREATE INDEX images_sha256 ON images(sha256);

CREATE TABLE embeddings (
    image_id BIGINT NOT NULL REFERENCES images(id),
    model_id BIGINT NOT NULL REFERENCES models(id),
    vector   BYTEA NOT NULL,
    PRIMARY KEY (image_id, model_id)
);

-- The change feed. Sequence numbers are taken under an exclusive lock on this table (see
-- the adapter), so that they become visible in order: a replica that has read up to N
-- never misses a later-committed change numbered below N.
CREATE TABLE changes (
    seq      BIGINT PRIMARY KEY,
    image_id BIGINT NOT NULL REFERENCES images(id),
    kind     TEXT NOT NULL CHECK (kind IN ('add', 'status'))
);

CREATE TABLE audit (
    id     BIGSERIAL PRIMARY KEY,
    at     BIGINT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_action ON audit(action, id);

CREATE TABLE imports (
    source_key TEXT PRIMARY KEY,
    image_id   BIGINT REFERENCES images(id),
    outcome    TEXT NOT NULL,
    detail     TEXT
);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('uploader', 'investigator', 'admin')),
    label         TEXT,
    created       BIGINT NOT NULL,
    revoked       BIGINT
);

CREATE TABLE jobs (
    id          BIGSERIAL PRIMARY KEY,
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('running', 'done', 'failed', 'interrupted')),
    phase       TEXT NOT NULL DEFAULT '',
    done        BIGINT NOT NULL DEFAULT 0,
    total       BIGINT NOT NULL DEFAULT 0,
    started     BIGINT NOT NULL,
    finished    BIGINT,
    started_by  TEXT NOT NULL,
    pid         BIGINT NOT NULL,
    error       TEXT,
    host        TEXT NOT NULL DEFAULT '',
    heartbeat   BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX jobs_one_running ON jobs (kind) WHERE state = 'running';
