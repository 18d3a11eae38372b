-- What each conversation was like, measured as it went, kept at its close.
CREATE TABLE conversation_signals (
    conversation_id    TEXT PRIMARY KEY REFERENCES conversations(id),
    customer_id        TEXT NOT NULL,
    queue              TEXT NOT NULL,
    agent_id           TEXT,
    resolution         TEXT,
    wait_ms            INTEGER NOT NULL,
    first_response_ms  INTEGER,
    mean_response_ms   INTEGER,
    max_response_ms    INTEGER,
    handle_ms          INTEGER,
    abandoned          INTEGER NOT NULL,
    transfers_cold     INTEGER NOT NULL,
    transfers_warm     INTEGER NOT NULL,
    bounces            INTEGER NOT NULL,
    repeated_info      INTEGER NOT NULL,
    asked_known        INTEGER NOT NULL,
    customer_messages  INTEGER NOT NULL,
    agent_messages     INTEGER NOT NULL,
    flags_negative     INTEGER NOT NULL,
    flags_positive     INTEGER NOT NULL,
    closed_at          INTEGER NOT NULL
);
CREATE INDEX conversation_signals_closed ON conversation_signals(closed_at);
