-- Service actions: a paused model keeps its versions loaded but answers no predict.
ALTER TABLE models ADD COLUMN paused BIGINT NOT NULL DEFAULT 0;
