//! The records kept in the registry's store. Each is a serde struct stored as one format byte
//! followed by JSON, so a later format can be told apart and migrated.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::names::{AccountName, AliasName, FunctionName};
pub use stratus_wire::config::{LowerLimits, Overrides, Reuse, Tenancy, VersionConfig, Weight};

/// The format byte written before every record.
const FORMAT: u8 = 1;

/// Encodes a record for the store.
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    let mut out = vec![FORMAT];
    // Serialising these plain structs cannot fail: no maps with non-string keys.
    if let Err(err) = serde_json::to_writer(&mut out, record) {
        tracing::error!(%err, "record encoding failed");
    }
    out
}

/// Decodes a record read from the store.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> anyhow::Result<T> {
    match bytes.split_first() {
        Some((&FORMAT, rest)) => Ok(serde_json::from_slice(rest)?),
        Some((format, _)) => {
            anyhow::bail!("record format {format} is newer than this build understands")
        }
        None => anyhow::bail!("empty record"),
    }
}

pub use crate::clock::now;

/// The caller of a call without credentials, where an account name would be.
pub const ANONYMOUS: &str = "anonymous";

/// A fresh immutable identity: 128 random bits as hex. Random rather than
/// counted, so nodes of a cluster can allocate ids without coordinating,
/// and never reused, unlike a name or a version number.
pub fn new_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// An account (tenant).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountRecord {
    /// Its name, which a later account may take once this one is deleted.
    pub name: AccountName,
    /// Its identity: what keys, tokens, KV data, logs and environments are
    /// bound to. Empty only in records written before ids existed, until
    /// the database is opened and they are given one.
    #[serde(default)]
    pub id: String,
    /// Creation time, Unix seconds.
    pub created_at: u64,
    /// Being deleted: nothing of it is served, and its name is not free
    /// until the rest of its records are gone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retiring: bool,
}

/// An account key. Only the SHA-256 of the secret is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The public id, also embedded in the key text.
    pub id: String,
    /// The account it acts for.
    pub account: AccountName,
    /// Hex SHA-256 of the whole key text.
    pub hash: String,
    /// Creation time, Unix seconds.
    pub created_at: u64,
}

/// A function: the numbering state of its versions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionRecord {
    /// Owner account.
    pub account: AccountName,
    /// Function name.
    pub name: FunctionName,
    /// Creation time, Unix seconds.
    pub created_at: u64,
    /// The number the next deploy gets; never reused, even after deletes.
    pub next_version: u32,
    /// Being deleted: nothing of it is served, and the name is not free
    /// until its versions and aliases are gone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retiring: bool,
}

/// Where a version is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum VersionState {
    /// Being compiled; not invocable yet.
    Compiling,
    /// Compiled and invocable.
    Ready,
    /// Compilation failed; never invocable.
    Failed {
        /// Why.
        message: String,
    },
}

/// One immutable version of a function.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionRecord {
    /// Its identity, never reused: environments, reservations and partitions
    /// are keyed by it, so a name deployed again never reaches them.
    #[serde(default)]
    pub id: String,
    /// The owner account's id.
    #[serde(default)]
    pub account_id: String,
    /// Owner account.
    pub account: AccountName,
    /// Function name.
    pub function: FunctionName,
    /// Its number, from 1.
    pub number: u32,
    /// Hex SHA-256 of the component.
    pub sha256: String,
    /// Component size in bytes.
    pub size: u64,
    /// Configuration.
    pub config: VersionConfig,
    /// Compilation state.
    #[serde(flatten)]
    pub state: VersionState,
    /// Creation time, Unix seconds.
    pub created_at: u64,
    /// Compile time in ms, once compiled.
    pub compile_ms: Option<u64>,
}

/// An alias of one function: a name for one version, or for two with a weight.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AliasRecord {
    /// Owner account.
    pub account: AccountName,
    /// The function.
    pub function: FunctionName,
    /// The alias.
    pub name: AliasName,
    /// The version that gets the calls not sent to `weight.version`.
    pub version: u32,
    /// The second version and its share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<Weight>,
    /// Environment and lower limits for calls through the alias.
    #[serde(default)]
    pub overrides: Overrides,
    /// Creation time, Unix seconds.
    pub created_at: u64,
    /// Last change, Unix seconds.
    pub updated_at: u64,
}

/// Owner account `owner` lets `grantee` alias its function `function`
/// (only through `alias`, when set).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantRecord {
    /// The granting account.
    pub owner: AccountName,
    /// Its function.
    pub function: FunctionName,
    /// The account that may alias it.
    pub grantee: AccountName,
    /// The only alias of the function the grantee may target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<AliasName>,
    /// Creation time, Unix seconds.
    pub created_at: u64,
}

/// A name in `account`'s function namespace for another account's function.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CrossAliasRecord {
    /// The account whose namespace holds the name.
    pub account: AccountName,
    /// The name.
    pub name: FunctionName,
    /// The function's owner.
    pub owner: AccountName,
    /// The function.
    pub function: FunctionName,
    /// A version number or alias of the function; none means `latest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualifier: Option<String>,
    /// Lower limits for calls through it.
    #[serde(default)]
    pub limits: LowerLimits,
    /// Creation time, Unix seconds.
    pub created_at: u64,
    /// Last change, Unix seconds.
    pub updated_at: u64,
}

impl CrossAliasRecord {
    /// `owner/function[:qualifier]`.
    pub fn target(&self) -> String {
        match &self.qualifier {
            Some(q) => format!("{}/{}:{q}", self.owner, self.function),
            None => format!("{}/{}", self.owner, self.function),
        }
    }
}

/// Environments kept instantiated for one function qualifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReservationRecord {
    /// Owner account.
    pub account: AccountName,
    /// The function.
    pub function: FunctionName,
    /// A version number or alias; none means `latest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualifier: Option<String>,
    /// Only calls of this sub-tenant take them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_tenant: Option<crate::names::SubTenantId>,
    /// Kept at all times, instantiated at once.
    pub min: u32,
    /// Added as capacity allows.
    pub target: u32,
    /// Creation time, Unix seconds.
    pub created_at: u64,
    /// Last change, Unix seconds.
    pub updated_at: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_reject_unknown_formats() {
        let rec = AccountRecord {
            name: AccountName::parse("acme").unwrap_or_else(|e| panic!("{e}")),
            id: new_id(),
            created_at: 7,
            retiring: false,
        };
        let bytes = encode(&rec);
        let back: AccountRecord = decode(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.name.as_str(), "acme");
        let mut future = bytes.clone();
        future[0] = 9;
        assert!(decode::<AccountRecord>(&future).is_err());
    }
}
