-- Conflicts live with their record: open ones await a person, settled ones
-- keep who decided what and why.

-- +goose Up
ALTER TABLE records ADD COLUMN conflicts TEXT NOT NULL DEFAULT '[]';

-- +goose Down
ALTER TABLE records DROP COLUMN conflicts;
