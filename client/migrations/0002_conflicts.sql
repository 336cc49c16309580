-- Conflicts travel with their record; the device's clock is kept so the
-- hybrid logical clock never goes back.

-- +goose Up
ALTER TABLE records ADD COLUMN conflicts TEXT NOT NULL DEFAULT '[]';
INSERT INTO counters (name, value) VALUES ('hlc', 0);
ALTER TABLE outbox ADD COLUMN hlc INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE outbox DROP COLUMN hlc;
DELETE FROM counters WHERE name = 'hlc';
ALTER TABLE records DROP COLUMN conflicts;
