//! The `stratus:function/kv` import, backed by the registry's KV store.

use std::sync::Arc;

use crate::registry::kv::{KvBackend, KvError, Namespace};

use super::bindings::stratus::function::kv::{Entry, Error, Host, Page};

/// A call's access to its own namespace and nothing else.
pub struct KvAccess {
    /// The store.
    pub store: Arc<dyn KvBackend>,
    /// The call's namespace, fixed by the host from authenticated data.
    pub namespace: Namespace,
}

fn to_wit(err: KvError) -> Error {
    match err {
        KvError::TooLarge(m) => Error::TooLarge(m),
        KvError::QuotaExceeded(m) => Error::QuotaExceeded(m),
        KvError::NotAnInteger(m) => Error::NotAnInteger(m),
        KvError::Unavailable(m) => Error::Unavailable(m),
    }
}

impl Host for KvAccess {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, Error> {
        self.store.get(&self.namespace, &key).await.map_err(to_wit)
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), Error> {
        self.store.set(&self.namespace, &key, value).await.map_err(to_wit)
    }

    async fn delete(&mut self, key: String) -> Result<bool, Error> {
        self.store.delete(&self.namespace, &key).await.map_err(to_wit)
    }

    async fn increment(&mut self, key: String, delta: i64) -> Result<i64, Error> {
        self.store.increment(&self.namespace, &key, delta).await.map_err(to_wit)
    }

    async fn list_keys(&mut self, prefix: String) -> Result<Vec<String>, Error> {
        self.store.list_keys(&self.namespace, &prefix).await.map_err(to_wit)
    }

    async fn list_entries(&mut self, prefix: String, cursor: Option<String>, limit: u32) -> Result<Page, Error> {
        let (entries, next) = self
            .store
            .list(&self.namespace, &prefix, cursor.as_deref(), limit)
            .await
            .map_err(to_wit)?;
        Ok(Page {
            entries: entries.into_iter().map(|(key, value)| Entry { key, value }).collect(),
            next,
        })
    }

    async fn compare_and_set(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
    ) -> Result<bool, Error> {
        self.store
            .compare_and_set(&self.namespace, &key, expected, value)
            .await
            .map_err(to_wit)
    }
}
