-- The outbox: what happened, written in the same transaction as the change that caused it (an
-- order paid, a refund due, a refund made, an order closed, a bill discrepancy found), so no
-- event is lost to a crash and none is written for a change that rolled back.
--
-- An event is written bare (its kind and what it is about); the delivery job then gives it its
-- id and its data, once, and makes one delivery per target configured at that moment
-- ("fanning out"). From then on the event's body never changes: every retry sends the same id
-- and the same bytes.
CREATE TABLE outbox_events (
    seq           INTEGER PRIMARY KEY,
    kind          TEXT    NOT NULL CHECK (kind IN ('order.paid', 'order.refund_due',
                          'refund.succeeded', 'order.closed', 'bill.discrepancy')),
    -- The order it concerns (order and refund events); deliveries keep each order's events in
    -- order. NULL for a bill discrepancy not tied to an order.
    out_trade_no  TEXT    CHECK (length(out_trade_no) <= 64),
    -- What it is about: the order, the refund's out_refund_no, or the discrepancy's id.
    subject       TEXT    NOT NULL CHECK (length(subject) BETWEEN 1 AND 64),
    -- Why, where the kind has several causes (a refund due: paid_after_close, amount_mismatch,
    -- refund_closed).
    detail        TEXT    NOT NULL DEFAULT '' CHECK (length(detail) <= 64),
    created_at    INTEGER NOT NULL,
    -- Set once, by the fan-out — left empty when no target took the event (it is never sent).
    event_id      TEXT    UNIQUE CHECK (length(event_id) BETWEEN 1 AND 64),
    data          TEXT    CHECK (length(data) <= 16384),
    fanned_at     INTEGER,
    CHECK (fanned_at IS NOT NULL OR (event_id IS NULL AND data IS NULL)),
    CHECK ((event_id IS NULL) = (data IS NULL))
);
CREATE INDEX outbox_events_unfanned ON outbox_events (seq) WHERE fanned_at IS NULL;
CREATE INDEX outbox_events_by_time ON outbox_events (created_at);

-- One event sent to one target (a webhook URL, the WeCom or the DingTalk robot).
CREATE TABLE outbox_deliveries (
    event_seq     INTEGER NOT NULL REFERENCES outbox_events (seq) ON DELETE CASCADE,
    target        TEXT    NOT NULL CHECK (length(target) BETWEEN 1 AND 40),
    out_trade_no  TEXT    CHECK (length(out_trade_no) <= 64),
    -- pending: to be sent (again) at next_at; delivered: the target took it; failed: the retry
    -- schedule ran out (the console can send it again).
    state         TEXT    NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_at       INTEGER NOT NULL,
    -- While an attempt is under way: until when it holds the delivery (one replica sends it).
    leased_until  INTEGER NOT NULL DEFAULT 0,
    last_at       INTEGER,
    last_result   TEXT    CHECK (length(last_result) <= 300),
    delivered_at  INTEGER,
    PRIMARY KEY (event_seq, target)
);
CREATE INDEX outbox_deliveries_due ON outbox_deliveries (next_at) WHERE state = 'pending';
CREATE INDEX outbox_deliveries_per_order ON outbox_deliveries (target, out_trade_no, event_seq)
    WHERE state = 'pending';
