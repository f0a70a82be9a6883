//! Tenancy: who a call acts for.
//!
//! A caller is established once per request from the `Authorization` header
//! and, for account keys, the `x-stratus-sub-tenant` header. Everything past
//! this point works with [`Caller`] and never looks at headers again.

pub mod inflight;
pub mod lineage;

pub use lineage::{Lineage, MAX_NESTING_DEPTH};
pub mod quota;
pub mod visibility;

use http::HeaderMap;

use crate::credentials::keys;
use crate::credentials::tokens::{SubTenantClaims, TokenKind, Tokens};
use crate::error::ApiError;
use crate::names::{AccountName, SubTenantId};
use crate::registry::Snapshot;

/// The header an account key uses to name the sub-tenant it acts for.
pub const SUB_TENANT_HEADER: &str = "x-stratus-sub-tenant";

/// The account name recorded for calls without credentials.
pub use crate::registry::records::ANONYMOUS;

/// Who a call acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No credential: only public functions.
    Anonymous,
    /// An account, through one of its keys.
    Account {
        /// The account.
        account: AccountName,
        /// Its id: partitions and KV namespaces are keyed by it, so an
        /// account that later takes the name inherits nothing.
        id: String,
        /// The key used, so revocation and logs can name it.
        key_id: String,
    },
}

impl Caller {
    /// The caller's id as partitions and KV namespaces know it: the
    /// account's id, or `anonymous`.
    pub fn id(&self) -> &str {
        match self {
            Caller::Anonymous => ANONYMOUS,
            Caller::Account { id, .. } => id,
        }
    }

    /// The key (or, for a sub-tenant token, the issuer) the call acts
    /// through; nested calls check that it still stands.
    pub fn key_id(&self) -> &str {
        match self {
            Caller::Anonymous => "",
            Caller::Account { key_id, .. } => key_id,
        }
    }

    /// The caller's account, if any.
    pub fn account(&self) -> Option<&AccountName> {
        match self {
            Caller::Anonymous => None,
            Caller::Account { account, .. } => Some(account),
        }
    }

    /// The caller's name as recorded in claims and logs.
    pub fn name(&self) -> &str {
        self.account().map_or(ANONYMOUS, AccountName::as_str)
    }
}

/// What the `Authorization` header held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    /// No header.
    Nothing,
    /// A Stratus credential for this caller; a sub-tenant token also fixes
    /// the sub-tenant.
    Stratus {
        /// Who the call acts for.
        caller: Caller,
        /// The sub-tenant a token is bound to.
        sub_tenant: Option<SubTenantId>,
    },
    /// An invocation token of a running invocation: a nested call, acting
    /// for the same caller and sub-tenant, among the owner's functions.
    Nested {
        /// The outer call's caller.
        caller: Caller,
        /// The outer call's sub-tenant.
        sub_tenant: Option<SubTenantId>,
        /// The account whose code holds the token.
        owner: AccountName,
        /// The outer invocation's place in its chain.
        parent: Lineage,
    },
    /// A credential of some other scheme: the function's own business.
    Foreign,
}

impl Presented {
    /// Whether the header carried one of the host's own credentials.
    pub fn is_stratus(&self) -> bool {
        matches!(self, Presented::Stratus { .. } | Presented::Nested { .. })
    }
}

/// What an `Authorization` header holds.
enum Credential<'a> {
    /// No header.
    Absent,
    /// Bearer text that may be a key: an account key (`sk_…`) or the
    /// operator key, which may be any text of 16 or more characters. Only
    /// its hash tells; on a call, text that is no key of ours belongs to
    /// the function.
    Key(&'a str),
    /// A JWT whose `typ` is one of ours.
    Token(&'a str),
    /// Another scheme than `Bearer`.
    Foreign,
}

/// Prefixes only Stratus keys carry: such text that matches no key is a
/// stale or mistyped key, not the function's business.
const KEY_PREFIXES: [&str; 2] = ["sk_", "op_"];

/// The text after `Bearer `, if the header has one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let text = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    text.strip_prefix("Bearer ")
        .or_else(|| text.strip_prefix("bearer "))
        .map(str::trim)
}

fn credential(headers: &HeaderMap) -> Credential<'_> {
    if !headers.contains_key(http::header::AUTHORIZATION) {
        return Credential::Absent;
    }
    match bearer(headers) {
        Some(token) if Tokens::is_ours(token) => Credential::Token(token),
        Some(key) => Credential::Key(key),
        None => Credential::Foreign,
    }
}

/// The `key_id` of tokens the operator issued.
pub const OPERATOR_ISSUER: &str = "operator";

