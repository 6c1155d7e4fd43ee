//! Buyers' contact details at rest: sealed with AES-256-GCM under `CONTACT_KEY`, found again
//! through keyed hashes. The SQL that uses this is `sql/contacts.rs`; callers above the store
//! only ever see a plain [`Contact`].
//!
//! A key ring is one current key, which seals, and older keys, which only open (rotation:
//! `CONTACT_KEY=new,old` reads both while the re-encryption moves every row to the new one). A
//! sealed value is `ID.B64` — the key's id (a one-way function of the key, so no id needs
//! configuring) and base64 of a random 96-bit nonce and the ciphertext — with the order's
//! number as associated data, so a value cannot be moved to another order. The console's
//! search needs equality only: an HMAC-SHA256 of the normalised phone or the trimmed name,
//! keyed with a key derived from the sealing key (so the hashes reveal nothing without it and
//! are recomputed when rows are re-sealed); a search computes the hash under every key of the
//! ring, so it keeps finding rows a rotation has not reached yet.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{Contact, StoreError};

/// A contact key's length: AES-256.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

/// One key of the ring, ready to use. Its bytes are not kept apart from the cipher.
struct RingKey {
    id: String,
    cipher: Aes256Gcm,
    /// Keys the search hashes.
    index: [u8; 32],
}

impl RingKey {
    fn new(key: &[u8; KEY_LEN]) -> RingKey {
        let derive = |label: &[u8]| -> [u8; 32] {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key");
            mac.update(label);
            mac.finalize().into_bytes().into()
        };
        RingKey {
            id: hex::encode(&derive(b"wxpay-checkout contact key id v1")[..4]),
            cipher: Aes256Gcm::new(&(*key).into()),
            index: derive(b"wxpay-checkout contact search v1"),
        }
    }

    fn hash(&self, field: &str, value: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.index).expect("HMAC takes any key");
        mac.update(field.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }
}

/// The keys contacts are sealed and opened with: the first seals, all open. Empty until the
/// store is given its keys (a store opened only for a job that never reads contacts).
#[derive(Default)]
pub struct ContactKeys {
    keys: Vec<RingKey>,
}

impl std::fmt::Debug for ContactKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("ContactKeys").field("ids", &ids).finish()
    }
}

/// What a sealed contact is stored as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub sealed: String,
    pub key_id: String,
    pub phone_hash: Option<String>,
    pub name_hash: Option<String>,
}

fn no_key() -> StoreError {
    StoreError::Corrupt("a contact needs a key and the store has none (CONTACT_KEY)".into())
}

impl ContactKeys {
    /// A ring of `keys`, the first current.
    pub fn new(keys: &[[u8; KEY_LEN]]) -> ContactKeys {
        let mut ring: Vec<RingKey> = Vec::with_capacity(keys.len());
        for key in keys {
            let key = RingKey::new(key);
            if !ring.iter().any(|k| k.id == key.id) {
                ring.push(key);
            }
        }
        ContactKeys { keys: ring }
    }

    /// A fresh random key.
    pub fn generate() -> [u8; KEY_LEN] {
        use rand::Rng;
        rand::rng().random()
    }

