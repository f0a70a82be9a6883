//! What the runtime needs to mint an invocation's tokens: the invocation's
//! identity and a signer, so the engine never sees a key.

/// Who and what one invocation is, fixed by the host from authenticated data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// Unique per invocation; the `jti` of its tokens.
    pub id: String,
    /// The function's owner account.
    pub owner: String,
    /// The calling account, or `anonymous`.
    pub caller: String,
    /// The sub-tenant, if any.
    pub sub_tenant: Option<String>,
    /// The function.
    pub function: String,
    /// The version running.
    pub version: u32,
    /// The alias the call came through.
    pub alias: Option<String>,
    /// What the invocation may do.
    pub scopes: Vec<String>,
    /// The deadline, Unix seconds.
    pub expires_at: u64,
}

/// What [`Minter::mint`] returns.
pub type MintFuture<'a> = std::pin::Pin<Box<dyn Future<Output = anyhow::Result<String>> + Send + 'a>>;

/// Signs invocation tokens; the seam between the runtime and the key store.
pub trait Minter: Send + Sync {
    /// A token for `invocation`, for `audience` (`None`: this host). May wait
    /// for the key store to record how long the signing key must be trusted.
    fn mint<'a>(&'a self, invocation: &'a Invocation, audience: Option<&'a str>) -> MintFuture<'a>;
}
