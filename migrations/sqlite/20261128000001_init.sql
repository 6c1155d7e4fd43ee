-- The checkout's tables. Money is integer fen; times are Unix seconds (UTC).
-- Kept portable in spirit: the PostgreSQL migrations mirror these tables column for column.

CREATE TABLE products (
    id          INTEGER PRIMARY KEY,              -- the sku_id shoppers post
    name        TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    price_fen   INTEGER NOT NULL CHECK (price_fen > 0),
    stock       INTEGER NOT NULL CHECK (stock >= 0),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE orders (
    out_trade_no        TEXT    PRIMARY KEY CHECK (length(out_trade_no) BETWEEN 1 AND 32),
    total_fee           INTEGER NOT NULL CHECK (total_fee > 0),
    status              TEXT    NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'paid', 'failed', 'closed')),
    body                TEXT    NOT NULL,             -- unifiedorder body (product names)
    product_id          TEXT    NOT NULL,             -- unifiedorder product_id (NATIVE)
    expires_at          INTEGER NOT NULL,             -- time_expire: fixed at creation, never changed
    -- The prepay from unifiedorder, reused while valid (WeChat forbids changed re-entry).
    prepay_id           TEXT,
    code_url            TEXT,
    code_url_expires_at INTEGER,
    sign_type           TEXT    CHECK (sign_type IN ('MD5', 'HMAC-SHA256')),
    -- The payment, set exactly once by the order consumer.
    transaction_id      TEXT    UNIQUE CHECK (length(transaction_id) BETWEEN 1 AND 32),
    pay_time            INTEGER,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    closed_at           INTEGER,
    reconcile_attempts  INTEGER NOT NULL DEFAULT 0 CHECK (reconcile_attempts >= 0),
    is_deleted          INTEGER NOT NULL DEFAULT 0 CHECK (is_deleted IN (0, 1)),
    CHECK (expires_at > created_at),
    CHECK ((code_url IS NULL) = (code_url_expires_at IS NULL)),
    CHECK ((code_url IS NULL) = (sign_type IS NULL)),
    CHECK ((status = 'paid') = (transaction_id IS NOT NULL AND pay_time IS NOT NULL)),
    CHECK ((status IN ('failed', 'closed')) = (closed_at IS NOT NULL))
);

-- Only unfinished orders are ever scanned (status polling, reconciliation): a partial index keeps
-- that cost proportional to the pending orders, however many finished ones accumulate.
CREATE INDEX orders_pending_by_created ON orders (created_at) WHERE status = 'pending';

CREATE TABLE order_items (
    out_trade_no  TEXT    NOT NULL REFERENCES orders (out_trade_no),
    product_id    INTEGER NOT NULL REFERENCES products (id),
    name          TEXT    NOT NULL,                -- as sold, even if the product is renamed
    unit_price    INTEGER NOT NULL CHECK (unit_price > 0),
    num           INTEGER NOT NULL CHECK (num > 0),
    PRIMARY KEY (out_trade_no, product_id)
);
