"""One test per bad input, through the API: the exception class, and a message that names the file, the line, the
layer and the bad value, with the closest name where there is one (torchinfo `exceptions_test.py` style)."""

from __future__ import annotations

import pytest

import archviz
from archviz.errors import ArchvizError, ShapeError, SpecError, UnknownNameError, UnsupportedOpError


def load_error(source, error_class: type[ArchvizError], **options) -> ArchvizError:
    with pytest.raises(error_class) as info:
        archviz.load(source, **options)
    assert type(info.value) is error_class  # not merely a subclass
    return info.value


def spec_error(write_spec, text: str, error_class: type[ArchvizError] = SpecError) -> tuple[str, ArchvizError]:
    """(the file, the error) of a spec that must fail; `text` starts on line 1."""
    path = write_spec(text)
    return str(path), load_error(path, error_class)


def assert_names(error: ArchvizError, *parts: str) -> None:
    message = str(error)
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


# --- finding the spec --------------------------------------------------------------------------------------

def test_unknown_model_name_suggests_close_names():
    error = load_error("vgg61", UnknownNameError)
    assert_names(error, "unknown model 'vgg61'", "did you mean", "vgg16")


def test_missing_file(tmp_path):
    path = tmp_path / "missing.yaml"
    error = load_error(path, SpecError)
    assert_names(error, f"{path}: file not found")


def test_directory_instead_of_file(tmp_path):
    folder = tmp_path / "specs.yaml"
    folder.mkdir()
    error = load_error(folder, SpecError)
    assert_names(error, str(folder), "is a directory")


