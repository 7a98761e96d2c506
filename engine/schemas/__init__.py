"""The published contracts: the workflow definition's JSON Schema, the CloudEvents' data schemas and the AsyncAPI
document of the change feed. The JSON files beside this module are the sources; these functions read them.
"""

from engine.schemas.definition import MAX_PROBLEMS, definition_problems, definition_schema, json_path, load

__all__ = ["MAX_PROBLEMS", "definition_problems", "definition_schema", "json_path", "load"]
