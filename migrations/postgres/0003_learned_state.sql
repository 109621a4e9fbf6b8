-- Learned state (the calibration; later, projections learned from the gallery's labels),
-- versioned: every replica uses the newest version of each kind, and takes up a newer one
-- when its change-feed follower sees it.
CREATE TABLE learned_state (
    version BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    created BIGINT NOT NULL,
    created_by TEXT NOT NULL
);
CREATE INDEX learned_state_kind ON learned_state (kind, version);
