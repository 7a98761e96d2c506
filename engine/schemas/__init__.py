"""The published contracts: the workflow definition's JSON Schema, the CloudEvents' data schemas and the AsyncAPI
document of the change feed. The JSON files beside this module are the sources; these functions read them.
"""

from engine.schemas.definition import MAX_PROBLEMS, definition_problems, definition_schema, json_path, load
from engine.schemas.events import (
    DEFAULT_SCHEMA_BASE,
    EVENT_SCHEMA_PATH,
    asyncapi_document,
    dataschema,
    event_schema,
    event_types,
)

__all__ = ["DEFAULT_SCHEMA_BASE", "EVENT_SCHEMA_PATH", "MAX_PROBLEMS", "asyncapi_document", "dataschema",
           "definition_problems", "definition_schema", "event_schema", "event_types", "json_path", "load"]
