//! Signed tokens: Ed25519 (EdDSA) JWTs with a `kid` in every header.
//!
//! One signing key is created on first start and kept in the database; its
//! public half is served at `/.well-known/jwks.json`. Every token is checked
//! by [`Tokens::verify`]: one pinned algorithm, zero leeway, the `typ` and
//! `aud` of its kind, a known `kid` (nothing is ever fetched), and required
//! `exp iat iss aud sub jti` — required as fields of the claims types, since
//! the JWT library itself insists only on `exp`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use base64::Engine as _;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::clock::now;
use crate::error::ApiError;
use crate::names::{AccountName, SubTenantId};
pub use stratus_wire::tokens::{Claims, InvocationClaims, Registered, SubTenantClaims, TokenKind, VerifyError};

/// The longest a sub-tenant token may live.
pub const MAX_SUB_TENANT_TTL_S: u64 = 24 * 3600;

/// A signing key as stored.
#[derive(Clone, Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    /// The Ed25519 seed, hex.
    seed: String,
    created_at: u64,
    /// No token signed with this key expires later than this (Unix seconds).
    /// Raised, and stored, before a token that would outlive it is handed out.
    #[serde(default)]
    signed_until: u64,
    /// Set when a newer key took over: from then on the key only verifies,
    /// until `signed_until` has passed.
    #[serde(default)]
    retired_at: Option<u64>,
}

impl StoredKey {
    fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let mut kid = [0u8; 8];
        rand::rng().fill_bytes(&mut kid);
        Self {
            kid: hex::encode(kid),
            seed: hex::encode(seed),
            created_at: now(),
            signed_until: 0,
            retired_at: None,
        }
    }
}

struct KeyPair {
    stored: StoredKey,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Base64url public key, for the JWKS.
    x: String,
    /// [`StoredKey::signed_until`], read on every signature.
    signed_until: AtomicU64,
}

impl KeyPair {
    fn new(stored: StoredKey) -> anyhow::Result<Self> {
        let mut seed = [0u8; 32];
        hex::decode_to_slice(&stored.seed, &mut seed)?;
        let signing = SigningKey::from_bytes(&seed);
        let der = signing
            .to_pkcs8_der()
            .map_err(|e| anyhow::anyhow!("cannot encode the signing key: {e}"))?;
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes());
        super::signer::register(der.as_bytes(), &signing);
        Ok(Self {
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            decoding: DecodingKey::from_ed_components(&x)?,
            x,
            signed_until: AtomicU64::new(stored.signed_until),
            stored,
        })
    }

    /// Whether tokens signed with this key may still be presented at `time`.
    fn verifies_at(&self, time: u64) -> bool {
        self.stored.retired_at.is_none() || self.signed_until.load(Ordering::Acquire) >= time
    }

    fn to_stored(&self) -> StoredKey {
        StoredKey {
            signed_until: self.signed_until.load(Ordering::Acquire),
            ..self.stored.clone()
        }
    }
}

/// Oldest first; the last key signs, every key verifies until the tokens it
/// signed have expired. Never empty.
struct KeyRing(Vec<Arc<KeyPair>>);

impl KeyRing {
    fn current(&self) -> &Arc<KeyPair> {
        &self.0[self.0.len() - 1]
    }
}

/// How far past a token's `exp` the stored mark of an invocation-token
/// signing key is moved, so busy hosts write it about once a minute rather
/// than on every token. Sub-tenant tokens, issued through the admin API,
/// move it exactly.
const INVOCATION_LEASE_S: u64 = 60;

/// Where the signing keys are kept: a durable value of the host's own, by
/// key, that every node of a cluster shares. The registry is one; the seam
/// keeps credentials from depending on it.
#[async_trait::async_trait]
pub trait KeyStore: Send + Sync {
    /// The value at `key` and the revision that wrote it, if any.
    fn meta(&self, key: &str) -> Option<(Vec<u8>, u64)>;
    /// The revision that last wrote `key` (0: none), cheaply: read on
    /// every use of the keys, to notice another node's change.
    fn meta_revision(&self, key: &str) -> u64;
    /// Sets `key` durably if it was last written at `expected` (0: if it is
    /// absent); false, changing nothing, if someone wrote it since.
    async fn set_meta_if(&self, key: &str, value: &[u8], expected: u64) -> anyhow::Result<bool>;
}

