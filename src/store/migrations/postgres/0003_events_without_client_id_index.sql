-- The client-id index cost every message a second index page; only the restore read it,
-- and the primary key (conversation_id, seq) finds the last events of a conversation.
DROP INDEX IF EXISTS events_client_msg_id;
