//! Signed tokens: Ed25519 (EdDSA) JWTs with a `kid` in every header.
//!
//! One signing key is created on first start and kept in the database; its
//! public half is served at `/.well-known/jwks.json`. Every token is checked
//! by [`Tokens::verify`]: one pinned algorithm, zero leeway, the `typ` and
//! `aud` of its kind, a known `kid` (nothing is ever fetched), and required
//! `exp iat iss aud sub jti` — required as fields of the claims types, since
//! the JWT library itself insists only on `exp`.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::names::{AccountName, SubTenantId};
use crate::registry::Registry;
use crate::registry::records::now;

/// The kinds of token the host issues. Each has its own `typ` and `aud`, so
/// one is never accepted in place of another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Acts for one account and one of its sub-tenants; can invoke, not administer.
    SubTenant,
    /// Proves one running invocation; dies when it ends.
    Invocation,
}

impl TokenKind {
    /// The JOSE `typ` header.
    pub fn typ(self) -> &'static str {
        match self {
            TokenKind::SubTenant => "stratus-sub-tenant+jwt",
            TokenKind::Invocation => "stratus-invocation+jwt",
        }
    }

    fn audience(self, issuer: &str) -> String {
        match self {
            TokenKind::SubTenant => format!("{issuer}#sub-tenant"),
            TokenKind::Invocation => issuer.to_string(),
        }
    }
}

/// The longest a sub-tenant token may live.
pub const MAX_SUB_TENANT_TTL_S: u64 = 24 * 3600;

/// The registered claims every Stratus token carries. Each is a plain field,
/// so a token missing one fails to deserialize: the JWT library itself only
/// insists on `exp`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registered {
    /// The host.
    pub iss: String,
    /// Who the token is for: the kind's own audience, or an upstream's.
    pub aud: String,
    /// Whom it speaks for.
    pub sub: String,
    /// Issued at.
    pub iat: u64,
    /// Not before.
    pub nbf: u64,
    /// Expires at.
    pub exp: u64,
    /// Token id (for invocation tokens, the invocation id).
    pub jti: String,
}

impl Registered {
    /// Claims issued at `iat` and valid from then until `exp`.
    fn issued(iss: &str, aud: String, sub: String, iat: u64, exp: u64, jti: String) -> Self {
        Self {
            iss: iss.to_string(),
            aud,
            sub,
            iat,
            nbf: iat,
            exp,
            jti,
        }
    }
}

/// Claims of a sub-tenant token: `aud` `{issuer}#sub-tenant`, `sub`
/// `{account}/{sub_tenant}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubTenantClaims {
    /// The registered claims.
    #[serde(flatten)]
    pub registered: Registered,
    /// The account it acts for.
    pub account: AccountName,
    /// The sub-tenant it acts for.
    pub sub_tenant: SubTenantId,
    /// The account key that issued it (`operator` for the operator): revoking
    /// that key kills the token.
    pub key_id: String,
}

/// Claims of an invocation token (SPEC §8): `aud` this host or the upstream
/// of `token-for`, `sub` `{caller}/{sub-tenant or -}`, `exp` the deadline,
/// `jti` the invocation id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvocationClaims {
    /// The registered claims.
    #[serde(flatten)]
    pub registered: Registered,
    /// The function's owner.
    pub owner: String,
    /// The calling account or `anonymous`.
    pub caller: String,
    /// The sub-tenant.
    pub sub_tenant: Option<String>,
    /// The function.
    #[serde(rename = "fn")]
    pub function: String,
    /// The version.
    pub ver: u32,
    /// The alias called through.
    pub alias: Option<String>,
    /// Space-separated scopes.
    pub scope: String,
}

/// A signing key as stored.
#[derive(Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    /// The Ed25519 seed, hex.
    seed: String,
    created_at: u64,
}

struct KeyPair {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Base64url public key, for the JWKS.
    x: String,
}

/// Why a token was refused; the trigger answers 401 for all of them.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The header is not ours or not readable.
    #[error("not a Stratus token of this kind")]
    WrongKind,
    /// Signed by a key this host does not know.
    #[error("signed by an unknown key")]
    UnknownKey,
    /// Signature, time or claim checks failed.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// The signing keys and the verified-token cache.
pub struct Tokens {
    issuer: String,
    current: KeyPair,
    verify_keys: HashMap<String, DecodingKey>,
    /// Verified tokens by SHA-256, until they expire: verifying EdDSA costs
    /// far more than a lookup. Revocation is checked by the caller on every
    /// use, against the registry snapshot.
    cache: Mutex<HashMap<[u8; 32], (u64, SubTenantClaims)>>,
}

const CACHE_LIMIT: usize = 100_000;

