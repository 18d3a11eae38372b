-- Context an IVR or a bot attached to a customer (POST /api/v1/customers/{id}/context)
-- before they reach an agent: trusted attributes, each with an expiry.
CREATE TABLE customer_context (
    customer_id TEXT NOT NULL REFERENCES customers(id),
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    set_at      INTEGER NOT NULL,
    PRIMARY KEY (customer_id, key)
);
