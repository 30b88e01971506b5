"""A JSON Schema (draft 2020-12) of the spec language, generated from the op registry, for editors and checks.

Every op name and alias is an entry head whose arguments are typed from their ArgKind and described by Arg.doc and
the op's docstring; a `$expression` string is allowed wherever a value is. The schema checks the form of a spec, not
its meaning: shapes, block parameters and expressions are checked by validate() (graph/build.py), which also knows
the blocks a file defines (a schema cannot, so any other single head with a mapping passes as a block invocation).

To let VS Code's YAML extension validate and complete spec files, write the schema out once:
    archviz schema > archviz-spec.schema.json
and map it onto spec files in settings.json (`"yaml.schemas": {"archviz-spec.schema.json": "specs/*.yaml"}`) or
start a file with `# yaml-language-server: $schema=archviz-spec.schema.json`. Only keywords that draft-07
validators know as well are used (`$defs` is reached by JSON pointer), so older editor plugins read it too.

>>> spec_schema()["properties"]["layers"]
{'$ref': '#/$defs/layers'}
"""

from __future__ import annotations

import itertools
from typing import Any

from archviz.graph.build import META_KEYS, NAME_PATTERN, takes_branches
from archviz.ops import Arg, ArgKind, Op, all_ops
from archviz.spec.args import MAX_CONNECTIONS, MAX_COUNT, MAX_DIMENSION, MAX_TEXT
from archviz.spec.published import ENTRY_KEYS as PUBLISHED_KEYS, MAX_TEXT as PUBLISHED_TEXT, Only, Quantity
from archviz.spec.published import REQUIRED_KEYS as PUBLISHED_REQUIRED
from archviz.spec.model import BLOCK_KEYS, REQUIRED_PARAM, STRUCTURAL_HEADS, TOP_LEVEL_KEYS, VARIANT_KEYS

SCHEMA_ID = "urn:archviz:spec"  # names the schema; it is generated, not downloaded
_REF = "#/$defs/"


def spec_schema() -> dict[str, Any]:
    """The JSON Schema of a spec file; the same dict on every call (registry order, then spec-language order).

    >>> spec_schema()["$schema"]
    'https://json-schema.org/draft/2020-12/schema'
    """
    bodies: dict[str, Any] = {
        name: _join_body(op, name) if takes_branches(op.name) else _op_body(op, name)  # add, concat, mul: structure
        for op in all_ops() for name in _heads(op)
    }
    bodies["sequential"] = {"$ref": _REF + "layers", "description": "A nested, numbered group (nn.Sequential)."}
    bodies["group"] = {"$ref": _REF + "layers", "description": "Layers spliced into the current numbering; unnamed."}
    defs: dict[str, Any] = {
        "expression": {
            "type": "string",
            "pattern": r"^\$",
            "description": "An expression over params, block parameters, in_channels, in_height, in_width, "
                           "in_features and i (the repeat index), e.g. `$planes * 4`.",
        },
        "input_shape": _input_shape(),
        "params": {
            "type": "object",
            "description": "Named values that `$expressions` use; `--set name=value` changes them.",
        },
        "layers": {"type": "array", "items": {"$ref": _REF + "entry"}, "description": "Layer entries, in order."},
        "entry": {"anyOf": [{"$ref": _REF + "bare_entry"}, {"$ref": _REF + "mapping_entry"}]},
        "bare_entry": _bare_entry(),
        "mapping_entry": _mapping_entry(list(bodies)),
        "branch": {
            "anyOf": [{"$ref": _REF + "layers"}, {"$ref": _REF + "entry"}],
            "description": "A list of layers from the join's input ([] passes the input through), or one entry.",
        },
        "branches": {"type": "array", "minItems": 2, "items": {"$ref": _REF + "branch"}},
        "layer_ref": {
            "type": "string",
            "pattern": r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$",
            "description": "An earlier layer: a name in this group or one around it, a full path (layer1.0.conv1), "
                           "or `input`.",
        },
        "block": _block_definition(),
        "variant": _variant(),
        **{f"head.{name}": body for name, body in bodies.items()},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "archviz spec",
        "description": "A convolutional network described layer by layer (archviz).",
        "type": "object",
        "properties": _top_level(),
        "additionalProperties": False,
        "anyOf": [{"required": ["layers"]}, {"required": ["extends"]}, {"required": ["blocks"]}],  # blocks: a library
        "$defs": defs,
    }


