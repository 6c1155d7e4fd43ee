-- Per-client limits: who placed an order (an IP address, or an IPv6 /64) and what it holds
-- (`product:num` per line), so that a client's unpaid orders can be counted and the same cart
-- bought again is sent to the order already waiting for it.
ALTER TABLE orders ADD COLUMN client TEXT CHECK (length(client) BETWEEN 1 AND 64);
ALTER TABLE orders ADD COLUMN cart TEXT;
CREATE INDEX orders_pending_by_client ON orders (client) WHERE status = 'pending';