def test_non_utf8_bytes(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\ninput: [1, 8, 8]\nlayers: [relu]\n")
    error = load_error(path, SpecError)
    assert_names(error, f"{path}:1:", "not UTF-8", "0xe9")


# --- YAML ----------------------------------------------------------------------------------------------------

def test_invalid_yaml(write_spec):
    file, error = spec_error(write_spec, """\
        input: [1, 8, 8]
        layers:
          - conv2d: {out_channels: 4, kernel_size: 3
          - relu
    """)
    assert_names(error, f"{file}:", "invalid YAML", "flow mapping that starts on line 3")


def test_yaml_python_tag_is_refused_and_never_run(write_spec, tmp_path):
    marker = tmp_path / "ran"
    file, error = spec_error(write_spec, f"""\
        input: [1, 8, 8]
        layers:
          - !!python/object/apply:os.system ["touch {marker}"]
    """)
    assert_names(error, f"{file}:3:", "YAML tag !!python/object/apply:os.system is not allowed")
    assert not marker.exists()


def test_yaml_alias(write_spec):
    file, error = spec_error(write_spec, """\
        input: [1, 8, 8]
        layers:
          - conv2d: &conv {out_channels: 4, kernel_size: 3}
          - conv2d: *conv
    """)
    assert_names(error, f"{file}:4:", "YAML alias *conv is not supported", "define a block")


def test_duplicate_key(write_spec):
    file, error = spec_error(write_spec, """\
        input: [1, 8, 8]
        layers:
          - conv2d:
              out_channels: 4
              kernel_size: 3
              out_channels: 8
    """)
    assert_names(error, f"{file}:6:", "duplicate key 'out_channels' (first on line 4)")


# --- keys, names and types -----------------------------------------------------------------------------------

def test_unknown_top_level_key_suggests_the_close_one(write_spec):
    file, error = spec_error(write_spec, """\
        input: [1, 8, 8]
        layer:
          - relu
    """)
    assert_names(error, f"{file}:2:", "unknown top-level key 'layer'", "did you mean: layers")


def test_unknown_layer_type_suggests_the_close_one(write_spec):
    file, error = spec_error(write_spec, """\
        input: [1, 8, 8]
        layers:
          - relu
          - conv2: {out_channels: 4, kernel_size: 3}
    """, UnsupportedOpError)
    assert_names(error, f"{file}:4:", "unknown layer type 'conv2'", "did you mean: conv2d")


def test_unknown_argument_suggests_the_close_one(write_spec):
    file, error = spec_error(write_spec, """\
        input: [1, 8, 8]
        layers:
          - conv2d:
              out_channels: 4
              kernal_size: 3
            name: conv1
    """)
    assert_names(error, f"{file}:5:", "conv1:", "no argument 'kernal_size'", "did you mean: kernel_size")


def test_kernel_size_of_the_wrong_type(write_spec):
    file, error = spec_error(write_spec, """\
        input: [1, 8, 8]
        layers:
          - conv2d: {out_channels: 4, kernel_size: "abc"}
            name: conv1
    """)
    assert_names(error, f"{file}:3:", "conv1:", "kernel_size must be a positive integer", "got 'abc'")


def test_bias_of_the_wrong_type(write_spec):
    file, error = spec_error(write_spec, """\
        input: [1, 8, 8]
        layers:
          - conv2d: {out_channels: 4, kernel_size: 3, bias: "yes"}
            name: conv1
    """)
    assert_names(error, f"{file}:3:", "conv1:", "bias must be true or false, got 'yes'")


def test_negative_size(write_spec):
    file, error = spec_error(write_spec, """\
        input: [1, 8, 8]
        layers:
          - linear: {out_features: -10}
            name: fc
    """)
    assert_names(error, f"{file}:3:", "fc:", "out_features must be a positive integer, got -10")


def test_zero_size(write_spec):
    file, error = spec_error(write_spec, """\
        input: [1, 8, 8]
        layers:
          - conv2d: {out_channels: 4, kernel_size: 0}
    """)
    assert_names(error, f"{file}:3:", "layer 0:", "kernel_size must be a positive integer", "got 0")


def test_zero_input_size(write_spec):
    file, error = spec_error(write_spec, """\
        input: [1, 0, 8]
        layers: [relu]
    """)
    assert_names(error, f"{file}:1:", "input shape [1, 0, 8]", "from 1 to")


# --- shapes --------------------------------------------------------------------------------------------------

def test_kernel_larger_than_its_input(write_spec):
    file, error = spec_error(write_spec, """\
        input: [1, 8, 8]
        layers:
          - maxpool2d: {kernel_size: 2}
          - conv2d: {out_channels: 4, kernel_size: 5}
            name: conv3
    """, ShapeError)
    assert_names(error, f"{file}:4:", "conv3: kernel 5 is larger than its 4x4 input (padding 0)")


def test_add_of_differing_shapes_names_the_add(write_spec):
    file, error = spec_error(write_spec, """\
        input: [64, 56, 56]
        layers:
          - sequential:
              - sequential:
                  - add:
                      - []
                      - - conv2d: {out_channels: 128, kernel_size: 3, stride: 2, padding: 1}
                          name: conv1
            name: layer2
    """, ShapeError)
    assert_names(error, f"{file}:5:", "layer2.0.add: shapes 64x56x56 and 128x28x28 differ")


def test_concat_of_differing_sizes(write_spec):
    file, error = spec_error(write_spec, """\
        input: [3, 8, 8]
        layers:
          - concat:
              - - maxpool2d: {kernel_size: 2}
              - []
            name: merge
    """, ShapeError)
    assert_names(error, f"{file}:3:", "merge: shapes 3x4x4 and 3x8x8 differ outside the concatenated dim 1")


def test_linear_on_a_feature_map_with_wrong_in_features(write_spec):
    file, error = spec_error(write_spec, """\
        input: [3, 8, 8]
        layers:
          - linear: {out_features: 10, in_features: 192}
            name: fc
    """, ShapeError)
    assert_names(error, f"{file}:3:", "fc:", "in_features is 192 but the input has 8 features", "flatten first?")


def test_padding_same_with_stride_2(write_spec):
    file, error = spec_error(write_spec, """\
        input: [3, 8, 8]
        layers:
          - conv2d: {out_channels: 4, kernel_size: 3, stride: 2, padding: same}
            name: conv1
    """, ShapeError)
    assert_names(error, f"{file}:3:", "conv1:", "padding 'same' needs stride 1", "got stride 2")


def test_groups_not_dividing_channels(write_spec):
    file, error = spec_error(write_spec, """\
        input: [3, 8, 8]
        layers:
          - conv2d: {out_channels: 4, kernel_size: 3, groups: 2}
            name: conv1
    """, ShapeError)
    assert_names(error, f"{file}:3:", "conv1:", "in_channels 3 is not divisible by groups 2")


# --- layer names, blocks, repeats --------------------------------------------------------------------------

def test_duplicate_layer_names(write_spec):
    file, error = spec_error(write_spec, """\
        input: [3, 8, 8]
        layers:
          - relu: {}
            name: act
          - relu: {}
            name: act
    """)
    assert_names(error, f"{file}:5:", "duplicate layer name 'act' (first on line 3)")


BLOCK = """\
    input: [3, 8, 8]
    blocks:
      unit:
        params: {planes: required}
        layers:
          - conv2d: {out_channels: $planes, kernel_size: 1}
    layers:
"""


def test_block_missing_a_required_parameter(write_spec):
    file, error = spec_error(write_spec, BLOCK + "      - unit: {}\n")
    assert_names(error, f"{file}:8:", "block 'unit' needs parameter 'planes'")


def test_block_given_an_unknown_parameter(write_spec):
    file, error = spec_error(write_spec, BLOCK + "      - unit: {planes: 4, plane: 8}\n")
    assert_names(error, f"{file}:8:", "block 'unit' has no parameter 'plane'", "did you mean: planes")


def test_block_that_uses_itself(write_spec):
    file, error = spec_error(write_spec, """\
        input: [3, 8, 8]
        blocks:
          loop:
            layers:
              - relu
              - loop
        layers:
          - loop
    """)
    assert_names(error, f"{file}:6:", "layer 0:", "block 'loop' is nested more than 64 deep", "does it use itself?")


def test_negative_repeat(write_spec):
    file, error = spec_error(write_spec, """\
        input: [3, 8, 8]
        layers:
          - relu: {}
            repeat: -1
    """)
    assert_names(error, f"{file}:3:", "repeat must be an integer from 0", "got -1")


def test_empty_layers(write_spec):
    file, error = spec_error(write_spec, """\
        input: [3, 8, 8]
        layers: []
    """)
    assert_names(error, f"{file}:2:", "spec has no layers")


# --- expressions, --set and --input ------------------------------------------------------------------------

def test_expression_that_does_not_parse(write_spec):
    file, error = spec_error(write_spec, """\
        input: [3, 8, 8]
        params: {foo: 4}
        layers:
          - conv2d: {out_channels: "$foo + ", kernel_size: 1}
            name: conv1
    """)
    assert_names(error, f"{file}:4:", "conv1:", "cannot parse expression '$foo + '")


def test_unknown_name_in_expression(write_spec):
    file, error = spec_error(write_spec, """\
        input: [3, 8, 8]
        params: {width: 4}
        layers:
          - conv2d: {out_channels: $widht * 2, kernel_size: 1}
            name: conv1
    """)
    assert_names(error, f"{file}:4:", "conv1:", "'$widht * 2'", "unknown name 'widht'", "did you mean: width")


def test_set_of_an_unknown_parameter():
    error = load_error("lenet", UnknownNameError, overrides={"num_clases": 5})
    assert_names(error, "--set num_clases", "lenet has no parameter 'num_clases'", "did you mean: num_classes")


@pytest.mark.parametrize("shape, expected", [
    ("3x-1x2", "every size must be an integer from 1"),
    ("abc", "is not like 3x224x224"),
])
def test_malformed_input_shape(shape, expected):
    error = load_error("lenet", SpecError, input=shape)
    assert_names(error, f"input shape {shape!r}", expected)
    assert error.file is None  # the caller's --input, not the spec file, is wrong