# --- the file's structure -------------------------------------------------------------------------------

def _top_level() -> dict[str, Any]:
    properties = {
        "name": {"type": "string", "minLength": 1, "description": "The model's name in the zoo (default: the file)."},
        "description": {"type": "string"},
        "source": {"type": "string", "description": "Where the architecture comes from: paper, table, code."},
        "extends": {"type": "string", "description": "A spec file (relative to this one) whose keys this one extends."},
        "input": {"$ref": _REF + "input_shape"},
        "params": {"$ref": _REF + "params"},
        "blocks": {
            "type": "object",
            "description": "Named, parameterised groups of layers, used in `layers:` like an op.",
            "propertyNames": {"not": {"enum": [*_all_heads(), *STRUCTURAL_HEADS]}},
            "additionalProperties": {"$ref": _REF + "block"},
        },
        "layers": {"$ref": _REF + "layers"},
        "variants": {
            "type": "object",
            "description": "Other models from the same layers with other params (vgg11 ... vgg19).",
            "additionalProperties": {"$ref": _REF + "variant"},
        },
        "torchvision": {"type": ["string", "null"], "description": "The torchvision builder of the same network."},
        "published": _published(),
    }
    assert tuple(properties) == TOP_LEVEL_KEYS, "the schema's top-level keys drifted from spec/model.py"
    return properties


def _published() -> dict[str, Any]:
    text = {"type": "string", "maxLength": PUBLISHED_TEXT}
    properties = {
        "quantity": {"enum": [q.value for q in Quantity]},
        "value": {"type": ["string", "integer", "number"], "description": "As printed: 25,557,032, 3.8 x 10^9, 2.7K."},
        "exact": {"type": "boolean", "description": "The figure is exact though its digits end in zeros (60,000)."},
        "called": {**text, "description": "The source's word for it, e.g. FLOPs (meaning multiply-adds)."},
        "layer": {**text, "description": "A layer or group: one row of the source's table."},
        "only": {"enum": [o.value for o in Only]},
        "compare": {**text, "description": "Another zoo model the figure belongs to, computed beside this one."},
        "source": {**text, "minLength": 1, "description": "The citation: paper, table, page."},
        "why": {**text, "description": "Why archviz's figure differs, in words and arithmetic."},
    }
    assert tuple(properties) == PUBLISHED_KEYS, "the schema's published keys drifted from spec/published.py"
    return {
        "type": "array",
        "description": "Figures the source printed, each with its citation (`archviz paper MODEL`).",
        "items": {"type": "object", "properties": properties, "required": list(PUBLISHED_REQUIRED),
                  "additionalProperties": False},
    }


def _block_definition() -> dict[str, Any]:
    properties = {
        "description": {"type": "string"},
        "params": {
            "type": "object",
            "description": f"The block's parameters and their defaults; `{REQUIRED_PARAM}` marks one without.",
        },
        "layers": {"$ref": _REF + "layers"},
        "inline": {"type": "boolean", "default": False,
                   "description": "Splice the layers into the caller's numbering instead of a named group."},
    }
    assert tuple(properties) == BLOCK_KEYS, "the schema's block keys drifted from spec/model.py"
    return {"type": "object", "properties": properties, "required": ["layers"], "additionalProperties": False}


def _variant() -> dict[str, Any]:
    properties = {
        "description": {"type": "string"},
        "params": {"$ref": _REF + "params"},
        "input": {"$ref": _REF + "input_shape"},
        "torchvision": {"type": ["string", "null"]},
    }
    assert tuple(properties) == VARIANT_KEYS, "the schema's variant keys drifted from spec/model.py"
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _input_shape() -> dict[str, Any]:
    return {
        "description": "The input without the batch: [C, H, W] or 'CxHxW'.",
        "anyOf": [
            {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1, "maximum": MAX_DIMENSION}},
            {"type": "string", "pattern": r"^\s*[0-9]+([x,\s]+[0-9]+)*\s*$"},
        ],
    }


