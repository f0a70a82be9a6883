//! Account and operator keys.

use std::fmt;

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::names::AccountName;

/// A key's secret text. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps secret text.
    pub fn new(text: String) -> Self {
        Self(text)
    }

    /// The text, for showing once to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// SHA-256 of the text.
    pub fn hash(&self) -> [u8; 32] {
        hash(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// SHA-256 of a presented credential.
pub fn hash(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// A freshly generated account key.
#[derive(Debug, Clone)]
pub struct AccountKey {
    /// Public id, embedded in the key text.
    pub id: String,
    /// The whole key text: `sk_{id}_{secret}`.
    pub secret: Secret,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Generates a new account key: 256 random bits behind a short public id.
pub fn generate(_account: &AccountName) -> AccountKey {
    let id = random_hex(6);
    let secret = Secret::new(format!("sk_{id}_{}", random_hex(32)));
    AccountKey { id, secret }
}

/// Generates an operator key.
pub fn generate_operator() -> Secret {
    Secret::new(format!("op_{}", random_hex(32)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_redacted() {
        let account = AccountName::parse("acme").unwrap_or_else(|e| panic!("{e}"));
        let a = generate(&account);
        let b = generate(&account);
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.expose().starts_with(&format!("sk_{}_", a.id)));
        assert!(!format!("{a:?}").contains(a.secret.expose()));
    }
}
