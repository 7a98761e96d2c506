"""The documentation site's generated reference pages (`make docs`; mkdocs.yml names `hooks.py`).

Each `*_reference` module turns one declaration in the code into Markdown: the CLI from its Typer app, the HTTP API
from the OpenAPI document, the configuration from the settings declarations, the definition and the change feed
from their JSON Schemas and AsyncAPI document. They run at every build, so the pages cannot drift from the code.
"""
