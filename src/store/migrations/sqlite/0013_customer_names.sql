-- The name a verified customer's identity token gave (shown to agents).
ALTER TABLE customers ADD COLUMN name TEXT;
