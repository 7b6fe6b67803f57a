//! `p8fs.v1.Kv`: key-value records (scopes `kv:read`, `kv:write`), values as JSON text.

use p8fs_auth::Scope;
use p8fs_core::{Error, JsonValue, Key, KeyPrefix, KvEntry, Resource, Version};
use tonic::{Request, Response, Status};

use crate::error::GrpcResult;
use crate::pb::{self, kv_server::Kv};
use crate::{GrpcState, json_value, limit, ttl};

/// The `Kv` service.
pub struct KvService(pub GrpcState);

fn record(entry: KvEntry) -> pb::KvRecord {
    pb::KvRecord {
        key: entry.key.into_string(),
        value_json: entry.value.to_string(),
        version: entry.version.0,
        expires_at: entry.expires_at,
    }
}

fn value(text: &str) -> Result<JsonValue, Status> {
    JsonValue::new(json_value("value_json", text)?)
        .map_err(|e| e.renamed("value_json"))
        .grpc()
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::KvRecord>, Status> {
        let caller = self.0.caller(request.metadata(), Scope::KvRead).await?;
        let key = Key::new(request.into_inner().key).grpc()?;
        // The stored text as it is: the same text `record` would write out, without a parse.
        let entry = self
            .0
            .backend
            .get_text(&caller.tenant, &key)
            .await
            .grpc()?
            .ok_or_else(|| Error::not_found(Resource::Key, &key))
            .grpc()?;
        Ok(Response::new(pb::KvRecord {
            key: key.into_string(),
            value_json: entry.value.into_string(),
            version: entry.version.0,
            expires_at: entry.expires_at,
        }))
    }

    async fn put(&self, request: Request<pb::PutRequest>) -> Result<Response<pb::Written>, Status> {
        let caller = self.0.caller(request.metadata(), Scope::KvWrite).await?;
        let request = request.into_inner();
        let key = Key::new(request.key).grpc()?;
        let value = value(&request.value_json)?;
        let ttl = ttl(request.ttl_ms)?;
        let version = self
            .0
            .backend
            .put(&caller.tenant, &key, &value, ttl)
            .await
            .grpc()?;
        Ok(Response::new(pb::Written {
            key: key.into_string(),
            version: version.0,
        }))
    }

    async fn put_if_absent(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::Written>, Status> {
        let caller = self.0.caller(request.metadata(), Scope::KvWrite).await?;
        let request = request.into_inner();
        let key = Key::new(request.key).grpc()?;
        let value = value(&request.value_json)?;
        let ttl = ttl(request.ttl_ms)?;
        let version = self
            .0
            .backend
            .put_if_absent(&caller.tenant, &key, &value, ttl)
            .await
            .grpc()?;
        Ok(Response::new(pb::Written {
            key: key.into_string(),
            version: version.0,
        }))
    }

    async fn compare_and_swap(
        &self,
        request: Request<pb::CompareAndSwapRequest>,
    ) -> Result<Response<pb::Written>, Status> {
        let caller = self.0.caller(request.metadata(), Scope::KvWrite).await?;
        let request = request.into_inner();
        let key = Key::new(request.key).grpc()?;
        let value = value(&request.value_json)?;
        let ttl = ttl(request.ttl_ms)?;
        let version = self
            .0
            .backend
            .compare_and_swap(
                &caller.tenant,
                &key,
                Version(request.expected_version),
                &value,
                ttl,
            )
            .await
            .grpc()?;
        Ok(Response::new(pb::Written {
            key: key.into_string(),
            version: version.0,
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::Deleted>, Status> {
        let caller = self.0.caller(request.metadata(), Scope::KvWrite).await?;
        let key = Key::new(request.into_inner().key).grpc()?;
        if self.0.backend.delete(&caller.tenant, &key).await.grpc()? {
            Ok(Response::new(pb::Deleted {}))
        } else {
            Err(Error::not_found(Resource::Key, &key)).grpc()
        }
    }

    async fn scan(
        &self,
        request: Request<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        let caller = self.0.caller(request.metadata(), Scope::KvRead).await?;
        let request = request.into_inner();
        let prefix = KeyPrefix::new(request.prefix).grpc()?;
        let start_after = request
            .start_after
            .map(|s| Key::new(s).map_err(|e| e.renamed("start_after")))
            .transpose()
            .grpc()?;
        let limit = limit(request.limit)?;
        let page = self
            .0
            .backend
            .scan(&caller.tenant, &prefix, start_after.as_ref(), limit)
            .await
            .grpc()?;
        Ok(Response::new(pb::ScanResponse {
            items: page.items.into_iter().map(record).collect(),
            next: page.next.map(Key::into_string),
        }))
    }
}
