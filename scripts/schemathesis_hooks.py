"""schemathesis hooks for p8fs: the byte limits of the REST API's strings, and a search's `ef`.

The contract limits names, ids, keys and paths in UTF-8 bytes; JSON Schema's `maxLength` counts
characters and nothing in JSON Schema counts bytes. The document states both: `maxLength: N`
(every accepted string has at most N characters, so every longer one is refused) and the
annotation `format: utf8-max-N-bytes` (its UTF-8 encoding has at most N bytes;
`comma-separated-utf8-max-128-bytes` for a list of such names). schemathesis ignores formats it
has no generator for, so by its reading a string of N characters of which some take several bytes
is valid, while the server refuses it with a 400 naming the field.

This hook reads those annotations from the document itself and drops the positive test cases
(the ones whose every part is meant to be valid) that hold such a string. Negative cases are left
alone: the server refuses them whatever else is wrong. It also drops the positive cases whose
query string holds a search's `ef` without `mode=approximate` (see `ef_without_approximate`).
Loaded by scripts/schemathesis.sh through SCHEMATHESIS_HOOKS.
"""

import re

import schemathesis
from schemathesis import GenerationMode

BYTE_LIMIT = re.compile(r"^utf8-max-(\d+)-bytes$")
LIST_LIMIT = re.compile(r"^comma-separated-utf8-max-(\d+)-bytes$")

# The document as loaded, for the schemas of every operation.
DOCUMENT = {}


@schemathesis.hook
def before_load_schema(context, raw_schema):
    DOCUMENT.clear()
    DOCUMENT.update(raw_schema)


def resolve(schema):
    while isinstance(schema, dict) and "$ref" in schema:
        node = DOCUMENT
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node.get(part, {})
        schema = node
    return schema if isinstance(schema, dict) else {}


def utf8_length(text):
    return len(text.encode("utf-8", "surrogatepass"))


def over_limit(schema, value):
    """Whether `value`, or a string anywhere in it, is longer in bytes than `schema` allows."""
    schema = resolve(schema)
    for keyword in ("anyOf", "oneOf", "allOf"):
        if any(over_limit(branch, value) for branch in schema.get(keyword, ())):
            return True
    if isinstance(value, str):
        format_ = schema.get("format", "")
        if match := BYTE_LIMIT.match(format_):
            return utf8_length(value) > int(match.group(1))
        if match := LIST_LIMIT.match(format_):
            return any(utf8_length(item) > int(match.group(1)) for item in value.split(","))
        return False
    if isinstance(value, list):
        return any(over_limit(schema.get("items", {}), item) for item in value)
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        names = schema.get("propertyNames", {})
        rest = schema.get("additionalProperties", {})
        return any(
            over_limit(names, key) or over_limit(properties.get(key, rest), item)
            for key, item in value.items()
        )
    return False


def parameters(operation, location):
    return {
        parameter.get("name"): parameter.get("schema", {})
        for parameter in operation.get("parameters", ())
        if parameter.get("in") == location
    }


def ef_without_approximate(values):
    """Whether `values` (query parameters) name `ef` without `mode=approximate`.

    A search's `ef` applies only to the approximate mode and is otherwise a 400 naming `ef`. A
    JSON body states that in its schema (`dependentSchemas`), which schemathesis follows; the
    parameters of a query string have no way to state a dependency between two of them.
    """
    return "ef" in values and values.get("mode") != "approximate"


def null_search_field(body):
    """Whether a JSON body sets a search's `mode` or `ef` to null, which its schema allows (null is
    as good as absent) but which schemathesis's negative cases take for an incorrect type."""
    return isinstance(body, dict) and any(body.get(name, 0) is None for name in ("mode", "ef"))


@schemathesis.hook
def filter_case(context, case):
    meta = case.meta
    if meta is not None and meta.generation.mode != GenerationMode.POSITIVE:
        return not null_search_field(getattr(case, "body", None))
    if meta is None:
        return True
    if ef_without_approximate(case.query or {}):
        return False
    operation = DOCUMENT.get("paths", {}).get(case.operation.path, {}).get(case.method.lower(), {})
    for location, values in (("path", case.path_parameters), ("query", case.query)):
        schemas = parameters(operation, location)
        if any(over_limit(schemas.get(name, {}), value) for name, value in (values or {}).items()):
            return False
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    if isinstance(case.body, (dict, list, str)) and over_limit(body.get("schema", {}), case.body):
        return False
    return True