/// The signing keys and the verified-token cache.
pub struct Tokens {
    issuer: String,
    registry: Arc<dyn KeyStore>,
    ring: RwLock<KeyRing>,
    /// The revision of the stored keys the ring holds: when the store's
    /// differs, another node (or this one) changed them, and the ring is
    /// read again.
    revision: AtomicU64,
    /// Seconds ahead of this clock another node's may be (`nbf`, `iat`).
    skew_s: u64,
    /// The node id invocation tokens name, on a cluster.
    node: Option<String>,
    /// Serialises writes of the stored keys (lease extensions, rotation).
    writer: tokio::sync::Mutex<()>,
    /// Verified tokens by SHA-256, until they expire: verifying EdDSA costs
    /// far more than a lookup. Revocation is checked by the caller on every
    /// use, against the registry snapshot.
    cache: Mutex<HashMap<[u8; 32], (u64, SubTenantClaims)>>,
}

const CACHE_LIMIT: usize = 100_000;

fn encode<T: Serialize>(key: &KeyPair, kind: TokenKind, claims: &T) -> Result<String, ApiError> {
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some(kind.typ().to_string());
    header.kid = Some(key.stored.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).map_err(ApiError::internal)
}
const META_KEY: &str = "signing_keys";

/// The ring of the stored keys `bytes`.
fn ring_of(bytes: &[u8]) -> anyhow::Result<KeyRing> {
    let stored: Vec<StoredKey> = serde_json::from_slice(bytes)?;
    if stored.is_empty() {
        anyhow::bail!("the database holds no signing key");
    }
    let keys = stored
        .into_iter()
        .map(|key| KeyPair::new(key).map(Arc::new))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(KeyRing(keys))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Tokens {
    /// Loads the signing keys from `registry`, creating one on first start
    /// (the first node of a cluster; the others load what it stored).
    pub async fn load_or_create<S: KeyStore + 'static>(registry: &Arc<S>, issuer: &str) -> anyhow::Result<Self> {
        if registry.meta(META_KEY).is_none() {
            let keys = vec![StoredKey::generate()];
            // Another node starting at once may store its own first: then
            // that one is the cluster's.
            registry.set_meta_if(META_KEY, &serde_json::to_vec(&keys)?, 0).await?;
        }
        let (bytes, revision) = registry
            .meta(META_KEY)
            .ok_or_else(|| anyhow::anyhow!("the database holds no signing key"))?;
        Ok(Self {
            issuer: issuer.to_string(),
            registry: registry.clone() as Arc<dyn KeyStore>,
            ring: RwLock::new(ring_of(&bytes)?),
            revision: AtomicU64::new(revision),
            skew_s: 1,
            node: None,
            writer: tokio::sync::Mutex::new(()),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Allows `skew` between the clocks of the nodes that mint and check
    /// tokens, on `nbf` and `iat` only (rounded up to whole seconds, the
    /// claims' unit).
    pub fn with_clock_skew(mut self, skew: std::time::Duration) -> Self {
        self.skew_s = skew.as_secs() + u64::from(skew.subsec_nanos() > 0);
        self
    }

    /// Names `node` in every invocation token (`node` claim), so that any
    /// node can ask the one that knows whether its invocation runs.
    pub fn with_node(mut self, node: Option<String>) -> Self {
        self.node = node;
        self
    }

    /// The node invocation tokens name, if any.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// The keys as stored now, when they differ from the ring's.
    fn follow(&self) {
        if self.registry.meta_revision(META_KEY) == self.revision.load(Ordering::Acquire) {
            return;
        }
        let Some((bytes, revision)) = self.registry.meta(META_KEY) else {
            return;
        };
        match ring_of(&bytes) {
            Ok(ring) => {
                *self.ring.write().unwrap_or_else(std::sync::PoisonError::into_inner) = ring;
                self.revision.store(revision, Ordering::Release);
            }
            Err(err) => tracing::error!(%err, "the stored signing keys cannot be read; keeping the ones loaded"),
        }
    }

    fn ring(&self) -> std::sync::RwLockReadGuard<'_, KeyRing> {
        self.follow();
        self.ring.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The public keys that still verify, as a JWK set.
    pub fn jwks(&self) -> serde_json::Value {
        let time = now();
        let keys: Vec<_> = self
            .ring()
            .0
            .iter()
            .filter(|key| key.verifies_at(time))
            .map(|key| {
                serde_json::json!({
                    "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                    "kid": key.stored.kid, "x": key.x,
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Stores the keys as they are now, dropping retired keys that no longer
    /// verify, unless someone changed the stored keys since the ring was
    /// read; then the ring holds what is stored (whoever wrote), and false
    /// says the caller's change is to be made again. Callers hold `writer`.
    async fn store(&self, keys: &[Arc<KeyPair>]) -> Result<bool, ApiError> {
        let time = now();
        let stored: Vec<StoredKey> = keys
            .iter()
            .filter(|key| key.verifies_at(time))
            .map(|key| key.to_stored())
            .collect();
        let bytes = serde_json::to_vec(&stored).map_err(ApiError::internal)?;
        let expected = self.revision.load(Ordering::Acquire);
        let written = self
            .registry
            .set_meta_if(META_KEY, &bytes, expected)
            .await
            .map_err(ApiError::Internal)?;
        // Either way the store now holds the truth: read it back.
        self.follow();
        Ok(written)
    }

    /// Signs with the current key, first recording that it signs until at
    /// least `exp` (plus `lease`), so rotation knows how long to keep it.
    async fn sign<T: Serialize>(&self, kind: TokenKind, claims: &T, exp: u64, lease: u64) -> Result<String, ApiError> {
        loop {
            {
                let ring = self.ring();
                let key = ring.current();
                if key.signed_until.load(Ordering::Acquire) >= exp {
                    return encode(key, kind, claims);
                }
            }
            let _writer = self.writer.lock().await;
            let keys = self.ring().0.clone();
            let current = &keys[keys.len() - 1];
            if current.signed_until.load(Ordering::Acquire) < exp {
                // Raised on a copy: the ring shows it only once stored.
                let mut raised = current.to_stored();
                raised.signed_until = exp + lease;
                let mut next = keys.clone();
                next.pop();
                next.push(Arc::new(KeyPair::new(raised).map_err(ApiError::internal)?));
                // Lost to another node's write: look again at what it stored.
                self.store(&next).await?;
            }
        }
    }

    /// Adds a signing key; the previous one keeps verifying (and stays in the
    /// JWKS) until the latest `exp` it signed has passed. Returns the new `kid`.
    pub async fn rotate(&self) -> Result<String, ApiError> {
        let _writer = self.writer.lock().await;
        for _ in 0..16 {
            let mut keys = self.ring().0.clone();
            let time = now();
            let retiring = keys
                .pop()
                .ok_or_else(|| ApiError::internal(anyhow::anyhow!("no signing key")))?;
            let mut retired = retiring.to_stored();
            retired.retired_at = Some(time);
            keys.push(Arc::new(KeyPair::new(retired).map_err(ApiError::internal)?));
            let fresh = KeyPair::new(StoredKey::generate()).map_err(ApiError::internal)?;
            let kid = fresh.stored.kid.clone();
            keys.push(Arc::new(fresh));
            keys.retain(|key| key.verifies_at(time));
            if self.store(&keys).await? {
                return Ok(kid);
            }
            // Another node changed the keys meanwhile: rotate what it stored.
        }
        Err(ApiError::Unavailable {
            message: "the signing keys kept changing on other nodes; retry".into(),
            retry_after: 1,
        })
    }

    /// Issues a sub-tenant token; returns it with its expiry (Unix seconds).
    pub async fn issue_sub_tenant(
        &self,
        account: &AccountName,
        account_id: &str,
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
            account_id: account_id.to_string(),
            sub_tenant: sub_tenant.clone(),
            key_id: key_id.to_string(),
        };
        let exp = claims.registered.exp;
        Ok((self.sign(TokenKind::SubTenant, &claims, exp, 0).await?, exp))
    }

    /// Whether `token` claims to be a Stratus token (by its `typ` header),
    /// so a function's own bearer tokens are told apart without verifying.
    pub fn is_ours(token: &str) -> bool {
        Self::kind_of(token).is_some()
    }

    /// The kind a token claims to be, from its unverified `typ` header.
    pub fn kind_of(token: &str) -> Option<TokenKind> {
        match jsonwebtoken::decode_header(token).ok()?.typ.as_deref()? {
            "stratus-sub-tenant+jwt" => Some(TokenKind::SubTenant),
            "stratus-invocation+jwt" => Some(TokenKind::Invocation),
            _ => None,
        }
    }

    /// The one verification path for every kind of token, with the kind's
    /// own audience.
    pub fn verify<T: DeserializeOwned + Claims>(&self, token: &str, kind: TokenKind) -> Result<T, VerifyError> {
        self.verify_with(token, kind, false)
    }

    /// Verifies an invocation token whatever its audience (introspection
    /// answers for tokens minted for an upstream too).
    pub fn verify_any_audience<T: DeserializeOwned + Claims>(
        &self,
        token: &str,
        kind: TokenKind,
    ) -> Result<T, VerifyError> {
        self.verify_with(token, kind, true)
    }

    fn verify_with<T: DeserializeOwned + Claims>(
        &self,
        token: &str,
        kind: TokenKind,
        any_audience: bool,
    ) -> Result<T, VerifyError> {
        let time = now();
        let audience = (!any_audience).then(|| kind.audience(&self.issuer));
        stratus_wire::tokens::verify(token, kind, &self.issuer, audience.as_deref(), self.skew_s, |kid| {
            self.ring()
                .0
                .iter()
                .find(|key| key.stored.kid == kid)
                .filter(|key| key.verifies_at(time))
                .map(|key| key.decoding.clone())
        })
    }

    /// Verifies a sub-tenant token, once per token until it expires.
    pub fn verify_sub_tenant(&self, token: &str) -> Result<SubTenantClaims, VerifyError> {
        let hash = super::keys::hash(token);
        let time = now();
        {
            let mut cache = lock(&self.cache);
            if let Some((exp, claims)) = cache.get(&hash) {
                if *exp > time {
                    return Ok(claims.clone());
                }
                cache.remove(&hash);
                return Err(VerifyError::Invalid("the token has expired".into()));
            }
        }
        let claims: SubTenantClaims = self.verify(token, TokenKind::SubTenant)?;
        if claims.registered.sub != format!("{}/{}", claims.account, claims.sub_tenant) {
            return Err(VerifyError::Invalid(
                "sub does not match the token's account and sub-tenant".into(),
            ));
        }
        let mut cache = lock(&self.cache);
        if cache.len() >= CACHE_LIMIT {
            cache.retain(|_, (exp, _)| *exp > time);
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
        }
        cache.insert(hash, (claims.registered.exp, claims.clone()));
        Ok(claims)
    }

    /// Verifies an invocation token presented to a Stratus endpoint: this
    /// host's audience, and `sub` consistent with the caller claims. Whether
    /// its invocation still runs is for the caller to check.
    pub fn verify_invocation(&self, token: &str) -> Result<InvocationClaims, VerifyError> {
        let claims: InvocationClaims = self.verify(token, TokenKind::Invocation)?;
        let expected = format!("{}/{}", claims.caller, claims.sub_tenant.as_deref().unwrap_or("-"));
        if claims.registered.sub != expected {
            return Err(VerifyError::Invalid("sub does not match the token's caller".into()));
        }
        Ok(claims)
    }

    /// Signs an invocation token.
    pub async fn mint_invocation(
        &self,
        invocation: &crate::credentials::mint::Invocation,
        audience: Option<&str>,
    ) -> Result<String, ApiError> {
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
            node: self.node.clone(),
        };
        self.sign(
            TokenKind::Invocation,
            &claims,
            invocation.expires_at,
            INVOCATION_LEASE_S,
        )
        .await
    }
}

impl crate::credentials::mint::Minter for Tokens {
    fn mint<'a>(
        &'a self,
        invocation: &'a crate::credentials::mint::Invocation,
        audience: Option<&'a str>,
    ) -> crate::credentials::mint::MintFuture<'a> {
        Box::pin(async move {
            self.mint_invocation(invocation, audience)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use serde_json::json;

    async fn tokens() -> (tempfile::TempDir, Tokens) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let registry = Arc::new(Registry::open(dir.path()).await.unwrap_or_else(|e| panic!("{e}")));
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
        let token = encode(tokens.ring().current(), kind, payload).unwrap_or_else(|e| panic!("{e}"));
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
        // Minted on a node whose clock is a little ahead: within the skew.
        let mut ahead = claims(now);
        ahead["nbf"] = json!(now + 1);
        ahead["iat"] = json!(now + 1);
        assert!(!refused(&tokens, TokenKind::SubTenant, &ahead), "a skew of 1 s refused");
        let mut future = claims(now);
        future["iat"] = json!(now + 30);
        assert!(refused(&tokens, TokenKind::SubTenant, &future), "issued in the future");
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

    fn invocation_claims(now: u64) -> serde_json::Value {
        json!({
            "iss": "stratus", "aud": "stratus", "sub": "acme/alice", "iat": now, "nbf": now,
            "exp": now + 10, "jti": "inv1", "owner": "acme", "caller": "acme", "sub_tenant": "alice",
            "fn": "whoami", "ver": 1, "alias": null, "scope": "invoke kv:rw",
        })
    }

    fn invocation_refused(tokens: &Tokens, kind: TokenKind, payload: &serde_json::Value) -> bool {
        let token = encode(tokens.ring().current(), kind, payload).unwrap_or_else(|e| panic!("{e}"));
        tokens.verify_invocation(&token).is_err()
    }

    #[tokio::test]
    async fn invocation_tokens_are_checked_as_strictly() {
        let (_dir, tokens) = tokens().await;
        let now = now();
        let kind = TokenKind::Invocation;
        assert!(!invocation_refused(&tokens, kind, &invocation_claims(now)));
        for field in [
            "exp", "iat", "iss", "aud", "sub", "jti", "nbf", "owner", "caller", "scope",
        ] {
            let mut payload = invocation_claims(now);
            payload.as_object_mut().map(|o| o.remove(field));
            assert!(invocation_refused(&tokens, kind, &payload), "missing {field} accepted");
        }
        let mut expired = invocation_claims(now);
        expired["exp"] = json!(now - 1);
        assert!(invocation_refused(&tokens, kind, &expired), "expired token accepted");
        let mut text_exp = invocation_claims(now);
        text_exp["exp"] = json!((now + 10).to_string());
        assert!(invocation_refused(&tokens, kind, &text_exp), "exp as a string accepted");
        let mut upstream = invocation_claims(now);
        upstream["aud"] = json!("https://upstream.example");
        assert!(
            invocation_refused(&tokens, kind, &upstream),
            "an upstream's token accepted"
        );
        let mut sub = invocation_claims(now);
        sub["sub"] = json!("acme/bob");
        assert!(
            invocation_refused(&tokens, kind, &sub),
            "sub disagreeing with the claims"
        );
        assert!(
            invocation_refused(&tokens, TokenKind::SubTenant, &invocation_claims(now)),
            "a sub-tenant-typed token accepted as an invocation token"
        );
    }

    #[tokio::test]
    async fn rotation_survives_a_restart_and_retires_keys_by_what_they_signed() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let registry = Arc::new(Registry::open(dir.path()).await.unwrap_or_else(|e| panic!("{e}")));
        let tokens = Tokens::load_or_create(&registry, "stratus")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let account = AccountName::parse("acme").unwrap_or_else(|e| panic!("{e}"));
        let bob = SubTenantId::parse("bob").unwrap_or_else(|e| panic!("{e}"));
        let (old, exp) = tokens
            .issue_sub_tenant(&account, "0123", &bob, "k1", 600)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let first = tokens.ring().current().stored.kid.clone();
        assert_eq!(tokens.ring().current().signed_until.load(Ordering::Acquire), exp);

        let second = tokens.rotate().await.unwrap_or_else(|e| panic!("{e}"));
        drop(tokens);
        let reloaded = Tokens::load_or_create(&registry, "stratus")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let kids: Vec<_> = reloaded.jwks()["keys"]
            .as_array()
            .map(|keys| keys.iter().map(|k| k["kid"].clone()).collect())
            .unwrap_or_default();
        assert_eq!(kids, vec![json!(first), json!(second)]);
        assert!(reloaded.verify_sub_tenant(&old).is_ok(), "the old key still verifies");

        // Retired keys go once nothing they signed is alive: the first one
        // (its token expired, as far as it knows) and the second (it signed
        // nothing).
        let ring = reloaded.ring().0.clone();
        ring[0].signed_until.store(now() - 1, Ordering::Release);
        let third = reloaded.rotate().await.unwrap_or_else(|e| panic!("{e}"));
        let kids: Vec<_> = reloaded.jwks()["keys"]
            .as_array()
            .map(|keys| keys.iter().map(|k| k["kid"].clone()).collect())
            .unwrap_or_default();
        assert_eq!(kids, vec![json!(third)]);
    }
}
