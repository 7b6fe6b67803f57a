//! Vector records through the sealing layer: metadata sealed with its token tree, embeddings and
//! ids as they are; filters are rewritten onto the token tree.

use async_trait::async_trait;

use super::json::{open_object, seal, token_filter};
use super::keys::DataKey;
use super::{Sealed, ctx};
use crate::error::Result;
use crate::types::{
    CollectionName, CollectionSpec, Embedding, Filter, JsonObject, Limit, Page, RecordId, TenantId,
    Ttl,
};
use crate::validate::stored;
use crate::vector::{SearchMode, VectorPage, VectorRecord, VectorStore};

impl Sealed {
    fn open_vector(
        &self,
        key: &DataKey,
        tenant: &TenantId,
        collection: &CollectionName,
        mut record: VectorRecord,
    ) -> Result<VectorRecord> {
        let metadata = std::mem::take(&mut record.metadata);
        record.metadata = open_object(
            key,
            &ctx(
                tenant,
                "vector",
                &[collection.as_bytes(), record.id.as_bytes()],
            ),
            metadata,
            self.plain_ok(),
        )?;
        Ok(record)
    }
}

#[async_trait]
impl VectorStore for Sealed {
    async fn create_collection(&self, tenant: &TenantId, spec: &CollectionSpec) -> Result<bool> {
        Self::refuse_keyring(tenant)?;
        self.inner.create_collection(tenant, spec).await
    }

    async fn collection(
        &self,
        tenant: &TenantId,
        name: &CollectionName,
    ) -> Result<Option<CollectionSpec>> {
        Self::refuse_keyring(tenant)?;
        self.inner.collection(tenant, name).await
    }

    async fn list_collections(&self, tenant: &TenantId) -> Result<Vec<CollectionSpec>> {
        Self::refuse_keyring(tenant)?;
        self.inner.list_collections(tenant).await
    }

    async fn drop_collection(&self, tenant: &TenantId, name: &CollectionName) -> Result<bool> {
        Self::refuse_keyring(tenant)?;
        self.inner.drop_collection(tenant, name).await
    }

    async fn upsert_vector(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        id: &RecordId,
        vector: &Embedding,
        metadata: &JsonObject,
        ttl: Option<Ttl>,
    ) -> Result<()> {
        let dk = self.key(tenant).await?;
        let value = serde_json::Value::Object(metadata.get().clone());
        let sealed = seal(
            &dk,
            &ctx(tenant, "vector", &[collection.as_bytes(), id.as_bytes()]),
            &value,
            true,
        )?;
        self.inner
            .upsert_vector(tenant, collection, id, vector, &stored::object(sealed), ttl)
            .await
    }

    async fn get_vector(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        id: &RecordId,
    ) -> Result<Option<VectorRecord>> {
        let dk = self.key(tenant).await?;
        match self.inner.get_vector(tenant, collection, id).await? {
            Some(record) => Ok(Some(self.open_vector(&dk, tenant, collection, record)?)),
            None => Ok(None),
        }
    }

    async fn delete_vector(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        id: &RecordId,
    ) -> Result<bool> {
        Self::refuse_keyring(tenant)?;
        self.inner.delete_vector(tenant, collection, id).await
    }

    async fn list_vectors(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        start_after: Option<&RecordId>,
        limit: Limit,
    ) -> Result<VectorPage> {
        let dk = self.key(tenant).await?;
        let page = self
            .inner
            .list_vectors(tenant, collection, start_after, limit)
            .await?;
        let items = page
            .items
            .into_iter()
            .map(|r| self.open_vector(&dk, tenant, collection, r))
            .collect::<Result<_>>()?;
        Ok(Page {
            items,
            next: page.next,
        })
    }

    async fn search_candidates(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        query: &Embedding,
        k: Limit,
        filter: &Filter,
    ) -> Result<Vec<VectorRecord>> {
        self.candidates(tenant, collection, query, k, filter, SearchMode::Exact)
            .await
    }

    async fn approximate_candidates(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        query: &Embedding,
        k: Limit,
        filter: &Filter,
        ef: usize,
    ) -> Result<Vec<VectorRecord>> {
        let mode = SearchMode::Approximate { ef };
        self.candidates(tenant, collection, query, k, filter, mode)
            .await
    }
}

impl Sealed {
    /// Candidates from the inner store in `mode`, with `filter` rewritten onto the token tree
    /// (and, while plaintext is still readable, also as written, for records stored before).
    async fn candidates(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        query: &Embedding,
        k: Limit,
        filter: &Filter,
        mode: SearchMode,
    ) -> Result<Vec<VectorRecord>> {
        let dk = self.key(tenant).await?;
        let inner = |filter: Filter| async move {
            match mode {
                SearchMode::Exact => {
                    self.inner
                        .search_candidates(tenant, collection, query, k, &filter)
                        .await
                }
                SearchMode::Approximate { ef } => {
                    self.inner
                        .approximate_candidates(tenant, collection, query, k, &filter, ef)
                        .await
                }
            }
        };
        let mut found = if filter.clauses().is_empty() {
            inner(Filter::none()).await?
        } else {
            let mut found = inner(token_filter(&dk, filter)).await?;
            if self.plain_ok() {
                found.extend(inner(filter.clone()).await?);
            }
            found
        };
        found
            .drain(..)
            .map(|r| self.open_vector(&dk, tenant, collection, r))
            .collect()
    }
}
