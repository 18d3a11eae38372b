-- Voice signals of each call leg, measured from the audio (talk, dead air,
-- crosstalk, hold), kept when the leg ends. Milliseconds.
CREATE TABLE voice_signals (
    id                 INTEGER PRIMARY KEY,
    conversation_id    TEXT NOT NULL REFERENCES conversations(id),
    agent_id           TEXT,
    duration_ms        INTEGER NOT NULL,
    caller_talk_ms     INTEGER NOT NULL,
    agent_talk_ms      INTEGER NOT NULL,
    crosstalk_ms       INTEGER NOT NULL,
    silence_ms         INTEGER NOT NULL,
    silences           INTEGER NOT NULL,
    longest_silence_ms INTEGER NOT NULL,
    hold_ms            INTEGER NOT NULL,
    at                 INTEGER NOT NULL
);
CREATE INDEX voice_signals_conversation ON voice_signals(conversation_id);
