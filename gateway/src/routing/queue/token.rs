//! Lock tokens of pull delivery in cluster mode: which node holds the lock, and which delivery
//! of which event it is for, signed with the key every node shares.
//!
//! A token is `base64url(postcard(Lock) ‖ HMAC-SHA256(key, postcard(Lock)))`. The signature
//! lets any node route a token to its owner without trusting the client; the owner then looks
//! the token up in its lock table, so a token of an earlier delivery of the same event (a
//! different delivery count, or issue time) never settles the current one. A raw JetStream
//! reply subject could not be a token: JetStream acknowledges by stream sequence, whatever
//! delivery the reply subject came from.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

/// The length of an HMAC-SHA256 tag.
const TAG: usize = 32;

/// What a lock token says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lock {
    /// The node that holds the lock.
    pub node: String,
    /// The subscription's key, `topic/name`.
    pub subscription: String,
    /// The event's sequence number in the cluster's routing log.
    pub seq: u64,
    /// The delivery the lock is for (the log's delivery count).
    pub delivered: u32,
    /// When the lock was issued, in milliseconds since the epoch.
    pub issued_ms: u64,
}

/// The token for `lock`.
pub fn issue(key: &hmac::Key, lock: &Lock) -> String {
    // Strings and integers always serialize; an empty body would only make a token that
    // fails its check.
    let mut bytes = postcard::to_allocvec(lock).unwrap_or_default();
    let tag = hmac::sign(key, &bytes);
    bytes.extend_from_slice(tag.as_ref());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What `token` says, when it was issued with `key` and is intact.
pub fn check(key: &hmac::Key, token: &str) -> Option<Lock> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let body_len = bytes.len().checked_sub(TAG).filter(|n| *n > 0)?;
    let (body, tag) = bytes.split_at(body_len);
    hmac::verify(key, body, tag).ok()?;
    postcard::from_bytes(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &[u8]) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, secret)
    }

    fn lock() -> Lock {
        Lock {
            node: "node-a".into(),
            subscription: "orders/pull".into(),
            seq: 42,
            delivered: 3,
            issued_ms: 1_700_000_000_123,
        }
    }

    #[test]
    fn a_token_reads_back_with_the_key_it_was_issued_with() {
        let token = issue(&key(b"secret one"), &lock());
        assert_eq!(check(&key(b"secret one"), &token), Some(lock()));
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    #[test]
    fn another_key_or_any_changed_byte_fails_the_check() {
        let token = issue(&key(b"secret one"), &lock());
        assert_eq!(check(&key(b"secret two"), &token), None);
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for i in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[i] ^= 1;
            assert_eq!(check(&key(b"secret one"), &URL_SAFE_NO_PAD.encode(changed)), None, "{i}");
        }
        for bad in ["", "not a token", "AAAA", &token[..token.len() - 1]] {
            assert_eq!(check(&key(b"secret one"), bad), None, "{bad:?}");
        }
    }

    #[test]
    fn each_delivery_of_an_event_has_its_own_token() {
        let key = key(b"k");
        let again = Lock { delivered: 4, ..lock() };
        assert_ne!(issue(&key, &lock()), issue(&key, &again));
    }
}
