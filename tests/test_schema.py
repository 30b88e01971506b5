"""The JSON Schema of the spec language: valid itself, accepts every zoo spec, rejects malformed documents."""

from __future__ import annotations

import json
import textwrap

import pytest
from jsonschema import Draft202012Validator

import archviz
from archviz.graph.build import META_KEYS
from archviz.ops import all_ops
from archviz.spec.schema import spec_schema
from archviz.spec.yaml_loader import load_yaml_file, load_yaml_text
from archviz.spec.zoo import zoo_dir

SPEC_FILES = sorted(zoo_dir().glob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    return Draft202012Validator(spec_schema())


def errors(validator: Draft202012Validator, text: str) -> list[str]:
    document = load_yaml_text(textwrap.dedent(text))
    return [error.message for error in validator.iter_errors(document)]


def test_schema_is_valid_draft_2020_12():
    schema = spec_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_is_deterministic_and_json():
    assert json.dumps(spec_schema()) == json.dumps(spec_schema())


def test_every_op_name_and_alias_is_an_entry_head():
    heads = spec_schema()["$defs"]["mapping_entry"]["properties"]
    for op in all_ops():
        for name in (op.name, *op.aliases):
            assert name in heads, name
    ordered = [name for name in heads if name not in ("sequential", "group", *META_KEYS)]
    assert ordered == [name for op in all_ops() for name in (op.name, *op.aliases)]  # registry order


def test_arguments_carry_their_docs():
    conv = spec_schema()["$defs"]["head.conv2d"]
    assert conv["properties"]["out_channels"]["description"] == "number of filters"
    assert conv["properties"]["filters"]["description"].startswith("Alias of `out_channels`")
    assert "2-D convolution" in conv["description"]


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.name)
def test_zoo_spec_validates(validator, path):
    assert SPEC_FILES, "no specs found"
    document = load_yaml_file(path)
    assert [error.message for error in validator.iter_errors(document)] == []


def test_every_form_of_the_language_validates(validator, write_spec):
    text = """
        name: forms
        input: 3x32x32
        params: {width: 8, deep: true}
        blocks:
          unit:
            description: conv, relu
            params: {planes: 8, stride: 1}
            inline: false
            layers:
              - conv2d: {filters: $planes, k: [3, 3], s: $stride, p: same, bias: false}
              - relu
        layers:
          - unit: {planes: $width}
            name: stem
          - unit
          - sequential:
              - maxpool2d: {kernel_size: 2}
                if: $deep
          - group: [{relu: null}]
            repeat: 2
          - add: [[{unit: {planes: $width}}], []]
          - concat: {dim: 1, branches: [[identity], {conv: {out: 4, kernel: 1}}]}
          - cat: [[identity], [identity]]
          - adaptive_avgpool2d: {output_size: [null, 1]}
          - flatten
          - dense: {units: 10, in_features: null}
        variants:
          wide: {params: {width: 16}, input: [3, 64, 64]}
    """
    assert errors(validator, text) == []
    assert archviz.load(write_spec(text)).nodes[-1].out_shape == (10,)  # and archviz agrees that it is valid


def test_unknown_top_level_key_is_rejected(validator):
    found = errors(validator, """
        input: [1, 8, 8]
        layer: [relu]
        layers: [relu]
    """)
    assert any("'layer'" in message for message in found)


def test_conv2d_with_kernel_size_abc_is_rejected(validator):
    found = errors(validator, """
        layers:
          - conv2d: {out_channels: 8, kernel_size: abc}
    """)
    assert found


def test_entry_with_two_heads_is_rejected(validator):
    assert errors(validator, """
        layers:
          - conv2d: {out_channels: 8, kernel_size: 3}
            relu: {}
    """)


def test_entry_with_two_blocks_is_rejected(validator):
    assert errors(validator, """
        blocks: {a: {layers: [relu]}, b: {layers: [relu]}}
        layers:
          - a: {}
            b: {}
    """)


@pytest.mark.parametrize("entry", [
    "{conv2d: {out_channels: 8, kernal_size: 3}}",  # unknown argument
    "{conv2d: {out_channels: 8}}",  # kernel_size is required
    "conv2d",  # a bare name cannot give the required arguments
    "{conv2d: {out_channels: 8, kernel_size: 3, bias: 'yes'}}",
    "{conv2d: {out_channels: 0, kernel_size: 3}}",
    "{conv2d: {out_channels: 8, kernel_size: [3, 3, 3]}}",
    "{conv2d: {out_channels: 8, kernel_size: 3, padding: full}}",
    "{relu: null, repeat: -1}",
    "{relu: null, name: 'a.b'}",
    "{add: [[relu]]}",  # one branch
    "{gelu: {approximate: fast}}",
])
def test_malformed_entry_is_rejected(validator, entry):
    assert errors(validator, f"layers: [{entry}]")


def test_block_named_like_an_op_is_rejected(validator):
    assert errors(validator, """
        blocks:
          conv2d: {layers: [relu]}
        layers: [relu]
    """)


def test_spec_without_layers_extends_or_blocks_is_rejected(validator):
    assert errors(validator, "input: [3, 8, 8]")
