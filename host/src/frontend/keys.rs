//! The cluster's public signing keys, as the nodes publish them at
//! `/.well-known/jwks.json`: a call is sent to the node its invocation token
//! names only when the token verifies, so a forged token cannot steer calls
//! past the ring and the placement.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::DecodingKey;
use stratus_wire::tokens::{InvocationClaims, TokenKind};

/// How often the keys are read again in any case.
pub const REFRESH: Duration = Duration::from_secs(5);
/// The least time between two reads for a key not known yet.
const UNKNOWN_AGAIN: Duration = Duration::from_secs(1);

/// The keys by `kid`, and when they were last read.
pub struct Keys {
    issuer: String,
    skew_s: u64,
    /// The keys, and when they were last asked for (answered or not).
    known: RwLock<(HashMap<String, DecodingKey>, Option<Instant>)>,
    /// A read is under way: concurrent calls do not start another.
    reading: std::sync::atomic::AtomicBool,
    http: HttpClient<HttpConnector, Full<Bytes>>,
}

impl Keys {
    /// No keys yet, for tokens of `issuer` with `skew_s` of clock skew.
    pub fn new(issuer: String, skew_s: u64) -> Self {
        Self {
            issuer,
            skew_s,
            known: RwLock::new((HashMap::new(), None)),
            reading: std::sync::atomic::AtomicBool::new(false),
            http: HttpClient::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Reads the key set from the node at `base` (its URL), unless a read
    /// is under way. A failed read counts as one: it is tried again after
    /// the same wait, not at once.
    pub async fn refresh(&self, base: &str) {
        use std::sync::atomic::Ordering;
        if self.reading.swap(true, Ordering::AcqRel) {
            return;
        }
        self.read(base).await;
        self.reading.store(false, Ordering::Release);
    }

    async fn read(&self, base: &str) {
        self.known.write().unwrap_or_else(std::sync::PoisonError::into_inner).1 = Some(Instant::now());
        let Ok(uri) = format!("{base}/.well-known/jwks.json").parse::<http::Uri>() else {
            return;
        };
        let answer = tokio::time::timeout(Duration::from_secs(1), async {
            let response = self.http.get(uri).await.ok()?;
            if !response.status().is_success() {
                return None;
            }
            response.into_body().collect().await.ok().map(|b| b.to_bytes())
        })
        .await;
        let Ok(Some(body)) = answer else { return };
        let Ok(set) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return;
        };
        let keys: HashMap<String, DecodingKey> = set["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|key| {
                let kid = key["kid"].as_str()?;
                let x = key["x"].as_str()?;
                Some((kid.to_string(), DecodingKey::from_ed_components(x).ok()?))
            })
            .collect();
        *self.known.write().unwrap_or_else(std::sync::PoisonError::into_inner) = (keys, Some(Instant::now()));
    }

    /// Whether the keys should be read again now: never read, or older
    /// than [`REFRESH`].
    pub fn stale(&self) -> bool {
        let known = self.known.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        known.1.is_none_or(|at| at.elapsed() >= REFRESH)
    }

    fn has(&self, kid: &str) -> bool {
        let known = self.known.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        known.0.contains_key(kid)
    }

    fn may_read_again(&self) -> bool {
        let known = self.known.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        known.1.is_none_or(|at| at.elapsed() >= UNKNOWN_AGAIN)
    }

    /// The node named by `bearer` if it is an invocation token that
    /// verifies; a key not known yet is read first from `any_node` (a
    /// rotation just made it), at most once a second.
    pub async fn minting_node(&self, bearer: &str, any_node: Option<&str>) -> Option<String> {
        let kid = jsonwebtoken::decode_header(bearer).ok()?.kid?;
        if !self.has(&kid)
            && self.may_read_again()
            && let Some(base) = any_node
        {
            self.refresh(base).await;
        }
        let known = self.known.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let claims: InvocationClaims = stratus_wire::tokens::verify(
            bearer,
            TokenKind::Invocation,
            &self.issuer,
            // The node checks the audience; routing needs the signature.
            None,
            self.skew_s,
            |kid| known.0.get(kid).cloned(),
        )
        .ok()?;
        claims.node
    }
}
