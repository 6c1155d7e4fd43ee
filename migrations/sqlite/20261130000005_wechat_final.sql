-- An order is final only once WeChat can no longer take money for it, and even then it is
-- watched: a finished unpaid order is asked about again on a decaying schedule, so a payment
-- whose notify was lost is still recorded (as refund_due).

-- The last trade_state WeChat reported for the order (or PAYERROR from a failure notify, or
-- ORDERNOTEXIST): shown to the shopper and the merchant, and logged only when it changes.
ALTER TABLE orders ADD COLUMN wechat_state TEXT CHECK (length(wechat_state) BETWEEN 1 AND 32);
-- When a finished unpaid order is next asked about (Unix seconds); NULL: not watched.
ALTER TABLE orders ADD COLUMN watch_due_at INTEGER;
-- Questions of the watch asked so far.
ALTER TABLE orders ADD COLUMN watch_step INTEGER NOT NULL DEFAULT 0 CHECK (watch_step >= 0);
CREATE INDEX orders_watched ON orders (watch_due_at) WHERE watch_due_at IS NOT NULL;

-- The currency WeChat reported with a payment (NULL for events recorded before: CNY).
ALTER TABLE payment_events ADD COLUMN fee_type TEXT CHECK (length(fee_type) BETWEEN 1 AND 16);

-- What the shopper paid in cash and what coupons paid (total_fee is their sum), as WeChat
-- reported them with the payment; on the order once paid.
ALTER TABLE payment_events ADD COLUMN cash_fee INTEGER CHECK (cash_fee >= 0);
ALTER TABLE payment_events ADD COLUMN coupon_fee INTEGER CHECK (coupon_fee >= 0);
ALTER TABLE orders ADD COLUMN cash_fee INTEGER CHECK (cash_fee >= 0);
ALTER TABLE orders ADD COLUMN coupon_fee INTEGER CHECK (coupon_fee >= 0);

-- A failure notify no longer ends an order (the shopper may scan again): orders it ended are
-- closed orders, watched from now on; so are orders closed in the last day.
UPDATE orders SET status = 'closed', watch_due_at = 0 WHERE status = 'failed';
UPDATE orders SET watch_due_at = 0
 WHERE status = 'closed' AND closed_at > CAST(strftime('%s', 'now') AS INTEGER) - 86400;
