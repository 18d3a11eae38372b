-- "You never call": an agent closed with `follow_up`; at `due_at` an outbound
-- conversation opens for the customer (`opened_as`), offered to that agent first.
CREATE TABLE follow_ups (
    id              TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    customer_id     TEXT NOT NULL,
    queue           TEXT NOT NULL,
    agent_id        TEXT NOT NULL,
    due_at          INTEGER NOT NULL,
    note            TEXT,
    created_at      INTEGER NOT NULL,
    opened_as       TEXT,
    opened_at       INTEGER
);
CREATE INDEX follow_ups_due ON follow_ups(due_at) WHERE opened_as IS NULL;