# --- layer entries --------------------------------------------------------------------------------------

def _meta() -> dict[str, Any]:
    properties = {
        "name": {
            "type": ["string", "integer"], "pattern": NAME_PATTERN.pattern,
            "description": "The layer's name (default: its index, as in torch's Sequential).",
        },
        "repeat": {
            "anyOf": [{"type": "integer", "minimum": 0}, {"$ref": _REF + "expression"}],
            "description": "That many copies (with a name: a sequential of them); `$i` is the copy's index.",
        },
        "if": {
            "anyOf": [{"type": ["boolean", "integer"]}, {"$ref": _REF + "expression"}],
            "description": "Skip the entry when false.",
        },
        "note": {"type": "string", "description": "Shown by `archviz explain`: errata, remarks from the paper."},
        "from": {
            "anyOf": [{"$ref": _REF + "layer_ref"},
                      {"type": "array", "minItems": 1, "items": {"$ref": _REF + "layer_ref"}}],
            "description": "Take the input from this earlier layer instead of the previous entry; a list feeds an op "
                           "or join of several inputs. Names are looked up in the enclosing group first, then outward.",
        },
        "shares": {
            "$ref": _REF + "layer_ref",
            "description": "Reuse this earlier layer's weights (same op, same weight shapes): tied weights, counted "
                           "once.",
        },
    }
    assert tuple(properties) == META_KEYS, "the schema's meta keys drifted from graph/build.py"
    return properties


def _bare_entry() -> dict[str, Any]:
    """A bare name: an op whose arguments all have defaults, or a block (which the schema cannot know)."""
    ops = [op for op in all_ops() if not takes_branches(op.name)]
    plain = [name for op in ops if not any(arg.required for arg in op.args) for name in _heads(op)]
    return {
        "type": "string",
        "anyOf": [{"enum": plain}, {"not": {"enum": [*_all_heads(), *STRUCTURAL_HEADS]}}],
    }


def _mapping_entry(heads: list[str]) -> dict[str, Any]:
    """One head (an op, a structure, or a block from `blocks:`, which a schema cannot know) and any meta keys."""
    meta = list(META_KEYS)
    one_head = [
        {
            "required": list(present),
            "properties": {key: False for key in meta if key not in present},
            "minProperties": size + 1,
            "maxProperties": size + 1,
        }
        for size in range(len(meta) + 1)
        for present in itertools.combinations(meta, size)
    ]
    return {
        "type": "object",
        "description": "One layer: its type as the key, its arguments as the value.",
        "properties": {**{name: {"$ref": f"{_REF}head.{name}"} for name in heads}, **_meta()},
        "additionalProperties": {"type": ["object", "null"], "description": "A block from `blocks:`, its arguments."},
        "anyOf": one_head,
    }


def _op_body(op: Op, head: str) -> dict[str, Any]:
    needs_args = any(arg.required for arg in op.args)
    return {"type": "object" if needs_args else ["object", "null"], **_arguments(op),
            "description": _op_description(op, head)}


def _join_body(op: Op, head: str) -> dict[str, Any]:
    """Branches, {dim: ..., branches: [...]}, or (with `from:` naming the inputs) arguments alone or nothing."""
    as_mapping = {"type": "object", **_arguments(op, extra={"branches": {"$ref": _REF + "branches"}})}
    return {"anyOf": [{"$ref": _REF + "branches"}, as_mapping, {"type": "null"}],
            "description": _op_description(op, head)}


