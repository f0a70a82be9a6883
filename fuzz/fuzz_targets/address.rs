//! Trigger paths, host names and qualifiers: never a panic, and whatever
//! parses obeys the naming rules and reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stratus_wire::address::{parse_host, parse_path};
use stratus_wire::names::{AccountName, FunctionName, Qualifier, SubTenantId};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for candidate in [text.to_string(), format!("/fn/{text}")] {
        if let Some(Ok(address)) = parse_path(&candidate) {
            assert!(address.guest_path.starts_with('/'));
            assert!(candidate.ends_with(&address.guest_path[1..]));
            check(&address.account, &address.name, &address.qualifier);
        }
    }
    if let Some(Ok(address)) = parse_host(text, "fn.example", "/p") {
        check(&address.account, &address.name, &address.qualifier);
        assert!(text.contains(&format!("{}--{}.fn.example", address.name, address.account)));
    }
    if let Ok(sub) = SubTenantId::parse(text) {
        assert_eq!(sub.as_str(), text);
        assert!(!text.contains('/') && text.len() <= 64);
    }
});

fn check(account: &AccountName, name: &FunctionName, qualifier: &Qualifier) {
    for part in [account.as_str(), name.as_str()] {
        assert!(!part.is_empty() && part.len() <= 63);
        assert!(
            part.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        );
    }
    let text = qualifier.to_string();
    assert_eq!(Qualifier::parse(&text).ok().as_ref(), Some(qualifier));
}
