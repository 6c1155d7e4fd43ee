-- Notify health: a log of every notify WeChat (or anyone) sends — accepted, duplicate, refused
-- and why, never a body — and the alarms raised from it. Refusals are counted per reason and
-- flush (a flood of forgeries makes one row a second, not one per request); accepted and
-- duplicate notifies have a row per order.
CREATE TABLE notify_log (
    id            INTEGER PRIMARY KEY,
    at            INTEGER NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('payment', 'refund')),
    outcome       TEXT    NOT NULL CHECK (outcome IN ('accepted', 'duplicate', 'refused')),
    reason        TEXT    CHECK (length(reason) <= 64),
    out_trade_no  TEXT    CHECK (length(out_trade_no) <= 64),
    count         INTEGER NOT NULL DEFAULT 1 CHECK (count > 0)
);
CREATE INDEX notify_log_at ON notify_log (at);

-- A health alarm (today: notify_missing), raised and cleared by conditional updates so that of
-- several replicas one announces each change.
CREATE TABLE health_alarms (
    name          TEXT    PRIMARY KEY CHECK (length(name) <= 32),
    -- NULL while not raised.
    raised_at     INTEGER,
    changed_at    INTEGER NOT NULL,
    -- What was measured when it last changed, as JSON.
    detail        TEXT    NOT NULL DEFAULT '' CHECK (length(detail) <= 2000)
);

-- The alarm counts payments by the time they were learned of.
CREATE INDEX payment_events_received ON payment_events (received_at);

-- The outbox takes the alarm's events: notify.missing and notify.restored. SQLite cannot change
-- a CHECK in place, so both outbox tables are copied into new ones and renamed (deliveries
-- first out, so dropping the events cascades to nothing). The columns are
-- 20261130000013_outbox.sql's, commented there.
CREATE TABLE outbox_events_v2 (
    seq           INTEGER PRIMARY KEY,
    kind          TEXT    NOT NULL CHECK (kind IN ('order.paid', 'order.refund_due',
                          'refund.succeeded', 'order.closed', 'bill.discrepancy',
                          'notify.missing', 'notify.restored')),
    out_trade_no  TEXT    CHECK (length(out_trade_no) <= 64),
    subject       TEXT    NOT NULL CHECK (length(subject) BETWEEN 1 AND 64),
    detail        TEXT    NOT NULL DEFAULT '' CHECK (length(detail) <= 64),
    created_at    INTEGER NOT NULL,
    event_id      TEXT    UNIQUE CHECK (length(event_id) BETWEEN 1 AND 64),
    data          TEXT    CHECK (length(data) <= 16384),
    fanned_at     INTEGER,
    CHECK (fanned_at IS NOT NULL OR (event_id IS NULL AND data IS NULL)),
    CHECK ((event_id IS NULL) = (data IS NULL))
);
INSERT INTO outbox_events_v2 SELECT * FROM outbox_events;

-- The columns as in 20261130000013_outbox.sql (their comments there).
CREATE TABLE outbox_deliveries_v2 (
    event_seq     INTEGER NOT NULL REFERENCES outbox_events_v2 (seq) ON DELETE CASCADE,
    target        TEXT    NOT NULL CHECK (length(target) BETWEEN 1 AND 40),
    out_trade_no  TEXT    CHECK (length(out_trade_no) <= 64),
    state         TEXT    NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_at       INTEGER NOT NULL,
    leased_until  INTEGER NOT NULL DEFAULT 0,
    last_at       INTEGER,
    last_result   TEXT    CHECK (length(last_result) <= 300),
    delivered_at  INTEGER,
    PRIMARY KEY (event_seq, target)
);
INSERT INTO outbox_deliveries_v2 SELECT * FROM outbox_deliveries;

DROP TABLE outbox_deliveries;
DROP TABLE outbox_events;
ALTER TABLE outbox_events_v2 RENAME TO outbox_events;
ALTER TABLE outbox_deliveries_v2 RENAME TO outbox_deliveries;
CREATE INDEX outbox_events_unfanned ON outbox_events (seq) WHERE fanned_at IS NULL;
CREATE INDEX outbox_events_by_time ON outbox_events (created_at);
CREATE INDEX outbox_deliveries_due ON outbox_deliveries (next_at) WHERE state = 'pending';
CREATE INDEX outbox_deliveries_per_order ON outbox_deliveries (target, out_trade_no, event_seq)
    WHERE state = 'pending';