/// Whether the account and the key that issued a sub-tenant token still
/// exist: the same account, not one that took its name since.
pub fn issuer_live(snapshot: &Snapshot, claims: &SubTenantClaims) -> bool {
    let Some(id) = snapshot.account_id(&claims.account) else {
        return false;
    };
    if claims.account_id.is_empty() {
        // Issued before tokens carried the account's id: an account key's
        // id is random and died with its account, but `operator` is not,
        // so only tokens of a key that still exists are taken.
        return claims.key_id != OPERATOR_ISSUER && snapshot.has_key(&claims.account, &claims.key_id);
    }
    claims.account_id == id && (claims.key_id == OPERATOR_ISSUER || snapshot.has_key(&claims.account, &claims.key_id))
}

/// Whether the credential a chain of calls started with still stands: the
/// caller account (the same one, by id) and its key or token issuer.
fn chain_live(snapshot: &Snapshot, caller: &AccountName, lineage: &Lineage) -> bool {
    snapshot.account_id(caller) == Some(&*lineage.caller_id)
        && (&*lineage.key_id == OPERATOR_ISSUER || snapshot.has_key(caller, &lineage.key_id))
}

/// Whether a running invocation's token still speaks for anyone: its
/// function's account is the same account (by id) as when it started, and
/// its caller's credential stands. Introspection answers `active` only then.
pub fn invocation_stands(snapshot: &Snapshot, owner: &str, caller: &str, lineage: &Lineage) -> bool {
    let owner_stands = AccountName::parse(owner)
        .ok()
        .is_some_and(|owner| snapshot.account_id(&owner) == Some(&*lineage.owner_id));
    let caller_stands = caller == ANONYMOUS
        || AccountName::parse(caller)
            .ok()
            .is_some_and(|caller| chain_live(snapshot, &caller, lineage));
    owner_stands && caller_stands
}

/// Checks a sub-tenant token and that what issued it still stands: the
/// account, and the key it was issued with (revocation is immediate).
fn sub_tenant_caller(token: &str, snapshot: &Snapshot, tokens: &Tokens) -> Result<Presented, ApiError> {
    let claims = tokens
        .verify_sub_tenant(token)
        .map_err(|e| ApiError::Unauthorized(format!("sub-tenant token refused: {e}")))?;
    let live = issuer_live(snapshot, &claims);
    if !live {
        return Err(ApiError::Unauthorized(
            "the key or account that issued this token is gone".into(),
        ));
    }
    Ok(Presented::Stratus {
        caller: Caller::Account {
            account: claims.account,
            id: claims.account_id,
            key_id: claims.key_id,
        },
        sub_tenant: Some(claims.sub_tenant),
    })
}

/// Checks an invocation token: signature and claims, scope `invoke`, that
/// its invocation still runs, and that one more level of nesting is allowed.
fn nested_caller(
    token: &str,
    snapshot: &Snapshot,
    tokens: &Tokens,
    lineage: impl Fn(&str) -> Option<Lineage>,
) -> Result<Presented, ApiError> {
    let claims = tokens
        .verify_invocation(token)
        .map_err(|e| ApiError::Unauthorized(format!("invocation token refused: {e}")))?;
    let parent = lineage(&claims.registered.jti)
        .ok_or_else(|| ApiError::Unauthorized("invocation token refused: its invocation has ended".into()))?;
    if !claims.scope.split(' ').any(|scope| scope == "invoke") {
        return Err(ApiError::Forbidden(
            "this invocation token has no `invoke` scope".into(),
        ));
    }
    if parent.depth >= MAX_NESTING_DEPTH {
        return Err(ApiError::Forbidden(format!(
            "nested calls may go {MAX_NESTING_DEPTH} deep; this one would be deeper"
        )));
    }
    // The claims were signed by this host from parsed names; a failure here
    // means a bug, not a forgery, but is refused all the same.
    let unreadable = |what: &str| ApiError::Unauthorized(format!("invocation token refused: bad {what}"));
    let caller = if claims.caller == ANONYMOUS {
        Caller::Anonymous
    } else {
        let account = AccountName::parse(&claims.caller).map_err(|_| unreadable("caller"))?;
        // The chain acts for its caller only while the caller could still
        // make the first call: a deleted account or revoked key stops it.
        if !chain_live(snapshot, &account, &parent) {
            return Err(ApiError::Unauthorized(
                "invocation token refused: the caller's key or account is gone".into(),
            ));
        }
        Caller::Account {
            account,
            id: parent.caller_id.to_string(),
            key_id: parent.key_id.to_string(),
        }
    };
    let sub_tenant = claims
        .sub_tenant
        .as_deref()
        .map(SubTenantId::parse)
        .transpose()
        .map_err(|_| unreadable("sub-tenant"))?;
    let owner = AccountName::parse(&claims.owner).map_err(|_| unreadable("owner"))?;
    // The token's code belongs to an account by id: once that account is
    // deleted, a new account under its name is not the token's to reach.
    if snapshot.account_id(&owner) != Some(&*parent.owner_id) {
        return Err(ApiError::Unauthorized(
            "invocation token refused: the function's account is gone".into(),
        ));
    }
    Ok(Presented::Nested {
        caller,
        sub_tenant,
        owner,
        parent,
    })
}

