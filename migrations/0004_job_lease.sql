-- Jobs are leased: a replica renews its job's heartbeat, and a job whose heartbeat is stale
-- (its process or machine stopped) is marked interrupted by whoever looks next.
ALTER TABLE jobs ADD COLUMN host TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN heartbeat INTEGER NOT NULL DEFAULT 0;
