-- Customer sentiment (VADER compound, thousandths) at the first and last message, and
-- the satisfaction estimate (1-5, hundredths) used when the survey is not answered.
ALTER TABLE conversation_signals ADD COLUMN sentiment_start INTEGER;
ALTER TABLE conversation_signals ADD COLUMN sentiment_end INTEGER;
ALTER TABLE conversation_signals ADD COLUMN estimate INTEGER;