    /// A key as stored or configured: base64 of 32 bytes (padded or not).
    pub fn decode(text: &str) -> Option<[u8; KEY_LEN]> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .or_else(|_| B64.decode(text.trim()))
            .ok()?;
        bytes.try_into().ok()
    }

    pub fn encode(key: &[u8; KEY_LEN]) -> String {
        base64::engine::general_purpose::STANDARD.encode(key)
    }

    /// The current key's id, if there is a key.
    pub fn current_id(&self) -> Option<&str> {
        self.keys.first().map(|k| k.id.as_str())
    }

    /// The ids of every key of the ring, current first.
    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.id.clone()).collect()
    }

    /// Seals `contact` for order `no` under the current key, with its search hashes.
    pub fn seal(&self, no: &str, contact: &Contact) -> Result<Sealed, StoreError> {
        use rand::Rng;
        let key = self.keys.first().ok_or_else(no_key)?;
        let plain = serde_json::to_vec(contact)
            .map_err(|e| StoreError::Corrupt(format!("contact encoding: {e}")))?;
        let nonce: [u8; NONCE_LEN] = rand::rng().random();
        let mut out = nonce.to_vec();
        out.extend(
            key.cipher
                .encrypt(
                    &nonce.into(),
                    Payload {
                        msg: &plain,
                        aad: no.as_bytes(),
                    },
                )
                .map_err(|_| StoreError::Corrupt("contact sealing failed".into()))?,
        );
        Ok(Sealed {
            sealed: format!("{}.{}", key.id, B64.encode(out)),
            key_id: key.id.clone(),
            phone_hash: contact
                .phone
                .as_deref()
                .map(|p| key.hash("phone", p.trim())),
            name_hash: contact.name.as_deref().map(|n| key.hash("name", n.trim())),
        })
    }

    /// Opens a value sealed for order `no` under any key of the ring.
    pub fn open(&self, no: &str, sealed: &str) -> Result<Contact, StoreError> {
        let corrupt =
            |why: &str| StoreError::Corrupt(format!("order_contacts.sealed of {no}: {why}"));
        let (id, body) = sealed.split_once('.').ok_or_else(|| corrupt("no key id"))?;
        let key = self.keys.iter().find(|k| k.id == id).ok_or_else(|| {
            corrupt(&format!(
                "sealed under key {id}, which CONTACT_KEY does not hold (keep old keys after \
                 the current one until the re-encryption is done)"
            ))
        })?;
        let bytes = B64.decode(body).map_err(|_| corrupt("not base64"))?;
        if bytes.len() < NONCE_LEN {
            return Err(corrupt("too short"));
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at the nonce's length");
        let plain = key
            .cipher
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: ciphertext,
                    aad: no.as_bytes(),
                },
            )
            .map_err(|_| corrupt("does not open (another key, or altered)"))?;
        serde_json::from_slice(&plain).map_err(|_| corrupt("not a contact"))
    }

    /// The search hashes of a phone number (normalised as checkout stores it), under every key.
    pub fn phone_hashes(&self, phone: &str) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| k.hash("phone", phone.trim()))
            .collect()
    }

    /// The search hashes of a name, under every key.
    pub fn name_hashes(&self, name: &str) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| k.hash("name", name.trim()))
            .collect()
    }

    /// A keyed digest of `parts` under the current key (the cart key's contact part), so the
    /// digest says nothing of the contact without the key. `None` without a key.
    pub fn digest(&self, parts: &[&str]) -> Option<String> {
        let key = self.keys.first()?;
        Some(key.hash("cart", &parts.join("\u{1f}"))[..16].to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact() -> Contact {
        Contact {
            name: Some("王小明".into()),
            phone: Some("13800138000".into()),
            address: Some("杭州".into()),
            email: None,
            note: None,
        }
    }

    #[test]
    fn a_sealed_contact_opens_under_its_key_for_its_order_only() {
        let a = ContactKeys::generate();
        let b = ContactKeys::generate();
        let ring = ContactKeys::new(&[a]);
        let sealed = ring.seal("N1", &contact()).unwrap();
        assert!(!sealed.sealed.contains("13800138000"));
        assert_eq!(ring.open("N1", &sealed.sealed).unwrap(), contact());
        // Bound to its order.
        assert!(ring.open("N2", &sealed.sealed).is_err());
        // Another ring cannot open it; one holding the old key after the new one can.
        assert!(ContactKeys::new(&[b]).open("N1", &sealed.sealed).is_err());
        let rotated = ContactKeys::new(&[b, a]);
        assert_eq!(rotated.open("N1", &sealed.sealed).unwrap(), contact());
        // Searching under the rotated ring still finds the old hash, and new seals use b.
        assert!(rotated
            .phone_hashes("13800138000")
            .contains(sealed.phone_hash.as_ref().unwrap()));
        assert_ne!(
            rotated.seal("N1", &contact()).unwrap().key_id,
            sealed.key_id
        );
        // Two seals of one contact differ (a fresh nonce each time).
        assert_ne!(ring.seal("N1", &contact()).unwrap().sealed, sealed.sealed);
        // Altered ciphertext does not open.
        let mut altered = sealed.sealed.clone();
        let last = altered.pop().unwrap();
        altered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(ring.open("N1", &altered).is_err());
    }

    #[test]
    fn keys_are_base64_of_32_bytes() {
        let key = ContactKeys::generate();
        assert_eq!(ContactKeys::decode(&ContactKeys::encode(&key)), Some(key));
        assert_eq!(ContactKeys::decode("c2hvcnQ="), None);
        assert_eq!(ContactKeys::decode("not base64!"), None);
        assert!(format!("{:?}", ContactKeys::new(&[key])).starts_with("ContactKeys { ids"));
    }
}
