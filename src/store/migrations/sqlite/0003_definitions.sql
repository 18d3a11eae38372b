-- Queues and agents defined through the operator API (those in the config file are
-- not here). `body` is the definition as JSON, in the config file's shape.
CREATE TABLE definitions (
    kind       TEXT NOT NULL,   -- queue | agent
    id         TEXT NOT NULL,
    body       TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
);
