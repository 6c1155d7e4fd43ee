-- The merchant console: its password (when ADMIN_PASSWORD_HASH is not set), its sessions, failed
-- logins for the lock-out, what happened to each order beyond its own columns, and the indexes
-- its lists and searches use.

-- The generated password's argon2 PHC string; one row at most.
CREATE TABLE admin_password (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    phc         TEXT    NOT NULL CHECK (length(phc) BETWEEN 1 AND 200),
    created_at  INTEGER NOT NULL
);

-- A signed-in browser: the SHA-256 of its cookie's token (the token itself is never stored),
-- the CSRF token its forms carry, and when it ends.
CREATE TABLE admin_sessions (
    token_hash  TEXT    PRIMARY KEY CHECK (length(token_hash) = 64),
    csrf        TEXT    NOT NULL CHECK (length(csrf) = 32),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);

-- Failed logins, by client, for the lock-out (5 in 15 minutes).
CREATE TABLE admin_login_failures (
    client  TEXT    NOT NULL CHECK (length(client) BETWEEN 1 AND 64),
    at      INTEGER NOT NULL
);
CREATE INDEX admin_login_failures_by_client ON admin_login_failures (client, at);

-- An order's timeline beyond its own columns and its payment events: prepays, and everything
-- the merchant did (who, when, what).
CREATE TABLE order_events (
    id            INTEGER PRIMARY KEY,
    out_trade_no  TEXT    NOT NULL REFERENCES orders (out_trade_no),
    at            INTEGER NOT NULL,
    kind          TEXT    NOT NULL CHECK (length(kind) BETWEEN 1 AND 32),
    actor         TEXT    NOT NULL CHECK (length(actor) BETWEEN 1 AND 64),
    detail        TEXT    NOT NULL DEFAULT '' CHECK (length(detail) <= 500)
);
CREATE INDEX order_events_by_order ON order_events (out_trade_no, at);

-- The console's order list: newest first, by status, searched by number, transaction, phone or
-- name (out_trade_no and transaction_id are indexed already). Pages are keyset ranges of these.
CREATE INDEX orders_by_created ON orders (created_at, out_trade_no);
CREATE INDEX orders_by_status_created ON orders (status, created_at, out_trade_no);
CREATE INDEX orders_refund_due_by_created ON orders (created_at, out_trade_no) WHERE refund_due = 1;
CREATE INDEX orders_paid_by_pay_time ON orders (pay_time) WHERE status = 'paid';
CREATE INDEX order_contacts_by_phone ON order_contacts (phone);
CREATE INDEX order_contacts_by_name ON order_contacts (name);