fn key_pair(stored: &StoredKey) -> anyhow::Result<KeyPair> {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(&stored.seed, &mut seed)?;
    let signing = SigningKey::from_bytes(&seed);
    let der = signing
        .to_pkcs8_der()
        .map_err(|e| anyhow::anyhow!("cannot encode the signing key: {e}"))?;
    let public = signing.verifying_key().to_bytes();
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public);
    Ok(KeyPair {
        kid: stored.kid.clone(),
        encoding: EncodingKey::from_ed_der(der.as_bytes()),
        decoding: DecodingKey::from_ed_components(&x)?,
        x,
    })
}

impl Tokens {
    /// Loads the signing key from the registry, creating it on first start.
    pub async fn load_or_create(registry: &Registry, issuer: &str) -> anyhow::Result<Self> {
        let stored: Vec<StoredKey> = match registry.meta("signing_keys")? {
            Some(bytes) => serde_json::from_slice(&bytes)?,
            None => {
                let mut seed = [0u8; 32];
                rand::rng().fill_bytes(&mut seed);
                let mut kid = [0u8; 8];
                rand::rng().fill_bytes(&mut kid);
                let keys = vec![StoredKey {
                    kid: hex::encode(kid),
                    seed: hex::encode(seed),
                    created_at: now(),
                }];
                registry.set_meta("signing_keys", &serde_json::to_vec(&keys)?).await?;
                keys
            }
        };
        let mut pairs = stored.iter().map(key_pair).collect::<anyhow::Result<Vec<_>>>()?;
        let current = pairs
            .pop()
            .ok_or_else(|| anyhow::anyhow!("the database holds no signing key"))?;
        let mut verify_keys: HashMap<String, DecodingKey> =
            pairs.into_iter().map(|pair| (pair.kid, pair.decoding)).collect();
        verify_keys.insert(current.kid.clone(), current.decoding.clone());
        Ok(Self {
            issuer: issuer.to_string(),
            current,
            verify_keys,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The public keys, as a JWK set.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [{
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
            "kid": self.current.kid, "x": self.current.x,
        }]})
    }

    fn sign<T: Serialize>(&self, kind: TokenKind, claims: &T) -> Result<String, ApiError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(kind.typ().to_string());
        header.kid = Some(self.current.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.current.encoding).map_err(ApiError::internal)
    }

    /// Issues a sub-tenant token; returns it with its expiry (Unix seconds).
    pub fn issue_sub_tenant(
        &self,
        account: &AccountName,
        sub_tenant: &SubTenantId,
        key_id: &str,
        ttl_s: u64,
    ) -> Result<(String, u64), ApiError> {
        let iat = now();
        let mut jti = [0u8; 16];
        rand::rng().fill_bytes(&mut jti);
        let claims = SubTenantClaims {
            registered: Registered::issued(
                &self.issuer,
                TokenKind::SubTenant.audience(&self.issuer),
                format!("{account}/{sub_tenant}"),
                iat,
                iat + ttl_s,
                hex::encode(jti),
            ),
            account: account.clone(),
            sub_tenant: sub_tenant.clone(),
            key_id: key_id.to_string(),
        };
        Ok((self.sign(TokenKind::SubTenant, &claims)?, claims.registered.exp))
    }

    /// Whether `token` claims to be a Stratus token (by its `typ` header),
    /// so a function's own bearer tokens are told apart without verifying.
    pub fn is_ours(token: &str) -> bool {
        jsonwebtoken::decode_header(token)
            .ok()
            .and_then(|header| header.typ)
            .is_some_and(|typ| typ.starts_with("stratus-"))
    }

    /// The kind a token claims to be, from its unverified `typ` header.
    pub fn kind_of(token: &str) -> Option<TokenKind> {
        match jsonwebtoken::decode_header(token).ok()?.typ.as_deref()? {
            "stratus-sub-tenant+jwt" => Some(TokenKind::SubTenant),
            "stratus-invocation+jwt" => Some(TokenKind::Invocation),
            _ => None,
        }
    }

    /// The one verification path for every kind of token. The audience is
    /// the kind's own; `any_audience` accepts invocation tokens minted for an
    /// upstream too (introspection answers for those).
    pub fn verify<T: DeserializeOwned>(&self, token: &str, kind: TokenKind) -> Result<T, VerifyError> {
        self.verify_with(token, kind, false)
    }

    /// Verifies an invocation token whatever its audience.
    pub fn verify_any_audience<T: DeserializeOwned>(&self, token: &str, kind: TokenKind) -> Result<T, VerifyError> {
        self.verify_with(token, kind, true)
    }

    fn verify_with<T: DeserializeOwned>(
        &self,
        token: &str,
        kind: TokenKind,
        any_audience: bool,
    ) -> Result<T, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::WrongKind)?;
        if header.alg != Algorithm::EdDSA || header.typ.as_deref() != Some(kind.typ()) {
            return Err(VerifyError::WrongKind);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.verify_keys.get(kid))
            .ok_or(VerifyError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.set_issuer(&[&self.issuer]);
        if any_audience {
            // `aud` stays required (above); only its value is not pinned.
            validation.validate_aud = false;
        } else {
            validation.set_audience(&[kind.audience(&self.issuer)]);
        }
        jsonwebtoken::decode::<T>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|e| VerifyError::Invalid(e.to_string()))
    }

    /// Verifies a sub-tenant token, once per token until it expires.
    pub fn verify_sub_tenant(&self, token: &str) -> Result<SubTenantClaims, VerifyError> {
        let hash = super::keys::hash(token);
        let time = now();
        let mut cache = match self.cache.lock() {
            Ok(cache) => cache,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((exp, claims)) = cache.get(&hash) {
            if *exp > time {
                return Ok(claims.clone());
            }
            cache.remove(&hash);
            return Err(VerifyError::Invalid("the token has expired".into()));
        }
        drop(cache);
        let claims: SubTenantClaims = self.verify(token, TokenKind::SubTenant)?;
        if claims.registered.sub != format!("{}/{}", claims.account, claims.sub_tenant) {
            return Err(VerifyError::Invalid(
                "sub does not match the token's account and sub-tenant".into(),
            ));
        }
        let mut cache = match self.cache.lock() {
            Ok(cache) => cache,
            Err(poisoned) => poisoned.into_inner(),
        };
        if cache.len() >= CACHE_LIMIT {
            cache.retain(|_, (exp, _)| *exp > time);
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
        }
        cache.insert(hash, (claims.registered.exp, claims.clone()));
        Ok(claims)
    }
}

