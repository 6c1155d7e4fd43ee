-- The daily bill: each Beijing day's reconciliation against WeChat's trade bill, and what it
-- found. A day is opened once BILL_FETCH_AT has passed the next day, claimed by one replica at a
-- time (`lease_until` moved forward by a conditional update), retried at `next_at` until done.

CREATE TABLE bill_days (
    day           TEXT    PRIMARY KEY CHECK (length(day) = 10),   -- YYYY-MM-DD, Beijing
    status        TEXT    NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done', 'expired')),
    attempts      INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_at       INTEGER NOT NULL,
    lease_until   INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT    CHECK (length(last_error) <= 300),
    finished_at   INTEGER,
    -- What the last run read: WeChat had no bill (no trades); lines; payments and refunds (count,
    -- fen); WeChat's fees (thousandths of a fen); lines that matched the shop's records.
    no_bill       INTEGER NOT NULL DEFAULT 0 CHECK (no_bill IN (0, 1)),
    lines         INTEGER NOT NULL DEFAULT 0,
    payments      INTEGER NOT NULL DEFAULT 0,
    payments_fee  INTEGER NOT NULL DEFAULT 0,
    refunds       INTEGER NOT NULL DEFAULT 0,
    refunds_fee   INTEGER NOT NULL DEFAULT 0,
    charges       INTEGER NOT NULL DEFAULT 0,
    matched       INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    CHECK ((status = 'open') = (finished_at IS NULL))
);
CREATE INDEX bill_days_due ON bill_days (next_at) WHERE status = 'open';

-- What a day's reconciliation found, once per (day, kind, reference): a re-run updates what it
-- finds again and marks resolved what it no longer finds.
CREATE TABLE bill_discrepancies (
    id              INTEGER PRIMARY KEY,
    day             TEXT    NOT NULL REFERENCES bill_days (day),
    kind            TEXT    NOT NULL CHECK (kind IN ('wechat_only', 'shop_only', 'amount', 'refund')),
    -- The transaction_id (payments) or out_refund_no (refunds) it is about.
    reference       TEXT    NOT NULL CHECK (length(reference) BETWEEN 1 AND 64),
    out_trade_no    TEXT    CHECK (length(out_trade_no) <= 64),
    wechat_fee      INTEGER,
    shop_fee        INTEGER,
    detail          TEXT    NOT NULL CHECK (length(detail) <= 300),
    action          TEXT    NOT NULL DEFAULT '' CHECK (length(action) <= 300),
    found_at        INTEGER NOT NULL,
    resolved_at     INTEGER,
    UNIQUE (day, kind, reference)
);
CREATE INDEX bill_discrepancies_open ON bill_discrepancies (day) WHERE resolved_at IS NULL;

-- The payments and refunds of a day, as the reconciliation reads them.
CREATE INDEX payment_events_by_pay_time ON payment_events (pay_time) WHERE result = 'SUCCESS';
CREATE INDEX refunds_by_created ON refunds (created_at);
