-- The shopper asked to cancel the order (its pay page's Cancel button): the reconciliation job
-- closes it at WeChat as soon as WeChat allows (5 minutes after it was made), then here, and
-- its stock goes back. NULL: never asked.
ALTER TABLE orders ADD COLUMN cancel_requested_at INTEGER;
