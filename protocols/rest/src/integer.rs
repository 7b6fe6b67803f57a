//! Integer fields of JSON bodies, read the way JSON Schema defines `integer`: any number with a
//! zero fractional part, so `200.0` and `2e2` are the integer 200 while `1.5` is refused with an
//! error that the body extractor reports under the field's name.
//!
//! Integral values outside the Rust type's range saturate (to 0 for an unsigned field, to
//! `i64::MIN`/`i64::MAX` for a signed one); every integer field of this API has a range checked by
//! `p8fs_core::validate` that excludes those ends, so they are refused there with the field's own
//! range in the message. Query strings are not read through here: a query parameter is text, and
//! `limit=1.5` or `limit=1.0` is not the text of an integer.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, Visitor};

/// A Rust integer type that an integral JSON number converts to.
trait Integral: Sized {
    fn from_i64(value: i64) -> Self;
    fn from_u64(value: u64) -> Self;
    /// `value` is finite and integral.
    fn from_integral_f64(value: f64) -> Self;
}

impl Integral for i64 {
    fn from_i64(value: i64) -> Self {
        value
    }

    fn from_u64(value: u64) -> Self {
        i64::try_from(value).unwrap_or(i64::MAX)
    }

    fn from_integral_f64(value: f64) -> Self {
        // `as` saturates at the ends of the range.
        value as i64
    }
}

impl Integral for u64 {
    fn from_i64(value: i64) -> Self {
        u64::try_from(value).unwrap_or(0)
    }

    fn from_u64(value: u64) -> Self {
        value
    }

    fn from_integral_f64(value: f64) -> Self {
        // `as` saturates: negative values become 0.
        value as u64
    }
}

struct IntegralVisitor<T>(PhantomData<T>);

impl<'de, T: Integral> Visitor<'de> for IntegralVisitor<T> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an integer")
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<T, E> {
        Ok(T::from_i64(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<T, E> {
        Ok(T::from_u64(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<T, E> {
        if value.is_finite() && value.fract() == 0.0 {
            Ok(T::from_integral_f64(value))
        } else {
            Err(E::custom(format_args!(
                "must be an integer; {value} has a fractional part"
            )))
        }
    }
}

struct OptionVisitor<T>(PhantomData<T>);

impl<'de, T: Integral> Visitor<'de> for OptionVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an integer or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<T>, D::Error> {
        deserializer
            .deserialize_any(IntegralVisitor(PhantomData))
            .map(Some)
    }
}

/// `#[serde(deserialize_with = "integer::required_u64")]`.
pub(crate) fn required_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    deserializer.deserialize_any(IntegralVisitor(PhantomData))
}

/// `#[serde(default, deserialize_with = "integer::optional_u64")]`: absent or `null` is `None`.
pub(crate) fn optional_u64<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    deserializer.deserialize_option(OptionVisitor(PhantomData))
}

/// `#[serde(default, deserialize_with = "integer::optional_i64")]`: absent or `null` is `None`.
pub(crate) fn optional_i64<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    deserializer.deserialize_option(OptionVisitor(PhantomData))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[serde(default, deserialize_with = "super::optional_i64")]
        ttl_ms: Option<i64>,
        #[serde(default, deserialize_with = "super::optional_u64")]
        limit: Option<u64>,
        #[serde(default, deserialize_with = "super::required_u64")]
        dimension: u64,
    }

    fn parse(text: &str) -> Result<Body, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn integral_numbers_in_any_notation_are_integers() {
        let body = parse(r#"{"ttl_ms": 200.0, "limit": 2e2, "dimension": 3}"#).unwrap();
        assert_eq!(body.ttl_ms, Some(200));
        assert_eq!(body.limit, Some(200));
        assert_eq!(body.dimension, 3);
        let body = parse(r#"{"ttl_ms": -0.0, "limit": null}"#).unwrap();
        assert_eq!(body.ttl_ms, Some(0));
        assert_eq!(body.limit, None);
        let body = parse("{}").unwrap();
        assert_eq!((body.ttl_ms, body.limit), (None, None));
    }

    #[test]
    fn fractions_and_other_types_are_refused() {
        let error = parse(r#"{"ttl_ms": 1.5}"#).unwrap_err();
        assert!(error.contains("must be an integer; 1.5"), "{error}");
        let error = parse(r#"{"limit": "5"}"#).unwrap_err();
        assert!(error.contains("expected an integer"), "{error}");
        assert!(parse(r#"{"dimension": true}"#).is_err());
    }

    #[test]
    fn out_of_range_values_saturate_for_the_range_check() {
        let body =
            parse(r#"{"ttl_ms": 1e300, "limit": -5, "dimension": 18446744073709551615}"#).unwrap();
        assert_eq!(body.ttl_ms, Some(i64::MAX));
        assert_eq!(body.limit, Some(0));
        assert_eq!(body.dimension, u64::MAX);
        let body = parse(r#"{"ttl_ms": 9223372036854775808, "limit": -1e300}"#).unwrap();
        assert_eq!(body.ttl_ms, Some(i64::MAX));
        assert_eq!(body.limit, Some(0));
    }
}
