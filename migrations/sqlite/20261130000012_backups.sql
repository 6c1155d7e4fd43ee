-- Backups made of this database (SQLite): when, where and how big, for the dashboard's "last good
-- backup" and the metric. Only good backups are recorded (each was checked before it was kept).
CREATE TABLE backups (
    id        INTEGER PRIMARY KEY,
    taken_at  INTEGER NOT NULL,
    path      TEXT    NOT NULL CHECK (length(path) BETWEEN 1 AND 1000),
    bytes     INTEGER NOT NULL CHECK (bytes > 0)
);
CREATE INDEX backups_by_time ON backups (taken_at);
