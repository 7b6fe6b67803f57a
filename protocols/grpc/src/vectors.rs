//! `p8fs.v1.Vectors`: collections, records and search, exact or approximate (scopes
//! `vectors:read`, `vectors:write`).

use p8fs_auth::Scope;
use p8fs_core::vector::{SearchMode, components, search_with, upsert};
use p8fs_core::{CollectionName, CollectionSpec, Error, Filter, Limit, Metric, RecordId, Resource};
use tonic::{Request, Response, Status};

use crate::error::GrpcResult;
use crate::pb::{self, vectors_server::Vectors};
use crate::{GrpcState, json_object, json_text, json_value, ttl};

/// The `Vectors` service.
pub struct VectorsService(pub GrpcState);

fn floats(field: &'static str, values: Vec<f32>) -> Result<Vec<f32>, Status> {
    components(field, values.into_iter().map(f64::from).collect()).grpc()
}

/// The contract's mode of a request's `mode` and `ef`, checked as every front-end checks them
/// ([`SearchMode::parse`]); an enum value this server does not know is refused naming `mode`.
pub(crate) fn search_mode(mode: i32, ef: Option<u32>) -> Result<SearchMode, Status> {
    let ef = ef.map(u64::from);
    let mode = match pb::SearchMode::try_from(mode) {
        Ok(pb::SearchMode::Unspecified) => None,
        Ok(pb::SearchMode::Exact) => Some("exact"),
        Ok(pb::SearchMode::Approximate) => Some("approximate"),
        Err(_) => {
            return Err(Error::invalid(
                "mode",
                "must be SEARCH_MODE_EXACT or SEARCH_MODE_APPROXIMATE",
            ))
            .grpc();
        }
    };
    SearchMode::parse(mode, ef).grpc()
}

#[tonic::async_trait]
impl Vectors for VectorsService {
    async fn create_collection(
        &self,
        request: Request<pb::CreateCollectionRequest>,
    ) -> Result<Response<pb::Collection>, Status> {
        let caller = self
            .0
            .caller(request.metadata(), Scope::VectorsWrite)
            .await?;
        let request = request.into_inner();
        let metric = Metric::parse(&request.metric)
            .map_err(|e| e.renamed("metric"))
            .grpc()?;
        let spec =
            CollectionSpec::new(request.name, u64::from(request.dimension), metric).grpc()?;
        let created = self
            .0
            .backend
            .create_collection(&caller.tenant, &spec)
            .await
            .grpc()?;
        Ok(Response::new(pb::Collection {
            name: spec.name.as_str().to_owned(),
            dimension: request.dimension,
            metric: spec.metric.as_str().to_owned(),
            created,
        }))
    }

    async fn upsert(
        &self,
        request: Request<pb::UpsertRequest>,
    ) -> Result<Response<pb::Upserted>, Status> {
        let caller = self
            .0
            .caller(request.metadata(), Scope::VectorsWrite)
            .await?;
        let request = request.into_inner();
        let name = CollectionName::new(request.collection)
            .map_err(|e| e.renamed("collection"))
            .grpc()?;
        let id = RecordId::new(request.id).grpc()?;
        let metadata = json_object("metadata_json", &request.metadata_json)?;
        let ttl = ttl(request.ttl_ms)?;
        let vector = floats("vector", request.vector)?;
        upsert(
            self.0.backend.as_ref(),
            &caller.tenant,
            &name,
            &id,
            vector,
            &metadata,
            ttl,
        )
        .await
        .grpc()?;
        Ok(Response::new(pb::Upserted {}))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteVectorRequest>,
    ) -> Result<Response<pb::VectorDeleted>, Status> {
        let caller = self
            .0
            .caller(request.metadata(), Scope::VectorsWrite)
            .await?;
        let request = request.into_inner();
        let name = CollectionName::new(request.collection)
            .map_err(|e| e.renamed("collection"))
            .grpc()?;
        let id = RecordId::new(request.id).grpc()?;
        if self
            .0
            .backend
            .delete_vector(&caller.tenant, &name, &id)
            .await
            .grpc()?
        {
            Ok(Response::new(pb::VectorDeleted {}))
        } else {
            Err(Error::not_found(Resource::VectorRecord, &id)).grpc()
        }
    }

    async fn search(
        &self,
        request: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        let caller = self
            .0
            .caller(request.metadata(), Scope::VectorsRead)
            .await?;
        let request = request.into_inner();
        let name = CollectionName::new(request.collection)
            .map_err(|e| e.renamed("collection"))
            .grpc()?;
        let k = Limit::top_k(u64::from(request.k.unwrap_or(10)))
            .map_err(|e| e.renamed("k"))
            .grpc()?;
        let mut clauses = Vec::with_capacity(request.filter.len());
        for (path, text) in request.filter {
            clauses.push((path, json_value("filter", &text)?));
        }
        let filter = Filter::new(clauses).grpc()?;
        let mode = search_mode(request.mode, request.ef)?;
        let query = floats("query", request.query)?;
        let hits = search_with(
            self.0.backend.as_ref(),
            &caller.tenant,
            &name,
            query,
            k,
            &filter,
            mode,
        )
        .await
        .grpc()?;
        Ok(Response::new(pb::SearchResponse {
            hits: hits
                .into_iter()
                .map(|hit| pb::Hit {
                    id: hit.id.into_string(),
                    distance: hit.distance,
                    metadata_json: json_text(&hit.metadata),
                })
                .collect(),
        }))
    }
}
