"""MkDocs hooks (mkdocs.yml `hooks:`): files of the site made from the code at build time, so they cannot drift.

reference/archviz-spec.schema.json is what `archviz schema` prints (630 KB, so it is not committed as a page).
"""

from __future__ import annotations

import json

from mkdocs.structure.files import File

SCHEMA = "reference/archviz-spec.schema.json"


def on_files(files, config):
    from archviz.spec.schema import spec_schema  # the formula path: no torch

    files.append(File.generated(config, SCHEMA, content=json.dumps(spec_schema(), indent=2) + "\n"))
    return files
