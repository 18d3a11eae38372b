-- Offers an agent let go: rejected (with the reason they gave) or missed (not
-- answered in time). For coaching and for queue health: offers that keep bouncing
-- are a routing or staffing problem.
CREATE TABLE offer_declines (
    offer_id        TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    agent_id        TEXT NOT NULL,
    queue           TEXT NOT NULL,
    missed          INTEGER NOT NULL,   -- 1: not answered in time; 0: rejected
    reason          TEXT,
    at              INTEGER NOT NULL
);
CREATE INDEX offer_declines_agent ON offer_declines(agent_id, at);
