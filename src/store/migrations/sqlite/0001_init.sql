-- Warmline's embedded store. Times are milliseconds since the UNIX epoch.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE customers (
    id         TEXT PRIMARY KEY,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL
);

CREATE TABLE conversations (
    id          TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers(id),
    queue       TEXT NOT NULL,
    channel     TEXT NOT NULL,
    state       TEXT NOT NULL,
    agent_id    TEXT,
    priority    INTEGER NOT NULL,
    ticket      INTEGER NOT NULL,
    skills      TEXT NOT NULL,   -- "name=level" joined by ","
    language    TEXT,
    attributes  TEXT NOT NULL,   -- a JSON object, opaque to the core
    created_at  INTEGER NOT NULL,
    closed_at   INTEGER,
    closed_by   TEXT,
    resolution  TEXT
);
CREATE INDEX conversations_open ON conversations(state) WHERE state <> 'closed';
CREATE INDEX conversations_customer ON conversations(customer_id, created_at);

-- The transcript: every event that has a seq.
CREATE TABLE events (
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    seq             INTEGER NOT NULL,
    ts              INTEGER NOT NULL,
    kind            TEXT NOT NULL,  -- message | assigned | closed
    role            TEXT NOT NULL,  -- customer | agent | system
    author_id       TEXT NOT NULL,
    author_name     TEXT NOT NULL,
    text            TEXT,           -- message text, or the close note
    client_msg_id   TEXT,
    resolution      TEXT,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX events_client_msg_id
    ON events(conversation_id, author_id, client_msg_id) WHERE client_msg_id IS NOT NULL;

CREATE TABLE assignments (
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    agent_id        TEXT NOT NULL,
    started_at      INTEGER NOT NULL,
    ended_at        INTEGER,
    PRIMARY KEY (conversation_id, agent_id, started_at)
);
CREATE INDEX assignments_agent ON assignments(agent_id, started_at);
