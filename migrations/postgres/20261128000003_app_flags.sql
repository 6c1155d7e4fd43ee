-- One-time actions of the application (such as seeding the demo catalogue), claimed by inserting
-- a row: when several replicas start at once, exactly one of them does it.
CREATE TABLE app_flags (
    name    TEXT    PRIMARY KEY,
    set_at  BIGINT  NOT NULL
);
