//! The scalars of the schema beyond GraphQL's own: `Long` (a 64-bit integer, for milliseconds
//! and sizes: GraphQL's `Int` is 32-bit) and `JSON` (any JSON value, as async-graphql defines it).

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};

/// A signed 64-bit integer sent as a JSON number: milliseconds since the Unix epoch, a ttl in
/// milliseconds, a size in bytes. Values past 2^53 lose precision in JavaScript clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Long(pub i64);

#[Scalar(name = "Long")]
impl ScalarType for Long {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::Number(number) => number
                .as_i64()
                .map(Long)
                .ok_or_else(|| InputValueError::custom("must be an integer in the 64-bit range")),
            // Clients that cannot send big numbers send them as decimal strings.
            Value::String(text) => text
                .parse::<i64>()
                .map(Long)
                .map_err(|_| InputValueError::custom("must be an integer in the 64-bit range")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::from(self.0)
    }
}

impl From<i64> for Long {
    fn from(value: i64) -> Self {
        Long(value)
    }
}

impl From<u64> for Long {
    fn from(value: u64) -> Self {
        Long(i64::try_from(value).unwrap_or(i64::MAX))
    }
}
