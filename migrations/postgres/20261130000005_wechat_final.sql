-- An order is final only once WeChat can no longer take money for it, and even then it is
-- watched; see migrations/sqlite for what each column is for.
ALTER TABLE orders ADD COLUMN wechat_state TEXT CHECK (length(wechat_state) BETWEEN 1 AND 32);
ALTER TABLE orders ADD COLUMN watch_due_at BIGINT;
ALTER TABLE orders ADD COLUMN watch_step BIGINT NOT NULL DEFAULT 0 CHECK (watch_step >= 0);
CREATE INDEX orders_watched ON orders (watch_due_at) WHERE watch_due_at IS NOT NULL;

ALTER TABLE payment_events ADD COLUMN fee_type TEXT CHECK (length(fee_type) BETWEEN 1 AND 16);

-- What the shopper paid in cash and what coupons paid (total_fee is their sum), as WeChat
-- reported them with the payment; on the order once paid.
ALTER TABLE payment_events ADD COLUMN cash_fee BIGINT CHECK (cash_fee >= 0);
ALTER TABLE payment_events ADD COLUMN coupon_fee BIGINT CHECK (coupon_fee >= 0);
ALTER TABLE orders ADD COLUMN cash_fee BIGINT CHECK (cash_fee >= 0);
ALTER TABLE orders ADD COLUMN coupon_fee BIGINT CHECK (coupon_fee >= 0);

UPDATE orders SET status = 'closed', watch_due_at = 0 WHERE status = 'failed';
UPDATE orders SET watch_due_at = 0
 WHERE status = 'closed' AND closed_at > CAST(EXTRACT(EPOCH FROM now()) AS BIGINT) - 86400;
