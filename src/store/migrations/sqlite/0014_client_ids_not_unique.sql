-- A client id is de-duplicated by the core within `routing.dedupe_window` messages.
-- A unique index behind it let one client who reused an old id fail a whole group
-- commit, everyone else's messages with it, on every retry. The index stays, for
-- lookups, without the constraint: a reuse beyond the window is a new message.
DROP INDEX events_client_msg_id;
CREATE INDEX events_client_msg_id
    ON events(conversation_id, author_id, client_msg_id) WHERE client_msg_id IS NOT NULL;
