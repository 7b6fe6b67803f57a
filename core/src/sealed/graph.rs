//! Graph records through the sealing layer: node and edge properties sealed (no token tree: the
//! contract never filters on them); ids, labels, relations and weights as they are.

use async_trait::async_trait;
use serde_json::Value;

use super::json::{open_object, seal};
use super::keys::DataKey;
use super::{Sealed, ctx};
use crate::error::Result;
use crate::graph::{Direction, EdgeRecord, GraphStore, NodePage, NodeRecord};
use crate::types::{
    JsonMap, JsonObject, Label, Limit, NodeId, Page, Rel, RelFilter, TenantId, Ttl, Weight,
};
use crate::validate::stored;

impl Sealed {
    pub(super) fn seal_properties(
        &self,
        key: &DataKey,
        tenant: &TenantId,
        record: &[&[u8]],
        properties: &JsonObject,
    ) -> Result<JsonObject> {
        let value = Value::Object(properties.get().clone());
        let sealed = seal(key, &ctx(tenant, "graph", record), &value, false)?;
        Ok(stored::object(sealed))
    }

    pub(super) fn open_properties(
        &self,
        key: &DataKey,
        tenant: &TenantId,
        record: &[&[u8]],
        properties: JsonMap,
    ) -> Result<JsonMap> {
        open_object(
            key,
            &ctx(tenant, "graph", record),
            properties,
            self.plain_ok(),
        )
    }

    fn open_node(
        &self,
        key: &DataKey,
        tenant: &TenantId,
        mut node: NodeRecord,
    ) -> Result<NodeRecord> {
        let properties = std::mem::take(&mut node.properties);
        node.properties =
            self.open_properties(key, tenant, &[b"node", node.id.as_bytes()], properties)?;
        Ok(node)
    }

    fn open_edge(
        &self,
        key: &DataKey,
        tenant: &TenantId,
        mut edge: EdgeRecord,
    ) -> Result<EdgeRecord> {
        let properties = std::mem::take(&mut edge.properties);
        edge.properties = self.open_properties(
            key,
            tenant,
            &[
                b"edge",
                edge.src.as_bytes(),
                edge.rel.as_bytes(),
                edge.dst.as_bytes(),
            ],
            properties,
        )?;
        Ok(edge)
    }
}

#[async_trait]
impl GraphStore for Sealed {
    async fn put_node(
        &self,
        tenant: &TenantId,
        id: &NodeId,
        label: &Label,
        properties: &JsonObject,
        ttl: Option<Ttl>,
    ) -> Result<()> {
        let dk = self.key(tenant).await?;
        let sealed = self.seal_properties(&dk, tenant, &[b"node", id.as_bytes()], properties)?;
        self.inner.put_node(tenant, id, label, &sealed, ttl).await
    }

    async fn get_node(&self, tenant: &TenantId, id: &NodeId) -> Result<Option<NodeRecord>> {
        let dk = self.key(tenant).await?;
        match self.inner.get_node(tenant, id).await? {
            Some(node) => Ok(Some(self.open_node(&dk, tenant, node)?)),
            None => Ok(None),
        }
    }

    async fn get_nodes(&self, tenant: &TenantId, ids: &[NodeId]) -> Result<Vec<NodeRecord>> {
        let dk = self.key(tenant).await?;
        self.inner
            .get_nodes(tenant, ids)
            .await?
            .into_iter()
            .map(|n| self.open_node(&dk, tenant, n))
            .collect()
    }

    async fn delete_node(&self, tenant: &TenantId, id: &NodeId) -> Result<bool> {
        Self::refuse_keyring(tenant)?;
        self.inner.delete_node(tenant, id).await
    }

    async fn list_nodes(
        &self,
        tenant: &TenantId,
        start_after: Option<&NodeId>,
        limit: Limit,
    ) -> Result<NodePage> {
        let dk = self.key(tenant).await?;
        let page = self.inner.list_nodes(tenant, start_after, limit).await?;
        let items = page
            .items
            .into_iter()
            .map(|n| self.open_node(&dk, tenant, n))
            .collect::<Result<_>>()?;
        Ok(Page {
            items,
            next: page.next,
        })
    }

    async fn put_edge(
        &self,
        tenant: &TenantId,
        src: &NodeId,
        rel: &Rel,
        dst: &NodeId,
        weight: Weight,
        properties: &JsonObject,
        ttl: Option<Ttl>,
    ) -> Result<()> {
        let dk = self.key(tenant).await?;
        let sealed = self.seal_properties(
            &dk,
            tenant,
            &[b"edge", src.as_bytes(), rel.as_bytes(), dst.as_bytes()],
            properties,
        )?;
        self.inner
            .put_edge(tenant, src, rel, dst, weight, &sealed, ttl)
            .await
    }

    async fn get_edge(
        &self,
        tenant: &TenantId,
        src: &NodeId,
        rel: &Rel,
        dst: &NodeId,
    ) -> Result<Option<EdgeRecord>> {
        let dk = self.key(tenant).await?;
        match self.inner.get_edge(tenant, src, rel, dst).await? {
            Some(edge) => Ok(Some(self.open_edge(&dk, tenant, edge)?)),
            None => Ok(None),
        }
    }

    async fn delete_edge(
        &self,
        tenant: &TenantId,
        src: &NodeId,
        rel: &Rel,
        dst: &NodeId,
    ) -> Result<bool> {
        Self::refuse_keyring(tenant)?;
        self.inner.delete_edge(tenant, src, rel, dst).await
    }

    async fn edges_of(
        &self,
        tenant: &TenantId,
        nodes: &[NodeId],
        direction: Direction,
        rels: &RelFilter,
    ) -> Result<Vec<EdgeRecord>> {
        let dk = self.key(tenant).await?;
        self.inner
            .edges_of(tenant, nodes, direction, rels)
            .await?
            .into_iter()
            .map(|e| self.open_edge(&dk, tenant, e))
            .collect()
    }
}
