-- Coaching flags raised by agents' messages (one row per flag), for reports.
CREATE TABLE coaching_flags (
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    seq             INTEGER NOT NULL,
    code            TEXT NOT NULL,
    agent_id        TEXT NOT NULL,
    at              INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq, code)
);
CREATE INDEX coaching_flags_agent ON coaching_flags(agent_id, at);
