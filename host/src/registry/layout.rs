//! Where each record lives in the [`MetaStore`](super::store::MetaStore)'s
//! one keyspace. Every record of an account is under `{kind}/{account}/`
//! (its own record at `accounts/{account}`), so the snapshot can read and
//! re-read one account's records by prefix; a few host-wide records are
//! under `meta/` and `guards/`.

use crate::names::{AccountName, AliasName, FunctionName, Qualifier};

/// The kinds of account records, each a key prefix.
pub const ACCOUNT_KINDS: &[&str] = &[
    "accounts",
    "keys",
    "functions",
    "counters",
    "versions",
    "aliases",
    "grants",
    "cross_aliases",
    "reservations",
    "blob_owners",
];

/// Which part of the keyspace a key is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partition<'a> {
    /// A record of this account.
    Account(&'a str),
    /// A host-wide record.
    Host,
}

/// The partition of `key`.
pub fn partition(key: &str) -> Partition<'_> {
    let Some((kind, rest)) = key.split_once('/') else {
        return Partition::Host;
    };
    if !ACCOUNT_KINDS.contains(&kind) {
        return Partition::Host;
    }
    Partition::Account(rest.split_once('/').map_or(rest, |(account, _)| account))
}

/// `accounts/{account}`: the account's record, also the guard every write
/// to the account compares and rewrites.
pub fn account(account: &AccountName) -> String {
    format!("accounts/{account}")
}

/// `{kind}/{account}/`: everything of that kind of the account.
pub fn of_account(kind: &str, account: &AccountName) -> String {
    format!("{kind}/{account}/")
}

/// An account key's record.
pub fn key(account: &AccountName, id: &str) -> String {
    format!("keys/{account}/{id}")
}

/// A function's record.
pub fn function(account: &AccountName, function: &FunctionName) -> String {
    format!("functions/{account}/{function}")
}

/// The next version number of a function name, kept after the function
/// is deleted so that numbers are never reused.
pub fn counter(account: &AccountName, function: &FunctionName) -> String {
    format!("counters/{account}/{function}")
}

/// A version's record; numbers are zero-padded so keys sort by number.
pub fn version(account: &AccountName, function: &FunctionName, number: u32) -> String {
    format!("versions/{account}/{function}/{number:010}")
}

/// `{kind}/{account}/{function}/`: a function's versions, aliases, grants
/// or reservations.
pub fn of_function(kind: &str, account: &AccountName, function: &FunctionName) -> String {
    format!("{kind}/{account}/{function}/")
}

/// An alias's record.
pub fn alias(account: &AccountName, function: &FunctionName, alias: &AliasName) -> String {
    format!("aliases/{account}/{function}/{alias}")
}

/// A grant's record, under the granting account.
pub fn grant(owner: &AccountName, function: &FunctionName, grantee: &AccountName) -> String {
    format!("grants/{owner}/{function}/{grantee}")
}

/// A cross-account alias's record, under the account whose namespace holds it.
pub fn cross_alias(account: &AccountName, name: &FunctionName) -> String {
    format!("cross_aliases/{account}/{name}")
}

/// A reservation's record.
pub fn reservation(account: &AccountName, function: &FunctionName, qualifier: &Qualifier) -> String {
    format!("reservations/{account}/{function}/{qualifier}")
}

/// That `account` stores component `sha256` (and when, and its size).
pub fn blob_owner(account: &AccountName, sha256: &str) -> String {
    format!("blob_owners/{account}/{sha256}")
}

/// A host-wide setting (signing keys, markers).
pub fn meta(name: &str) -> String {
    format!("meta/{name}")
}

/// Compared and rewritten by every change to reservations, whose bounds
/// are host-wide.
pub const RESERVATIONS_GUARD: &str = "guards/reservations";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_account_record_is_in_its_accounts_partition() {
        let acme = AccountName::parse("acme").unwrap_or_else(|e| panic!("{e}"));
        let hello = FunctionName::parse("hello").unwrap_or_else(|e| panic!("{e}"));
        for key in [
            account(&acme),
            key(&acme, "k1"),
            function(&acme, &hello),
            version(&acme, &hello, 7),
            grant(
                &acme,
                &hello,
                &AccountName::parse("globex").unwrap_or_else(|e| panic!("{e}")),
            ),
            blob_owner(&acme, "ab"),
        ] {
            assert_eq!(partition(&key), Partition::Account("acme"), "{key}");
        }
        assert_eq!(partition(&meta("signing_keys")), Partition::Host);
        assert_eq!(partition(RESERVATIONS_GUARD), Partition::Host);
        assert!(version(&acme, &hello, 9) < version(&acme, &hello, 10));
    }
}