impl crate::runtime::credentials::Minter for Tokens {
    fn mint(
        &self,
        invocation: &crate::runtime::credentials::Invocation,
        audience: Option<&str>,
    ) -> anyhow::Result<String> {
        let iat = now();
        let sub = format!(
            "{}/{}",
            invocation.caller,
            invocation.sub_tenant.as_deref().unwrap_or("-")
        );
        let claims = InvocationClaims {
            registered: Registered::issued(
                &self.issuer,
                audience.map_or_else(|| TokenKind::Invocation.audience(&self.issuer), str::to_string),
                sub,
                iat,
                invocation.expires_at,
                invocation.id.clone(),
            ),
            owner: invocation.owner.clone(),
            caller: invocation.caller.clone(),
            sub_tenant: invocation.sub_tenant.clone(),
            function: invocation.function.clone(),
            ver: invocation.version,
            alias: invocation.alias.clone(),
            scope: invocation.scopes.join(" "),
        };
        self.sign(TokenKind::Invocation, &claims)
            .map_err(|e| anyhow::anyhow!("{e:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    async fn tokens() -> (tempfile::TempDir, Tokens) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let registry = Registry::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let tokens = Tokens::load_or_create(&registry, "stratus")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (dir, tokens)
    }

    fn claims(now: u64) -> serde_json::Value {
        json!({
            "iss": "stratus", "aud": "stratus#sub-tenant", "sub": "acme/bob", "iat": now, "nbf": now,
            "exp": now + 60, "jti": "j1", "account": "acme", "sub_tenant": "bob", "key_id": "k1",
        })
    }

    fn refused(tokens: &Tokens, kind: TokenKind, payload: &serde_json::Value) -> bool {
        let token = tokens.sign(kind, payload).unwrap_or_else(|e| panic!("{e}"));
        tokens.verify::<SubTenantClaims>(&token, TokenKind::SubTenant).is_err()
    }

    #[tokio::test]
    async fn verification_insists_on_every_claim() {
        let (_dir, tokens) = tokens().await;
        let now = now();
        assert!(
            !refused(&tokens, TokenKind::SubTenant, &claims(now)),
            "the well-formed token passes"
        );
        for field in ["exp", "iat", "iss", "aud", "sub", "jti", "nbf"] {
            let mut payload = claims(now);
            payload.as_object_mut().map(|o| o.remove(field));
            assert!(
                refused(&tokens, TokenKind::SubTenant, &payload),
                "missing {field} accepted"
            );
        }
        let mut text_exp = claims(now);
        text_exp["exp"] = json!((now + 60).to_string());
        assert!(
            refused(&tokens, TokenKind::SubTenant, &text_exp),
            "exp as a string accepted"
        );
        let mut expired = claims(now);
        expired["exp"] = json!(now - 1);
        assert!(
            refused(&tokens, TokenKind::SubTenant, &expired),
            "expired token accepted: leeway must be 0"
        );
        let mut early = claims(now);
        early["nbf"] = json!(now + 30);
        assert!(refused(&tokens, TokenKind::SubTenant, &early), "token used before nbf");
        let mut audience = claims(now);
        audience["aud"] = json!("stratus");
        assert!(
            refused(&tokens, TokenKind::SubTenant, &audience),
            "an invocation audience accepted"
        );
        let mut issuer = claims(now);
        issuer["iss"] = json!("elsewhere");
        assert!(
            refused(&tokens, TokenKind::SubTenant, &issuer),
            "a foreign issuer accepted"
        );
        // Same claims, but signed as the other kind: its typ gives it away.
        assert!(
            refused(&tokens, TokenKind::Invocation, &claims(now)),
            "an invocation-typed token accepted"
        );
    }
}
