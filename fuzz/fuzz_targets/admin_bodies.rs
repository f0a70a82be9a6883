//! The admin API's JSON bodies: never a panic, and what parses keeps the
//! promises the handlers rely on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stratus_wire::admin::{CreateAccount, Deploy, IssueSubTenantToken, PutAlias, PutGrant, PutReservation};
use stratus_wire::config::{LowerLimits, Overrides, VersionConfig};

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<CreateAccount>(data);
    let _ = serde_json::from_slice::<IssueSubTenantToken>(data);
    let _ = serde_json::from_slice::<PutGrant>(data);
    let _ = serde_json::from_slice::<PutReservation>(data);
    let _ = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data);
    if let Ok(deploy) = serde_json::from_slice::<Deploy>(data) {
        assert!(deploy.env.len() < data.len().max(1));
    }
    // Overrides and lower limits never raise a version's limits.
    let base = VersionConfig {
        public: false,
        tenancy: Default::default(),
        reuse: Default::default(),
        timeout_ms: 1_000,
        memory_mb: 64,
        env: Default::default(),
        allow_outbound: Vec::new(),
        max_concurrency_per_sub_tenant: None,
    };
    if let Ok(alias) = serde_json::from_slice::<PutAlias>(data) {
        let seen = alias.overrides.apply(&base);
        assert!(seen.timeout_ms <= base.timeout_ms && seen.memory_mb <= base.memory_mb);
    }
    if let Ok(overrides) = serde_json::from_slice::<Overrides>(data) {
        let seen = overrides.apply(&base);
        assert!(seen.timeout_ms <= base.timeout_ms && seen.memory_mb <= base.memory_mb);
    }
    if let Ok(limits) = serde_json::from_slice::<LowerLimits>(data) {
        let seen = limits.apply(&base);
        assert!(seen.timeout_ms <= base.timeout_ms && seen.memory_mb <= base.memory_mb);
        assert_eq!(seen.env, base.env);
    }
});
