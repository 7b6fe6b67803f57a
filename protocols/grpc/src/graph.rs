//! `p8fs.v1.Graph`: nodes, edges and traversals (scopes `graph:read`, `graph:write`).

use p8fs_auth::Scope;
use p8fs_core::traverse::{PathQuery, neighbors, shortest_path};
use p8fs_core::{
    Depth, Direction, EdgeRecord, Error, Label, NodeId, Rel, RelFilter, Resource, Weight,
};
use tonic::{Request, Response, Status};

use crate::error::GrpcResult;
use crate::pb::{self, graph_server::Graph};
use crate::{GrpcState, json_object, json_text, limit, ttl};

/// The `Graph` service.
pub struct GraphService(pub GrpcState);

fn direction(value: &str) -> Result<Direction, Status> {
    if value.is_empty() {
        Ok(Direction::Out)
    } else {
        Direction::parse(value)
            .map_err(|e| e.renamed("direction"))
            .grpc()
    }
}

fn rels(values: Vec<String>) -> Result<RelFilter, Status> {
    if values.is_empty() {
        Ok(RelFilter::any())
    } else {
        RelFilter::new(values).map_err(|e| e.renamed("rels")).grpc()
    }
}

fn edge_key(src: String, rel: String, dst: String) -> Result<(NodeId, Rel, NodeId), Status> {
    Ok((
        NodeId::named("src", src).grpc()?,
        Rel::new(rel).grpc()?,
        NodeId::named("dst", dst).grpc()?,
    ))
}

fn edge(record: EdgeRecord) -> pb::Edge {
    pb::Edge {
        src: record.src.into_string(),
        rel: record.rel.into_string(),
        dst: record.dst.into_string(),
        weight: record.weight,
        properties_json: json_text(&record.properties),
        expires_at: record.expires_at,
    }
}

#[tonic::async_trait]
impl Graph for GraphService {
    async fn put_node(
        &self,
        request: Request<pb::PutNodeRequest>,
    ) -> Result<Response<pb::NodeWritten>, Status> {
        let caller = self.0.caller(request.metadata(), Scope::GraphWrite).await?;
        let request = request.into_inner();
        let id = NodeId::new(request.id).grpc()?;
        let label = Label::new(request.label).grpc()?;
        let properties = json_object("properties_json", &request.properties_json)?;
        let ttl = ttl(request.ttl_ms)?;
        self.0
            .backend
            .put_node(&caller.tenant, &id, &label, &properties, ttl)
            .await
            .grpc()?;
        Ok(Response::new(pb::NodeWritten {}))
    }

    async fn get_node(
        &self,
        request: Request<pb::GetNodeRequest>,
    ) -> Result<Response<pb::Node>, Status> {
        let caller = self.0.caller(request.metadata(), Scope::GraphRead).await?;
        let id = NodeId::new(request.into_inner().id).grpc()?;
        let node = self
            .0
            .backend
            .get_node(&caller.tenant, &id)
            .await
            .grpc()?
            .ok_or_else(|| Error::not_found(Resource::Node, &id))
            .grpc()?;
        Ok(Response::new(pb::Node {
            id: node.id.into_string(),
            label: node.label.into_string(),
            properties_json: json_text(&node.properties),
            expires_at: node.expires_at,
        }))
    }

    async fn delete_node(
        &self,
        request: Request<pb::DeleteNodeRequest>,
    ) -> Result<Response<pb::NodeDeleted>, Status> {
        let caller = self.0.caller(request.metadata(), Scope::GraphWrite).await?;
        let id = NodeId::new(request.into_inner().id).grpc()?;
        if self
            .0
            .backend
            .delete_node(&caller.tenant, &id)
            .await
            .grpc()?
        {
            Ok(Response::new(pb::NodeDeleted {}))
        } else {
            Err(Error::not_found(Resource::Node, &id)).grpc()
        }
    }

    async fn put_edge(
        &self,
        request: Request<pb::PutEdgeRequest>,
    ) -> Result<Response<pb::EdgeWritten>, Status> {
        let caller = self.0.caller(request.metadata(), Scope::GraphWrite).await?;
        let request = request.into_inner();
        let (src, rel, dst) = edge_key(request.src, request.rel, request.dst)?;
        let weight = request
            .weight
            .map_or(Ok(Weight::ONE), Weight::new)
            .map_err(|e| e.renamed("weight"))
            .grpc()?;
        let properties = json_object("properties_json", &request.properties_json)?;
        let ttl = ttl(request.ttl_ms)?;
        self.0
            .backend
            .put_edge(&caller.tenant, &src, &rel, &dst, weight, &properties, ttl)
            .await
            .grpc()?;
        Ok(Response::new(pb::EdgeWritten {}))
    }

    async fn delete_edge(
        &self,
        request: Request<pb::DeleteEdgeRequest>,
    ) -> Result<Response<pb::EdgeDeleted>, Status> {
        let caller = self.0.caller(request.metadata(), Scope::GraphWrite).await?;
        let request = request.into_inner();
        let (src, rel, dst) = edge_key(request.src, request.rel, request.dst)?;
        if self
            .0
            .backend
            .delete_edge(&caller.tenant, &src, &rel, &dst)
            .await
            .grpc()?
        {
            Ok(Response::new(pb::EdgeDeleted {}))
        } else {
            Err(Error::not_found(
                Resource::Edge,
                format!("{src} -{rel}-> {dst}"),
            ))
            .grpc()
        }
    }

    async fn neighbors(
        &self,
        request: Request<pb::NeighborsRequest>,
    ) -> Result<Response<pb::NeighborsResponse>, Status> {
        let caller = self.0.caller(request.metadata(), Scope::GraphRead).await?;
        let request = request.into_inner();
        let id = NodeId::new(request.id).grpc()?;
        let direction = direction(&request.direction)?;
        let rels = rels(request.rels)?;
        let depth = Depth::neighbors(u64::from(request.depth.unwrap_or(1)))
            .map_err(|e| e.renamed("depth"))
            .grpc()?;
        let limit = limit(request.limit)?;
        let found = neighbors(
            self.0.backend.as_ref(),
            &caller.tenant,
            &id,
            direction,
            &rels,
            depth,
            limit,
        )
        .await
        .grpc()?;
        Ok(Response::new(pb::NeighborsResponse {
            items: found
                .into_iter()
                .map(|n| pb::Reached {
                    id: n.id.into_string(),
                    hops: n.hops,
                })
                .collect(),
        }))
    }

    async fn shortest_path(
        &self,
        request: Request<pb::ShortestPathRequest>,
    ) -> Result<Response<pb::ShortestPathResponse>, Status> {
        let caller = self.0.caller(request.metadata(), Scope::GraphRead).await?;
        let request = request.into_inner();
        let query = PathQuery {
            src: NodeId::named("src", request.src).grpc()?,
            dst: NodeId::named("dst", request.dst).grpc()?,
            direction: direction(&request.direction)?,
            rels: rels(request.rels)?,
            max_depth: Depth::path(u64::from(request.max_depth.unwrap_or(6)))
                .map_err(|e| e.renamed("max_depth"))
                .grpc()?,
            weighted: request.weighted,
        };
        let found = shortest_path(self.0.backend.as_ref(), &caller.tenant, &query)
            .await
            .grpc()?;
        Ok(Response::new(pb::ShortestPathResponse {
            path: found.map(|path| pb::Path {
                nodes: path.nodes.into_iter().map(NodeId::into_string).collect(),
                edges: path.edges.into_iter().map(edge).collect(),
                total: path.total,
            }),
        }))
    }
}
