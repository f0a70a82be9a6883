//! What the fuzz targets share: a fixed signing key and the tokens it signs,
//! which are also the token target's seeds (`cargo run --example seeds`).

use std::sync::LazyLock;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use stratus_wire::tokens::TokenKind;

/// The issuer the token target verifies for.
pub const ISSUER: &str = "https://stratus.example";

/// The key, and every token it signed.
pub struct Keys {
    /// Its public half, as the verifier takes it.
    pub decoding: DecodingKey,
    /// A sub-tenant token and an invocation token, valid until 2096.
    pub signed: Vec<String>,
}

/// Built once per process.
pub static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let key = SigningKey::from_bytes(&[42u8; 32]);
    let der = key.to_pkcs8_der().expect("encodable key");
    let encoding = EncodingKey::from_ed_der(der.as_bytes());
    let signed = [TokenKind::SubTenant, TokenKind::Invocation]
        .into_iter()
        .map(|kind| {
            let mut header = Header::new(Algorithm::EdDSA);
            header.typ = Some(kind.typ().to_string());
            header.kid = Some("k1".into());
            jsonwebtoken::encode(&header, &claims(kind), &encoding).expect("signs")
        })
        .collect();
    Keys {
        decoding: DecodingKey::from_ed_der(key.verifying_key().as_bytes()),
        signed,
    }
});

fn claims(kind: TokenKind) -> serde_json::Value {
    let mut claims = match kind {
        TokenKind::SubTenant => {
            serde_json::json!({ "sub": "acme/alice", "account": "acme", "sub_tenant": "alice", "key_id": "k" })
        }
        TokenKind::Invocation => serde_json::json!({
            "sub": "acme/-", "owner": "acme", "caller": "acme", "sub_tenant": null, "fn": "f", "ver": 1,
            "alias": null, "scope": "invoke",
        }),
    };
    let registered = serde_json::json!({
        "iss": ISSUER, "aud": kind.audience(ISSUER), "iat": 1, "nbf": 1, "exp": 4_000_000_000u64, "jti": "j",
    });
    if let (Some(claims), Some(registered)) = (claims.as_object_mut(), registered.as_object()) {
        claims.extend(registered.clone());
    }
    claims
}