/// Authenticates a trigger call. A Stratus credential that fails is a 401;
/// a foreign one is left for the function. `lineage` tells whether an
/// invocation still runs, and where in its chain.
pub fn authenticate(
    headers: &HeaderMap,
    snapshot: &Snapshot,
    operator: &[u8; 32],
    tokens: &Tokens,
    lineage: impl Fn(&str) -> Option<Lineage>,
) -> Result<Presented, ApiError> {
    match credential(headers) {
        Credential::Absent => Ok(Presented::Nothing),
        Credential::Foreign => Ok(Presented::Foreign),
        Credential::Token(token) => match Tokens::kind_of(token) {
            Some(TokenKind::Invocation) => nested_caller(token, snapshot, tokens, lineage),
            _ => sub_tenant_caller(token, snapshot, tokens),
        },
        Credential::Key(token) => {
            let hash = keys::hash(token);
            if let Some(key) = snapshot.key_by_hash(&hash) {
                let caller = Caller::Account {
                    account: key.account.clone(),
                    id: snapshot.account_id(&key.account).unwrap_or_default().to_string(),
                    key_id: key.id.clone(),
                };
                return Ok(Presented::Stratus {
                    caller,
                    sub_tenant: None,
                });
            }
            if &hash == operator {
                return Err(ApiError::Unauthorized(
                    "the operator key administers the host; call functions with an account key".into(),
                ));
            }
            if KEY_PREFIXES.iter().any(|prefix| token.starts_with(prefix)) {
                return Err(ApiError::Unauthorized("unknown or revoked key".into()));
            }
            // Another issuer's bearer token, for a function with its own auth.
            Ok(Presented::Foreign)
        }
    }
}

/// The sub-tenant an account key names with [`SUB_TENANT_HEADER`].
pub fn sub_tenant_from_header(headers: &HeaderMap) -> Result<Option<SubTenantId>, ApiError> {
    let Some(value) = headers.get(SUB_TENANT_HEADER) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::InvalidSubTenant("the sub-tenant header is not valid text".into()))?;
    SubTenantId::parse(text)
        .map(Some)
        .map_err(|e| ApiError::InvalidSubTenant(e.to_string()))
}

/// Who may administer an account through the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The operator: any account.
    Operator,
    /// An account key: its own account only.
    Account {
        /// The account.
        account: AccountName,
        /// The key used.
        key_id: String,
    },
}

impl Principal {
    /// Refuses unless this principal may act on `account`. An account key
    /// asking about another account gets 404, so names do not leak.
    pub fn may_act_on(&self, account: &AccountName) -> Result<(), ApiError> {
        match self {
            Principal::Operator => Ok(()),
            Principal::Account { account: own, .. } if own == account => Ok(()),
            Principal::Account { .. } => Err(ApiError::NotFound(format!("no account {account}"))),
        }
    }

    /// Refuses unless this is the operator.
    pub fn operator_only(&self) -> Result<(), ApiError> {
        match self {
            Principal::Operator => Ok(()),
            Principal::Account { .. } => Err(ApiError::Forbidden("only the operator may do this".into())),
        }
    }
}

/// Authenticates an admin call: the operator key or an account key.
pub fn authenticate_admin(
    headers: &HeaderMap,
    snapshot: &Snapshot,
    operator: &[u8; 32],
) -> Result<Principal, ApiError> {
    let Credential::Key(token) = credential(headers) else {
        return Err(ApiError::Unauthorized(
            "send `Authorization: Bearer <operator or account key>`".into(),
        ));
    };
    let hash = keys::hash(token);
    if &hash == operator {
        return Ok(Principal::Operator);
    }
    match snapshot.key_by_hash(&hash) {
        Some(key) => Ok(Principal::Account {
            account: key.account.clone(),
            key_id: key.id.clone(),
        }),
        None => Err(ApiError::Unauthorized("unknown or revoked key".into())),
    }
}
