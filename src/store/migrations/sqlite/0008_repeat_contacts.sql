-- A conversation that came back within the repeat window of an earlier one on the
-- same queue names it (the basis of first-contact resolution).
ALTER TABLE conversations ADD COLUMN repeat_of TEXT;
CREATE INDEX conversations_customer_queue ON conversations(customer_id, queue, closed_at);
