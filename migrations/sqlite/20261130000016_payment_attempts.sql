-- Payment attempts: each way of paying an order is its own WeChat order with its own number
-- (WeChat refuses one out_trade_no for two trade types). H5 (MWEB) and JSAPI attempts are
-- numbered after the order; Native keeps the order's own number and gets a row here too once
-- the order has another attempt, so the attempts that did not pay can all be closed at WeChat.
-- closed_at: WeChat can take no (more) money for it: closed there, or paid.
CREATE TABLE payment_attempts (
    attempt_no        TEXT    PRIMARY KEY CHECK (length(attempt_no) BETWEEN 1 AND 32),
    order_no          TEXT    NOT NULL REFERENCES orders (out_trade_no),
    trade_type        TEXT    NOT NULL CHECK (trade_type IN ('NATIVE', 'MWEB', 'JSAPI')),
    -- JSAPI: the payer (sent as openid); MWEB: the shopper's IP (sent as spbill_create_ip).
    openid            TEXT    CHECK (length(openid) BETWEEN 1 AND 64),
    client_ip         TEXT    CHECK (length(client_ip) BETWEEN 1 AND 45),
    prepay_id         TEXT    CHECK (length(prepay_id) BETWEEN 1 AND 64),
    prepay_expires_at INTEGER,
    sign_type         TEXT    CHECK (sign_type IN ('MD5', 'HMAC-SHA256')),
    wechat_state      TEXT    CHECK (length(wechat_state) BETWEEN 1 AND 32),
    created_at        INTEGER NOT NULL,
    closed_at         INTEGER,
    UNIQUE (order_no, trade_type),
    CHECK ((prepay_id IS NULL) = (prepay_expires_at IS NULL))
);
-- Attempts WeChat may still take money for.
CREATE INDEX payment_attempts_open ON payment_attempts (order_no) WHERE closed_at IS NULL;

-- Attempts of the order with a prepay (0 for an order paid by QR code alone), and the number
-- WeChat knows the order's payment by when it is not the order's own.
ALTER TABLE orders ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0);
ALTER TABLE orders ADD COLUMN paid_no TEXT CHECK (length(paid_no) BETWEEN 1 AND 32);
-- The number WeChat reported a payment under, when it is an attempt's rather than the order's.
ALTER TABLE payment_events ADD COLUMN wechat_no TEXT CHECK (length(wechat_no) BETWEEN 1 AND 32);
-- The number a refund is asked for under at WeChat, when it is an attempt's.
ALTER TABLE refunds ADD COLUMN wechat_no TEXT CHECK (length(wechat_no) BETWEEN 1 AND 32);
