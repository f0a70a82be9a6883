//! Trigger addresses: `/fn/{account}/{name}[:{qualifier}]/{path}`, or a host
//! name `{name}--{account}.{base domain}` with the whole path for the guest.

use crate::names::{AccountName, FunctionName, NameError, Qualifier};

/// Why an address was refused.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    /// The path has no account or no function.
    #[error("address a function as /fn/{{account}}/{{name}}[:{{qualifier}}]/{{path}}")]
    Shape,
    /// A part broke its naming rule.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A host label with more than one way to split it into function and
    /// account (a name holding `--`, allowed before the rule existed).
    #[error(
        "the host name {0:?} could be split into function and account more than one way; call it as /fn/{{account}}/{{name}}/"
    )]
    Ambiguous(String),
}

/// A call's target, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The account named in the address (owner, or holder of a cross-account alias).
    pub account: AccountName,
    /// The function (or cross-account alias) name.
    pub name: FunctionName,
    /// Which version.
    pub qualifier: Qualifier,
    /// The path the guest sees, starting with `/` (query not included).
    pub guest_path: String,
}

/// Parses a `/fn/…` path; `None` if the path is not under `/fn/`.
pub fn parse_path(path: &str) -> Option<Result<Address, AddressError>> {
    let rest = path.strip_prefix("/fn/")?;
    Some(parse_rest(rest))
}

fn parse_rest(rest: &str) -> Result<Address, AddressError> {
    let mut parts = rest.splitn(3, '/');
    let account = parts.next().unwrap_or_default();
    let function = parts.next().unwrap_or_default();
    if account.is_empty() || function.is_empty() {
        return Err(AddressError::Shape);
    }
    let guest_path = format!("/{}", parts.next().unwrap_or_default());
    let (name, qualifier) = match function.split_once(':') {
        Some((name, qualifier)) => (name, Qualifier::parse(qualifier)?),
        None => (function, Qualifier::Latest),
    };
    Ok(Address {
        account: AccountName::parse(account)?,
        name: FunctionName::parse(name)?,
        qualifier,
        guest_path,
    })
}

/// The `(function, account)` labels of a `Host` header value under `base`
/// (`{name}--{account}.{base}`, any port), unchecked; `None` if it is not one.
pub fn host_labels<'a>(host: &'a str, base: &str) -> Option<(&'a str, &'a str)> {
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let label = host.strip_suffix(base)?.strip_suffix('.')?;
    label.split_once("--")
}

/// Parses a function host name: the labels checked, the latest version,
/// and `path` whole for the guest.
pub fn parse_host(host: &str, base: &str, path: &str) -> Option<Result<Address, AddressError>> {
    let (name, account) = host_labels(host, base)?;
    // Exactly one `--` and no third hyphen beside it: otherwise more than
    // one (function, account) pair fits, and guessing could run another
    // account's function.
    let label = format!("{name}--{account}");
    if label.matches("--").count() != 1 || label.contains("---") {
        return Some(Err(AddressError::Ambiguous(label)));
    }
    Some((|| {
        Ok(Address {
            account: AccountName::parse(account)?,
            name: FunctionName::parse(name)?,
            qualifier: Qualifier::Latest,
            guest_path: path.to_string(),
        })
    })())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Result<Address, AddressError> {
        parse_path(p).unwrap_or_else(|| panic!("{p} is not a trigger path"))
    }

    #[test]
    fn paths_name_account_function_qualifier_and_guest_path() {
        let a = path("/fn/acme/hello:prod/x/y").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((a.account.as_str(), a.name.as_str()), ("acme", "hello"));
        assert!(matches!(a.qualifier, Qualifier::Alias(ref x) if x.as_str() == "prod"));
        assert_eq!(a.guest_path, "/x/y");
        let b = path("/fn/acme/hello").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((b.qualifier, b.guest_path.as_str()), (Qualifier::Latest, "/"));
        assert!(matches!(
            path("/fn/acme/hello:3/"),
            Ok(Address {
                qualifier: Qualifier::Version(3),
                ..
            })
        ));
        assert!(matches!(path("/fn/acme"), Err(AddressError::Shape)));
        assert!(matches!(path("/fn//hello/"), Err(AddressError::Shape)));
        assert!(matches!(path("/fn/Acme/hello/"), Err(AddressError::Name(_))));
        assert!(matches!(path("/fn/acme/hello:0/"), Err(AddressError::Name(_))));
        assert!(parse_path("/admin/v1").is_none());
    }

    #[test]
    fn host_names_carry_function_then_account() {
        assert_eq!(
            host_labels("hello--acme.fn.example:8080", "fn.example"),
            Some(("hello", "acme"))
        );
        assert_eq!(
            host_labels("hello--acme.fn.example", "fn.example"),
            Some(("hello", "acme"))
        );
        assert_eq!(host_labels("hello.fn.example", "fn.example"), None);
        assert_eq!(host_labels("hello--acme.evil-fn.example", "fn.example"), None);
        let a = parse_host("hello--acme.fn.example", "fn.example", "/a").and_then(Result::ok);
        assert_eq!(a.map(|a| a.guest_path), Some("/a".to_string()));
        for ambiguous in ["a--b--c.fn.example", "a---b.fn.example", "a----b.fn.example"] {
            assert!(
                matches!(
                    parse_host(ambiguous, "fn.example", "/"),
                    Some(Err(AddressError::Ambiguous(_)))
                ),
                "{ambiguous}"
            );
        }
    }
}
