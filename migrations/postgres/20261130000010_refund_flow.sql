-- Refunds in motion: a late payment's refund (money WeChat took for an order that could not
-- take it) refunds that payment, not the order's price; the payment's amount is what WeChat is
-- told (`total_fee`); WeChat's refusal is kept for the merchant; unsettled refunds are followed
-- (asked again with the same out_refund_no, or queried) at `follow_at`, claimed by one replica
-- at a time by moving it forward.
ALTER TABLE refunds ADD COLUMN late BIGINT NOT NULL DEFAULT 0 CHECK (late IN (0, 1));
ALTER TABLE refunds ADD COLUMN total_fee BIGINT CHECK (total_fee > 0);
ALTER TABLE refunds ADD COLUMN failure TEXT CHECK (length(failure) <= 200);
ALTER TABLE refunds ADD COLUMN follow_at BIGINT;
ALTER TABLE refunds ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
UPDATE refunds SET follow_at = created_at WHERE status IN ('requested', 'processing');
DROP INDEX refunds_unsettled;
CREATE INDEX refunds_to_follow ON refunds (follow_at) WHERE status IN ('requested', 'processing');

-- An order's goods go back on the shelf at most once, whatever its refunds say.
ALTER TABLE orders ADD COLUMN restocked_at BIGINT;
