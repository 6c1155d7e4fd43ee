-- The merchant's own shop: a catalogue imported by sku, the buyer's contact, a receipt.

-- The merchant's product code (upserts go by it), a description, and whether it is on sale
-- (inactive products are hidden from the shop; their orders are still served). Products made
-- before get a code from their id.
ALTER TABLE products ADD COLUMN sku TEXT CHECK (length(sku) BETWEEN 1 AND 32);
ALTER TABLE products ADD COLUMN description TEXT NOT NULL DEFAULT ''
    CHECK (length(description) <= 1000);
ALTER TABLE products ADD COLUMN active BIGINT NOT NULL DEFAULT 1 CHECK (active IN (0, 1));
UPDATE products SET sku = 'P' || id::text WHERE sku IS NULL;
CREATE UNIQUE INDEX products_by_sku ON products (sku);
ALTER TABLE products ALTER COLUMN sku SET NOT NULL;

-- The receipt's unguessable token (NULL for orders placed before receipts existed), and the
-- shipment once the merchant sends the goods.
ALTER TABLE orders ADD COLUMN receipt_token TEXT CHECK (length(receipt_token) = 32);
ALTER TABLE orders ADD COLUMN shipped_at BIGINT;
ALTER TABLE orders ADD COLUMN carrier TEXT CHECK (length(carrier) BETWEEN 1 AND 50);
ALTER TABLE orders ADD COLUMN tracking_no TEXT CHECK (length(tracking_no) BETWEEN 1 AND 50);

-- Who bought it and where the goods go, as typed at checkout (the fields CHECKOUT_FIELDS
-- asks for; the others NULL). Kept apart from the order so that it can be anonymised alone.
CREATE TABLE order_contacts (
    out_trade_no  TEXT PRIMARY KEY REFERENCES orders (out_trade_no),
    name          TEXT CHECK (length(name) BETWEEN 1 AND 50),
    phone         TEXT CHECK (length(phone) BETWEEN 1 AND 20),
    address       TEXT CHECK (length(address) BETWEEN 1 AND 200),
    email         TEXT CHECK (length(email) BETWEEN 3 AND 254),
    note          TEXT CHECK (length(note) BETWEEN 1 AND 500)
);
