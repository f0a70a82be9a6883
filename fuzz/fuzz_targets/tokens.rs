//! Token verification: never a panic, and nothing verifies unless it is
//! exactly a token this key signed (mutations of real tokens are the seeds).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stratus_fuzz::{ISSUER, KEYS};
use stratus_wire::tokens::{InvocationClaims, SubTenantClaims, TokenKind, verify};

fuzz_target!(|data: &[u8]| {
    let keys = &*KEYS;
    let Ok(token) = std::str::from_utf8(data) else { return };
    let key_for = |kid: &str| (kid == "k1").then(|| keys.decoding.clone());
    let sub = verify::<SubTenantClaims>(
        token,
        TokenKind::SubTenant,
        ISSUER,
        Some(&TokenKind::SubTenant.audience(ISSUER)),
        1,
        key_for,
    );
    let inv = verify::<InvocationClaims>(token, TokenKind::Invocation, ISSUER, None, 1, key_for);
    for accepted in [sub.is_ok(), inv.is_ok()] {
        if accepted {
            // Ed25519 signatures are not malleable and the JWT library
            // rejects non-canonical base64: only the signed bytes pass.
            assert!(
                keys.signed.iter().any(|signed| signed == token),
                "a token nobody signed verified: {token}"
            );
        }
    }
});
