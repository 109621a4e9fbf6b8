-- Batch jobs (re-embedding and re-indexing): their progress lives in the catalog, so that an
-- operator can inspect a job from any process and a job cut short by a crash is visible.
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('running', 'done', 'failed', 'interrupted')),
    phase       TEXT NOT NULL DEFAULT '',
    done        INTEGER NOT NULL DEFAULT 0,
    total       INTEGER NOT NULL DEFAULT 0,
    started     INTEGER NOT NULL,
    finished    INTEGER,
    started_by  TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    error       TEXT
);
-- At most one running job of each kind.
CREATE UNIQUE INDEX jobs_one_running ON jobs (kind) WHERE state = 'running';
