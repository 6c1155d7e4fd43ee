-- The payment inbox: every verified payment the shop learns of (notify, order query,
-- reconciliation), recorded durably before it is acknowledged and applied to its order by the
-- order consumer exactly once. An event not yet applied has applied_at NULL and is replayed at
-- start-up and periodically, so a crash between recording and applying loses nothing.

CREATE TABLE payment_events (
    id              INTEGER PRIMARY KEY,
    out_trade_no    TEXT    NOT NULL,
    result          TEXT    NOT NULL CHECK (result IN ('SUCCESS', 'FAIL')),
    transaction_id  TEXT    CHECK (length(transaction_id) BETWEEN 1 AND 32),
    total_fee       INTEGER NOT NULL CHECK (total_fee > 0),
    pay_time        INTEGER,
    source          TEXT    NOT NULL CHECK (source IN ('notify', 'query', 'reconcile')),
    received_at     INTEGER NOT NULL,
    applied_at      INTEGER,
    -- What applying it did: paid | duplicate | paid_after_close | failed | ignored
    outcome         TEXT,
    CHECK ((result = 'SUCCESS') = (transaction_id IS NOT NULL AND pay_time IS NOT NULL)),
    CHECK ((applied_at IS NULL) = (outcome IS NULL))
);

-- One event per WeChat transaction, however often and by whatever path it arrives.
CREATE UNIQUE INDEX payment_events_transaction ON payment_events (transaction_id);
-- One failure event per order.
CREATE UNIQUE INDEX payment_events_failure ON payment_events (out_trade_no) WHERE result = 'FAIL';
-- The replay scans only what is still to apply.
CREATE INDEX payment_events_unapplied ON payment_events (id) WHERE applied_at IS NULL;

-- A payment that arrived for an order the shop had already closed: the money must go back.
ALTER TABLE orders ADD COLUMN refund_due INTEGER NOT NULL DEFAULT 0 CHECK (refund_due IN (0, 1));
