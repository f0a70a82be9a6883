//! What a registry command can fail with. Each kind is one outcome for the
//! caller (the server maps it to one HTTP status at its boundary); the text
//! says what to do.

use super::store::StoreError;

/// Why a registry command or read failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The command is malformed or breaks a rule of its own.
    #[error("{0}")]
    Invalid(String),
    /// What it names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The caller may not do this (a grant is missing or narrower).
    #[error("{0}")]
    Forbidden(String),
    /// It conflicts with what exists, or an account's count limit.
    #[error("{0}")]
    Conflict(String),
    /// It would store more than a size limit allows.
    #[error("{0}")]
    TooLarge(String),
    /// Others kept changing the same records; retrying may succeed.
    #[error("{0}")]
    Busy(String),
    /// The storage underneath failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored record could not be read, or another internal failure.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<crate::names::NameError> for RegistryError {
    fn from(err: crate::names::NameError) -> Self {
        Self::Invalid(err.to_string())
    }
}

/// Shorthand for the commands' results.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

impl From<super::blobs::BlobError> for RegistryError {
    fn from(err: super::blobs::BlobError) -> Self {
        match err {
            // The storage is unreachable: like the records' store failing.
            super::blobs::BlobError::Io { .. } => Self::Store(super::store::StoreError::backend(err)),
            other => Self::Internal(other.into()),
        }
    }
}
