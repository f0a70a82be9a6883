//! Names that cross a trust boundary, parsed once.
//!
//! A value of these types has passed its rule; code past the parsing point
//! never re-checks and never builds one from unchecked text.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a name was refused.
#[derive(Debug, thiserror::Error)]
#[error("{kind} {value:?} is not valid: {rule}")]
pub struct NameError {
    kind: &'static str,
    value: String,
    rule: &'static str,
}

const NAME_RULE: &str = "use 1 to 63 characters: a lower-case letter, then lower-case letters, digits or '-'";
const SUB_TENANT_RULE: &str = "use 1 to 64 characters from A-Z a-z 0-9 . _ -";

fn is_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

macro_rules! name_type {
    ($(#[$meta:meta])* $ty:ident, $kind:literal, $check:expr, $rule:expr) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $ty(String);

        impl $ty {
            /// Checks `value` against the rule.
            pub fn parse(value: &str) -> Result<Self, NameError> {
                if $check(value) {
                    Ok(Self(value.to_string()))
                } else {
                    Err(NameError { kind: $kind, value: value.chars().take(80).collect(), rule: $rule })
                }
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// An account (tenant) name: `[a-z][a-z0-9-]{0,62}`.
    AccountName, "account name", is_name, NAME_RULE
);
name_type!(
    /// A function or cross-account alias name, same rule as accounts.
    FunctionName, "function name", is_name, NAME_RULE
);
name_type!(
    /// An alias of one function; starts with a letter so it never reads as a version.
    AliasName, "alias name", is_name, NAME_RULE
);
name_type!(
    /// The id an account gives one of its customers: `[A-Za-z0-9._-]{1,64}`.
    SubTenantId, "sub-tenant id",
    |s: &str| !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-'),
    SUB_TENANT_RULE
);

/// Which version of a function a call asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Qualifier {
    /// The newest version that compiled.
    Latest,
    /// A version by number.
    Version(u32),
    /// An alias of the function.
    Alias(AliasName),
}

impl Qualifier {
    /// Parses the part after `:` in `name:qualifier`.
    pub fn parse(value: &str) -> Result<Self, NameError> {
        if value == "latest" {
            return Ok(Qualifier::Latest);
        }
        if value.bytes().all(|b| b.is_ascii_digit()) && !value.is_empty() {
            return value
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .map(Qualifier::Version)
                .ok_or(NameError {
                    kind: "version",
                    value: value.to_string(),
                    rule: "versions are numbered from 1",
                });
        }
        AliasName::parse(value).map(Qualifier::Alias)
    }
}

impl fmt::Display for Qualifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Qualifier::Latest => f.write_str("latest"),
            Qualifier::Version(n) => write!(f, "{n}"),
            Qualifier::Alias(a) => write!(f, "{a}"),
        }
    }
}

/// Whether a new account or function may take `name`: besides the naming
/// rule, no `--` and no trailing `-`, which separates function from account in a function's
/// host name (`{name}--{account}.{base}`). Names that hold it from before
/// the rule keep working by path.
pub fn fits_host_label(name: &str) -> bool {
    // A trailing `-` would make `{name}--` a third hyphen, and a DNS label
    // may not end in one either.
    !name.contains("--") && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        assert!(AccountName::parse("acme").is_ok());
        assert!(AccountName::parse("a-1").is_ok());
        assert!(AccountName::parse("1a").is_err());
        assert!(AccountName::parse("Acme").is_err());
        assert!(AccountName::parse("").is_err());
        assert!(AccountName::parse(&"a".repeat(63)).is_ok());
        assert!(AccountName::parse(&"a".repeat(64)).is_err());
    }

    #[test]
    fn sub_tenant_ids_follow_the_rule() {
        assert!(SubTenantId::parse("Cust_01.eu-west").is_ok());
        assert!(SubTenantId::parse("a/b").is_err());
        assert!(SubTenantId::parse(&"x".repeat(65)).is_err());
    }

    #[test]
    fn qualifiers_are_versions_or_aliases() {
        assert_eq!(Qualifier::parse("3").ok(), Some(Qualifier::Version(3)));
        assert!(Qualifier::parse("0").is_err());
        assert!(matches!(Qualifier::parse("prod"), Ok(Qualifier::Alias(_))));
        assert_eq!(Qualifier::parse("latest").ok(), Some(Qualifier::Latest));
        assert!(Qualifier::parse("Prod").is_err());
    }
}
