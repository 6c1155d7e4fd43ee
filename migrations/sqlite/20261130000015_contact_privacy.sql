-- The buyer's privacy (PIPL): contact details sealed at rest, searchable by keyed hashes, removable
-- per buyer or after the retention period, and every console look at them logged.

-- A contact is one sealed value (AES-256-GCM of its fields, bound to its order; "key id.nonce and
-- ciphertext") and keyed hashes of the normalised phone and the trimmed name for the console's
-- search. The plaintext columns of before are emptied at start-up (rows are sealed by the
-- application, which holds the key) and stay NULL from then on.
ALTER TABLE order_contacts ADD COLUMN sealed TEXT CHECK (length(sealed) BETWEEN 1 AND 8000);
ALTER TABLE order_contacts ADD COLUMN key_id TEXT CHECK (length(key_id) BETWEEN 1 AND 16);
ALTER TABLE order_contacts ADD COLUMN phone_hash TEXT CHECK (length(phone_hash) = 32);
ALTER TABLE order_contacts ADD COLUMN name_hash TEXT CHECK (length(name_hash) = 32);
-- The plaintext indexes would keep a copy of every phone number and name.
DROP INDEX order_contacts_by_phone;
DROP INDEX order_contacts_by_name;
CREATE INDEX order_contacts_by_phone_hash ON order_contacts (phone_hash);
CREATE INDEX order_contacts_by_name_hash ON order_contacts (name_hash);
-- What the re-encryption looks for: rows under another key, or not sealed yet.
CREATE INDEX order_contacts_by_key ON order_contacts (key_id);

-- The key generated when CONTACT_KEY is not set (sandbox mode, or a shop that asks for no
-- contact): base64 of 32 bytes, one row at most. With CONTACT_KEY set it is only read, until no
-- row is sealed under it.
CREATE TABLE contact_key (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    key         TEXT    NOT NULL CHECK (length(key) = 44),
    created_at  INTEGER NOT NULL
);

-- Who looked at buyers' details in the console: the session as a short one-way id (never its
-- token), what was done (view, export, delete, csv), and the order or the buyer's phone hash.
CREATE TABLE contact_access (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    session  TEXT    NOT NULL CHECK (length(session) BETWEEN 1 AND 32),
    action   TEXT    NOT NULL CHECK (length(action) BETWEEN 1 AND 16),
    subject  TEXT    NOT NULL CHECK (length(subject) <= 200)
);
CREATE INDEX contact_access_by_at ON contact_access (at);
