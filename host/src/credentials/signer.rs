//! The JWT library's RustCrypto provider, with Ed25519 keys parsed once.
//!
//! The library hands its factories the key as bytes on every token, and the
//! stock ones parse it again: for signing that derives the public key (a full
//! scalar multiplication), half the cost of minting an invocation token; for
//! verifying it decompresses the public point. Here the ring's keys are
//! registered parsed when they are loaded and the factories look them up by
//! their bytes; anything not registered falls through to the stock provider.

use std::sync::{Once, RwLock};

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use jsonwebtoken::DecodingKey;
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils, rust_crypto};
use jsonwebtoken::{Algorithm, EncodingKey};

/// Parsed signing keys by their DER encoding. A host holds a handful (one per
/// rotation it has seen), so a linear scan beats hashing.
static KEYS: RwLock<Vec<(Vec<u8>, SigningKey)>> = RwLock::new(Vec::new());
/// Parsed public keys by their raw 32 bytes.
static PUBLIC: RwLock<Vec<VerifyingKey>> = RwLock::new(Vec::new());

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: STOCK.rsa_pub_components_from_private_key,
        rsa_pub_components_from_public_key: STOCK.rsa_pub_components_from_public_key,
        ec_pub_components_from_private_key: STOCK.ec_pub_components_from_private_key,
        ed_pub_components_from_private_key: STOCK.ed_pub_components_from_private_key,
        compute_digest: STOCK.compute_digest,
    },
};

const STOCK: &KeyUtils = &rust_crypto::DEFAULT_PROVIDER.key_utils;

/// Installs the provider (once per process) and registers `key` under `der`.
///
/// If something else installed a provider first, tokens are still signed
/// correctly, only without the saving.
pub fn register(der: &[u8], key: &SigningKey) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        if PROVIDER.install_default().is_err() {
            tracing::debug!("a JWT crypto provider was installed elsewhere; signing keys are parsed per token");
        }
    });
    let mut keys = KEYS.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !keys.iter().any(|(known, _)| known == der) {
        keys.push((der.to_vec(), key.clone()));
        PUBLIC
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(key.verifying_key());
    }
}

struct Ed25519(SigningKey);

impl jsonwebtoken::signature::Signer<Vec<u8>> for Ed25519 {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, jsonwebtoken::signature::Error> {
        Ok(ed25519_dalek::Signer::sign(&self.0, msg).to_bytes().to_vec())
    }
}

impl JwtSigner for Ed25519 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

fn new_signer(algorithm: &Algorithm, key: &EncodingKey) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    if *algorithm == Algorithm::EdDSA {
        let keys = KEYS.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, parsed)) = keys.iter().find(|(der, _)| der == key.as_bytes()) {
            return Ok(Box::new(Ed25519(parsed.clone())));
        }
    }
    (rust_crypto::DEFAULT_PROVIDER.signer_factory)(algorithm, key)
}

struct Ed25519Public(VerifyingKey);

impl jsonwebtoken::signature::Verifier<Vec<u8>> for Ed25519Public {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), jsonwebtoken::signature::Error> {
        self.0.verify_strict(msg, &Signature::from_slice(signature)?)
    }
}

impl JwtVerifier for Ed25519Public {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

fn new_verifier(algorithm: &Algorithm, key: &DecodingKey) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    if *algorithm == Algorithm::EdDSA
        && let Ok(bytes) = key.try_get_as_bytes()
    {
        let public = PUBLIC.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(parsed) = public.iter().find(|parsed| parsed.as_bytes().as_slice() == bytes) {
            return Ok(Box::new(Ed25519Public(*parsed)));
        }
    }
    (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(algorithm, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use jsonwebtoken::{Header, Validation};

    #[test]
    fn registered_keys_sign_what_the_stock_verifier_accepts() -> Result<(), Box<dyn std::error::Error>> {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let der = key.to_pkcs8_der()?;
        register(der.as_bytes(), &key);
        let encoding = EncodingKey::from_ed_der(der.as_bytes());
        let claims = serde_json::json!({"sub": "s", "exp": u64::MAX / 2});
        let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &encoding)?;
        let decoding = DecodingKey::from_ed_der(key.verifying_key().as_bytes());
        let validation = Validation::new(Algorithm::EdDSA);
        let back: serde_json::Value = jsonwebtoken::decode(&token, &decoding, &validation)?.claims;
        assert_eq!(back, claims);
        // Ed25519 is deterministic: the stock signer gives the same signature.
        let stock = (rust_crypto::DEFAULT_PROVIDER.signer_factory)(&Algorithm::EdDSA, &encoding)?;
        let ours = new_signer(&Algorithm::EdDSA, &encoding)?;
        assert_eq!(stock.try_sign(b"m")?, ours.try_sign(b"m")?);
        // And a token with its signature changed is refused.
        let mut forged = token.into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged)?;
        assert!(jsonwebtoken::decode::<serde_json::Value>(&forged, &decoding, &validation).is_err());
        Ok(())
    }
}