def _arguments(op: Op, *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """properties (every name and alias), additionalProperties false, and the required ones (by any of their names)."""
    properties: dict[str, Any] = {}
    for arg in op.args:
        properties[arg.name] = _argument(arg)
        for alias in arg.aliases:
            properties[alias] = {**_argument(arg), "description": f"Alias of `{arg.name}`. {arg.doc}".strip()}
    properties.update(extra or {})
    schema: dict[str, Any] = {"properties": properties, "additionalProperties": False}
    required = [arg for arg in op.args if arg.required]
    if required:
        schema["allOf"] = [{"anyOf": [{"required": [name]} for name in (arg.name, *arg.aliases)]} for arg in required]
    return schema


def _argument(arg: Arg) -> dict[str, Any]:
    value = _KINDS[arg.kind](arg)
    choices = [value, {"$ref": _REF + "expression"}]
    if arg.default is None:
        choices.append({"type": "null"})
    schema: dict[str, Any] = {"anyOf": choices}
    if arg.doc:
        schema["description"] = arg.doc
    if not arg.required:
        schema["default"] = list(arg.default) if isinstance(arg.default, tuple) else arg.default
    return schema


def _integer(minimum: int | None) -> dict[str, Any]:
    return {"type": "integer", "minimum": -MAX_DIMENSION if minimum is None else minimum, "maximum": MAX_DIMENSION}


def _pair(minimum: int, *, nullable: bool = False) -> dict[str, Any]:
    side = _integer(minimum)
    item = {"anyOf": [side, {"$ref": _REF + "expression"}, *([{"type": "null"}] if nullable else [])]}
    return {"anyOf": [side, {"type": "array", "minItems": 2, "maxItems": 2, "items": item}]}


def _sizes(minimum: int) -> dict[str, Any]:
    """An int, or one per spatial axis (conv1d's [length], conv3d's [depth, height, width])."""
    side = _integer(minimum)
    item = {"anyOf": [side, {"$ref": _REF + "expression"}]}
    return {"anyOf": [side, {"type": "array", "minItems": 1, "maxItems": 3, "items": item}]}


_KINDS = {
    ArgKind.INT: lambda arg: _integer(1),
    ArgKind.NONNEG_INT: lambda arg: _integer(0),
    ArgKind.SIGNED_INT: lambda arg: _integer(None),
    ArgKind.PAIR: lambda arg: _pair(1),
    ArgKind.NONNEG_PAIR: lambda arg: _pair(0),
    ArgKind.OPTIONAL_PAIR: lambda arg: _pair(1, nullable=True),
    ArgKind.PADDING: lambda arg: {"anyOf": [_pair(0), {"enum": ["same", "valid"]}]},
    ArgKind.FLOAT: lambda arg: {"type": "number"},
    ArgKind.BOOL: lambda arg: {"type": "boolean"},
    ArgKind.CHOICE: lambda arg: {"enum": list(arg.choices)},
    ArgKind.INT_OR_NONE: lambda arg: {"anyOf": [_integer(1), {"type": "null"}]},
    ArgKind.COUNT: lambda arg: {"type": "integer", "minimum": 0, "maximum": MAX_COUNT},
    ArgKind.COUNT_OR_NONE: lambda arg: {"anyOf": [{"type": "integer", "minimum": 0, "maximum": MAX_COUNT},
                                                  {"type": "null"}]},
    ArgKind.TEXT: lambda arg: {"type": "string", "minLength": 1, "maxLength": MAX_TEXT},
    ArgKind.SHAPE: lambda arg: {"type": "array", "minItems": 1, "maxItems": 8, "items": {  # [1, $maps, 1, 1]
        "anyOf": [_integer(1), {"$ref": _REF + "expression"}]}},
    ArgKind.TRACED_SHAPE: lambda arg: {"type": "array", "minItems": 1, "maxItems": 8, "items": _integer(0)},
    ArgKind.CONNECTIONS: lambda arg: {"type": "array", "minItems": 1, "maxItems": MAX_CONNECTIONS, "items": {
        "type": "array", "minItems": 1, "uniqueItems": True, "items": _integer(0)}},
    ArgKind.SIZES: lambda arg: _sizes(1),
    ArgKind.NONNEG_SIZES: lambda arg: _sizes(0),
    ArgKind.PADDING_SIZES: lambda arg: {"anyOf": [_sizes(0), {"enum": ["same", "valid"]}]},
}


# --- names ----------------------------------------------------------------------------------------------

def _heads(op: Op) -> tuple[str, ...]:
    return (op.name, *op.aliases)


def _all_heads() -> list[str]:
    return [name for op in all_ops() for name in _heads(op)]


def _op_description(op: Op, head: str) -> str:
    alias = f"Alias of `{op.name}`. " if head != op.name else ""
    return alias + (op.doc or op.name)

