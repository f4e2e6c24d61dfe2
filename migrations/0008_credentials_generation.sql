-- A user's credentials generation: set when the user is created (to the creation time, in ms) and
-- moved forward on every password or role change. A login token carries the generation it was
-- issued under; one that no longer matches is refused, so a change ends the tokens issued before
-- it, and a user deleted and created again under the same name never matches an old token.
-- Existing users start at 0, the generation of tokens issued before this migration.
ALTER TABLE users ADD COLUMN credentials_generation BIGINT NOT NULL DEFAULT 0;
