//! Schemas for the document that the derive macros cannot write: JSON values as the contract
//! admits them. Every string and object key in a stored value, metadata or properties object,
//! filter or find operand must be free of U+0000 (`p8fs_core::validate`), at any depth, so these
//! schemas are recursive: [`AnyJson`] is `#/components/schemas/Json`, whose arrays and objects
//! hold `Json` again.
//!
//! What stays in the descriptions only: the serialized size limits (1 MiB for a key-value value,
//! 64 KiB for the rest) and the nesting limit of 64 levels.

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    AdditionalProperties, AnyOfBuilder, ArrayBuilder, ObjectBuilder, Ref, Schema, Type,
};
use utoipa::{PartialSchema, ToSchema};

/// A string without U+0000.
const NO_NUL: &str = "^[^\\u0000]*$";

fn json_ref() -> Ref {
    Ref::from_schema_name("Json")
}

/// Object keys without U+0000, values [`AnyJson`].
fn object_without_nul() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(NO_NUL)),
        ))
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::Ref(json_ref()))))
}

/// Any JSON value whose strings and object keys, at every depth, contain no U+0000.
pub(crate) struct AnyJson;

impl PartialSchema for AnyJson {
    fn schema() -> RefOr<Schema> {
        AnyOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .item(ObjectBuilder::new().schema_type(Type::Number))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(NO_NUL)),
            )
            .item(ArrayBuilder::new().items(json_ref()))
            .item(object_without_nul())
            .description(Some(
                "Any JSON value whose strings and object keys contain no U+0000, nested at most \
                 64 levels deep.",
            ))
            .into()
    }
}

impl ToSchema for AnyJson {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Json")
    }
}

/// A JSON object (metadata, properties): keys and, at every depth, strings without U+0000.
pub(crate) struct AnyJsonObject;

impl PartialSchema for AnyJsonObject {
    fn schema() -> RefOr<Schema> {
        object_without_nul()
            .description(Some(
                "A JSON object whose strings and keys contain no U+0000, at most 64 KiB \
                 serialized, nested at most 64 levels deep.",
            ))
            .into()
    }
}

impl ToSchema for AnyJsonObject {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("JsonObject")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((AnyJson::name().into_owned(), AnyJson::schema()));
    }
}
