-- When an order is next due for a reconciliation query (Unix seconds). A job claims an order by
-- moving this forward with a conditional update, so with several replicas each order is queried
-- once per interval, not once per replica — and its attempts count queries, not replicas.
ALTER TABLE orders ADD COLUMN reconcile_due_at BIGINT NOT NULL DEFAULT 0;
