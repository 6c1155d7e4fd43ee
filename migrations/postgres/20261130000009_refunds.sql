-- Refunds: each recorded, with its out_refund_no, before WeChat is asked (a retry repeats the
-- number, so a refund is never made twice), and the order's refunded amount reserved in the
-- same transaction by one conditional update (the sum of refunds never exceeds what was paid,
-- however many requests race, on however many replicas).

CREATE TABLE refunds (
    out_refund_no  TEXT    PRIMARY KEY CHECK (length(out_refund_no) BETWEEN 1 AND 64),
    out_trade_no   TEXT    NOT NULL REFERENCES orders (out_trade_no),
    refund_fee     BIGINT  NOT NULL CHECK (refund_fee > 0),
    reason         TEXT    NOT NULL DEFAULT '' CHECK (length(reason) <= 80),
    restock        BIGINT  NOT NULL DEFAULT 0 CHECK (restock IN (0, 1)),
    -- requested: recorded, WeChat not (yet) known to have it; processing: accepted by WeChat;
    -- succeeded / closed (REFUNDCLOSE) / change (CHANGE: WeChat could not pay it back): settled.
    status         TEXT    NOT NULL DEFAULT 'requested'
                   CHECK (status IN ('requested', 'processing', 'succeeded', 'closed', 'change')),
    refund_id      TEXT    CHECK (length(refund_id) BETWEEN 1 AND 64),
    requested_by   TEXT    NOT NULL CHECK (length(requested_by) BETWEEN 1 AND 64),
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    settled_at     BIGINT ,
    CHECK ((status IN ('succeeded', 'closed', 'change')) = (settled_at IS NOT NULL))
);
CREATE INDEX refunds_by_order ON refunds (out_trade_no);
CREATE INDEX refunds_unsettled ON refunds (created_at) WHERE status IN ('requested', 'processing');

-- What the order's refunds hold: requested, in progress or made (a closed refund gives its
-- amount back). Never more than what was paid.
ALTER TABLE orders ADD COLUMN refunded_fee BIGINT  NOT NULL DEFAULT 0 CHECK (refunded_fee >= 0);
