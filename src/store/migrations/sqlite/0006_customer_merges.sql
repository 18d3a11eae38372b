-- Anonymous visitors who identified as a customer (hello with a visitor token and an
-- identity token): their conversations and survey answers were moved to the customer.
-- The first merge of a visitor is kept here (audit); later ones move what the visitor
-- did since, if anything.
CREATE TABLE customer_merges (
    visitor_id  TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    at          INTEGER NOT NULL
);
CREATE INDEX customer_merges_customer ON customer_merges(customer_id);
