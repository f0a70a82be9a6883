//! The checks every Stratus token passes: Ed25519 (EdDSA) JWTs with a `kid`
//! in every header, one pinned algorithm, zero leeway, the `typ` and `aud` of
//! its kind, a known `kid` (nothing is ever fetched), and required
//! `exp nbf iat iss aud sub jti` — required as fields of the claims types,
//! since the JWT library itself insists only on `exp`.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::names::{AccountName, SubTenantId};

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

    /// The `aud` of this kind's tokens from `issuer`.
    pub fn audience(self, issuer: &str) -> String {
        match self {
            TokenKind::SubTenant => format!("{issuer}#sub-tenant"),
            TokenKind::Invocation => issuer.to_string(),
        }
    }
}

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

/// A token's claims, which all carry the registered ones.
pub trait Claims {
    /// The registered claims.
    fn registered(&self) -> &Registered;
}

impl Claims for SubTenantClaims {
    fn registered(&self) -> &Registered {
        &self.registered
    }
}

impl Claims for InvocationClaims {
    fn registered(&self) -> &Registered {
        &self.registered
    }
}

impl Registered {
    /// Claims issued at `iat` and valid from then until `exp`.
    pub fn issued(iss: &str, aud: String, sub: String, iat: u64, exp: u64, jti: String) -> Self {
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
    /// That account's id: an account that takes the name after a delete is
    /// another account, and the token does not act for it. Empty in tokens
    /// issued before the claim existed.
    #[serde(default)]
    pub account_id: String,
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
    /// The cluster node that minted it, which alone knows whether its
    /// invocation still runs; absent on a host of one node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Why a token was refused; the trigger answers 401 for all of them.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The header is not ours or not readable.
    #[error("not a Stratus token of this kind")]
    WrongKind,
    /// Signed by a key this host does not know (or no longer trusts).
    #[error("signed by an unknown key")]
    UnknownKey,
    /// Signature, time or claim checks failed.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Checks `token` as one of `kind` from `issuer`: its header, its signature
/// by the key `key_for` returns for its `kid` (`None`: unknown or no longer
/// trusted), its times and its claims. `audience` pins `aud`; `None` only
/// requires one. `skew_s` is how far ahead of this clock the signer's may
/// be: `nbf` and `iat` may be that much in the future (a token minted on
/// another node a moment ago), `exp` is never stretched.
pub fn verify<T: DeserializeOwned + Claims>(
    token: &str,
    kind: TokenKind,
    issuer: &str,
    audience: Option<&str>,
    skew_s: u64,
    key_for: impl FnOnce(&str) -> Option<DecodingKey>,
) -> Result<T, VerifyError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::WrongKind)?;
    if header.alg != Algorithm::EdDSA || header.typ.as_deref() != Some(kind.typ()) {
        return Err(VerifyError::WrongKind);
    }
    let key = header.kid.as_deref().and_then(key_for).ok_or(VerifyError::UnknownKey)?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.leeway = 0;
    // Checked below, with the skew that `exp` does not get.
    validation.validate_nbf = false;
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    validation.set_issuer(&[issuer]);
    match audience {
        Some(audience) => validation.set_audience(&[audience]),
        // `aud` stays required (above); only its value is not pinned.
        None => validation.validate_aud = false,
    }
    let claims = jsonwebtoken::decode::<T>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| VerifyError::Invalid(e.to_string()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let registered = claims.registered();
    if registered.nbf > now + skew_s {
        return Err(VerifyError::Invalid("the token is not valid yet (nbf)".into()));
    }
    if registered.iat > now + skew_s {
        return Err(VerifyError::Invalid("the token was issued in the future (iat)".into()));
    }
    Ok(claims)
}
