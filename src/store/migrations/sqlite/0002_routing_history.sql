-- When a conversation last joined a queue (routing steps, affinity, overflow count
-- from here). Older rows: their creation time.
ALTER TABLE conversations ADD COLUMN entered_at INTEGER;
UPDATE conversations SET entered_at = created_at WHERE entered_at IS NULL;
-- Completed transfers.
ALTER TABLE conversations ADD COLUMN transfers INTEGER NOT NULL DEFAULT 0;

-- The customer's answer to `survey_request`: one per conversation.
CREATE TABLE surveys (
    conversation_id TEXT PRIMARY KEY REFERENCES conversations(id),
    customer_id     TEXT NOT NULL,
    agent_id        TEXT,
    csat            INTEGER NOT NULL,   -- 1..5
    effort          INTEGER,            -- 1..7
    resolved        INTEGER,            -- 0/1, the customer's view
    comment         TEXT,
    at              INTEGER NOT NULL
);
CREATE INDEX surveys_customer ON surveys(customer_id, agent_id);
