//! Username and password authentication for registered clients: the Username names the client
//! (its authentication name, case-insensitively) and the password is checked against the
//! client's Argon2 `passwordHash`.
//!
//! Invariants:
//! - Passwords are never stored or logged; only PHC strings are held.
//! - Argon2 is slow on purpose, so verification runs on the blocking pool, never on a runtime
//!   worker.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use super::{Outcome, allow_registered, deny, disabled};
use crate::access::model::{ClientState, Resources};
use crate::hooks::AuthRequest;
use crate::mqtt::ReasonCode;

/// Hashes `password` with Argon2id (default parameters, random salt) into a PHC string for a
/// client's `passwordHash`.
pub fn hash_password(password: &str) -> String {
    match Argon2::default().hash_password(password.as_bytes()) {
        Ok(hash) => hash.to_string(),
        // Only a failing OS random source gets here; there is no hash to give without a salt.
        Err(error) => panic!("cannot hash a password: {error}"),
    }
}

/// Verifies `password` against a PHC string. Blocking (tens of milliseconds).
pub fn verify_password(password: &[u8], hash: &str) -> bool {
    Argon2::default().verify_password(password, hash).is_ok()
}

/// Decides when the Username names a registered client with a password hash.
pub(crate) async fn authenticate(resources: &Resources, request: &AuthRequest<'_>) -> Outcome {
    let Some(username) = request.username else {
        return Outcome::NotApplicable("no username".into());
    };
    let Some((name, client)) = resources.client_by_authentication_name(username) else {
        return Outcome::NotApplicable(format!(
            "no registered client has the authentication name {username:?}"
        ));
    };
    let Some(hash) = client.password_hash.clone() else {
        return Outcome::NotApplicable(format!("client {name:?} has no password"));
    };
    if client.state == ClientState::Disabled {
        return Outcome::Decided(disabled(name));
    }
    let Some(password) = request.password.cloned() else {
        return Outcome::Decided(deny(
            ReasonCode::BadUserNameOrPassword,
            format!("client {name:?} needs a password"),
        ));
    };
    let verified = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    if verified {
        Outcome::Decided(allow_registered(request, name, client, None))
    } else {
        Outcome::Decided(deny(
            ReasonCode::BadUserNameOrPassword,
            format!("wrong password for client {name:?}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_look_like_phc() {
        let hash = hash_password("s3cret");
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(verify_password(b"s3cret", &hash));
        assert!(!verify_password(b"S3cret", &hash));
        assert!(!verify_password(b"s3cret", "not a hash"));
        assert_ne!(hash, hash_password("s3cret"), "salted");
    }
}
