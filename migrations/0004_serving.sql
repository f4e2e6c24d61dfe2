-- How each version is served: backend choice, instances and batching limits, as JSON
-- (NULL: the server's defaults).
ALTER TABLE model_versions ADD COLUMN serving TEXT;
