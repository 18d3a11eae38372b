-- The transcript, rebuilt for the message path (docs/benchmarks.md, issue 21).
--
-- Before: a WITHOUT ROWID table keyed by (conversation_id, seq), and an index of
-- client ids. Each message landed in the middle of both b-trees, at its conversation's
-- place; with 200-byte rows SQLite's balancing kept those pages full, so every few
-- messages a page and its siblings were rewritten: 3.5 WAL pages (14 KB) per message.
--
-- Now: rows are appended (a rowid table: a batch's rows share the last pages), and a
-- conversation's events are found by a small unique index on (conversation_id, seq):
-- one index page per message. The client-id index goes: only a restart read it, and
-- the few recent client ids of an open conversation are its last events, which the
-- (conversation_id, seq) index finds from the end.
CREATE TABLE events_appended (
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    seq             INTEGER NOT NULL,
    ts              INTEGER NOT NULL,
    kind            TEXT NOT NULL,  -- message | assigned | closed
    role            TEXT NOT NULL,  -- customer | agent | system
    author_id       TEXT NOT NULL,
    author_name     TEXT NOT NULL,
    text            TEXT,           -- message text, or the close note
    client_msg_id   TEXT,
    resolution      TEXT
);
INSERT INTO events_appended (conversation_id, seq, ts, kind, role, author_id, author_name,
        text, client_msg_id, resolution)
    SELECT conversation_id, seq, ts, kind, role, author_id, author_name, text, client_msg_id,
        resolution
    FROM events ORDER BY conversation_id, seq;
DROP TABLE events;
ALTER TABLE events_appended RENAME TO events;
CREATE UNIQUE INDEX events_seq ON events(conversation_id, seq);
