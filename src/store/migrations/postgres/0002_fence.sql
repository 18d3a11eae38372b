-- Fencing for several nodes (docs/scaling.md): the routing owner's token. An owner
-- takes the fence with a token above the one stored, and every write it makes
-- checks the token is still its own, so a deposed owner can no longer write.
CREATE TABLE fence (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    token BIGINT NOT NULL
);
INSERT INTO fence (id, token) VALUES (1, 0);
