"""Resource limits: a huge network is analysed by formula without allocating it, and every spec has a bounded cost.

Big numbers cost nothing (10**12 parameters are one multiplication); many layers cost time and memory, so the
layers (MAX_NODES), the entries expanded (MAX_ENTRIES), repeats, nesting (MAX_NESTING, MAX_YAML_DEPTH), layer paths,
the file's size and the jump of the receptive field are limited, each with a message that names the file, the line
and the limit. YAML aliases, the other road to exponential expansion, are refused.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import archviz
from archviz.errors import ArchvizError, ShapeError, SpecError
from archviz.graph import build
from archviz.spec import yaml_loader

TERA_SPEC = """\
name: tera
input: [1000000]
layers:
  - linear: {out_features: 1000000}
    name: fc
"""
TERA_PARAMS = 10**6 * 10**6 + 10**6  # weights + biases


def limit_error(write_spec, text: str, error_class: type[ArchvizError] = SpecError) -> tuple[str, str, float]:
    """(the file, the message, seconds of CPU taken) of a spec that must fail. CPU time, not the clock's: a loaded
    machine stretches the clock."""
    path = write_spec(text)
    start = time.process_time()
    with pytest.raises(error_class) as info:
        archviz.inspect(path)
    return str(path), str(info.value), time.process_time() - start


def run_cli(*args: str) -> tuple[subprocess.CompletedProcess, float, int]:
    """(the finished `archviz` process, its seconds of CPU, its peak resident memory in KB).

    The peak is Linux's VmHWM, which starts afresh at exec; getrusage's ru_maxrss would keep the RSS of the forked
    pytest process (over a GB once torch is loaded)."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs Linux's /proc to measure the peak memory")
    import resource

    code = ("import re, sys\n"
            "from archviz.cli import main\n"
            "sys.argv[0] = 'archviz'\n"
            "try:\n"
            "    main()\n"
            "finally:\n"
            "    peak = re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read()).group(1)\n"
            "    sys.stderr.write(f'\\npeak_rss_kb={peak}\\n')\n")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    peak_kb = int(re.search(r"peak_rss_kb=(\d+)", process.stderr).group(1))
    return process, seconds, peak_kb


# --- big networks are analysed ---------------------------------------------------------------------------------

def test_a_network_of_10_to_the_12_parameters_is_analysed_without_allocating_it(write_spec):
    import json

    process, seconds, peak_kb = run_cli("inspect", str(write_spec(TERA_SPEC)), "--no-crosscheck", "--format", "json")
    assert process.returncode == 0, process.stderr
    totals = json.loads(process.stdout)["totals"]
    assert totals["params"] == TERA_PARAMS
    assert totals["param_bytes"] == 4 * TERA_PARAMS
    assert totals["macs"] == 10**6 * 10**6
    assert seconds < 20 and peak_kb < 300_000, f"{seconds:.1f} s, {peak_kb / 1024:.0f} MB"  # about 0.4 s, 45 MB


def test_huge_channel_counts_are_analysed(write_spec):
    report = archviz.inspect(write_spec("""\
        input: [3, 1000, 1000]
        layers:
          - conv2d: {out_channels: 1000000, kernel_size: 3, padding: 1}
          - conv2d: {out_channels: 1000000, kernel_size: 3, padding: 1}
    """))
    second = 3 * 3 * 10**6 * 10**6 + 10**6
    assert report.totals.params == 3 * 3 * 3 * 10**6 + 10**6 + second  # 9 * 10**12 in the second conv
    assert report.layers[1].macs == 1000 * 1000 * 10**6 * 3 * 3 * 10**6


def test_100000_layers_are_analysed_in_seconds(write_spec):
    """Was minutes for joins: each unnamed add searched add, add_1, add_2, ... for a free name (quadratic)."""
    path = write_spec("""\
        input: [8, 16, 16]
        layers:
          - conv2d: {out_channels: 8, kernel_size: 3, padding: 1}
            repeat: 50000
          - relu: {}
            repeat: 40000
          - add: [[relu], []]
            repeat: 5000
    """)
    start = time.process_time()
    report = archviz.inspect(path)
    seconds = time.process_time() - start
    assert report.totals.layers == 50_000 + 40_000 + 2 * 5_000 == build.MAX_NODES
    assert report.totals.params == 50_000 * (3 * 3 * 8 * 8 + 8)
    assert report.layer("add_4999").in_shapes == ((8, 16, 16), (8, 16, 16))
    assert seconds < 30, f"{seconds:.1f} s of CPU"  # about 5 s


# --- limits and their messages ---------------------------------------------------------------------------------

def test_more_layers_than_max_nodes_stop_at_the_limit(write_spec):
    file, message, _ = limit_error(write_spec, f"""\
        input: [1, 4, 4]
        layers:
          - relu: {{}}
            repeat: {build.MAX_NODES}
          - identity
    """)
    assert message == f"{file}:5: more than 100,000 layers; archviz stops here"


def test_nested_repeats_stop_quickly_with_the_layer_limit(write_spec):
    """A billion layers in three lines: refused after two copies, not after building 100,000 layers."""
    file, message, seconds = limit_error(write_spec, """\
        input: [1, 4, 4]
        layers:
          - group:
              - group:
                  - relu: {}
                    repeat: 1000
                repeat: 1000
            repeat: 1000
    """)
    assert message == (f"{file}:4: repeat: 1,000 copies of 1,000 layers each would pass 100,000 layers in all; "
                       "archviz stops here")
    assert seconds < 2


def test_repeat_counts_are_limited(write_spec):
    file, message, _ = limit_error(write_spec, """\
        input: [1, 4, 4]
        layers:
          - relu: {}
            repeat: 100001
    """)
    assert message == f"{file}:3: repeat must be an integer from 0 to 100,000, got 100001"


def test_entries_that_make_no_layer_are_limited_too(write_spec):
    """Was a hang: 10**12 empty groups make no layer, so the layer limit never came."""
    file, message, seconds = limit_error(write_spec, """\
        input: [1, 4, 4]
        layers:
          - relu
          - group:
              - group: []
                repeat: 100000
            repeat: 100000
    """)
    assert message == (f"{file}:5: more than 400,000 layer entries to expand (nested repeats multiply); "
                       "archviz stops here")
    assert seconds < 10


def test_blocks_nested_past_max_nesting_are_refused(write_spec):
    nested = "".join("  " * (i + 1) + "- sequential:\n" for i in range(build.MAX_NESTING + 2))
    file, message, _ = limit_error(write_spec, "input: [1, 4, 4]\nlayers:\n" + nested + "  " * 68 + "- relu\n")
    assert f"{file}:" in message and "nested more than 64 deep" in message


def test_a_block_that_uses_itself_is_refused(write_spec):
    file, message, seconds = limit_error(write_spec, """\
        input: [1, 4, 4]
        blocks:
          loop: {layers: [relu, loop]}
        layers: [loop]
    """)
    assert message.startswith(f"{file}:3: ")
    assert "block 'loop' is nested more than 64 deep (does it use itself?)" in message
    assert seconds < 2


def test_yaml_nested_past_its_depth_limit_is_refused(write_spec):
    depth = yaml_loader.MAX_YAML_DEPTH
    file, message, _ = limit_error(write_spec, "input: [1, 4, 4]\nlayers:\n  - " + "[" * depth + "]" * depth + "\n")
    assert message == f"{file}:3: YAML is nested more than 200 deep"


def test_yaml_aliases_are_refused(write_spec):
    file, message, _ = limit_error(write_spec, """\
        input: [1, 4, 4]
        layers: &all
          - relu
        more: *all
    """)
    assert message == f"{file}:4: YAML alias *all is not supported; define a block and use it instead"


def test_long_layer_paths_are_refused(write_spec):
    file, message, _ = limit_error(write_spec, f"""\
        input: [1, 4, 4]
        layers:
          - relu: {{}}
            name: {"n" * 2000}
    """)
    assert message.startswith(f"{file}:3: layer path 'nnnn") and "longer than 1,000 characters" in message


def test_a_spec_larger_than_the_limit_is_refused_before_it_is_read_whole(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * yaml_loader.MAX_SPEC_BYTES + "\nlayers: [relu]\n")
    with pytest.raises(SpecError, match=r"big.yaml: spec is more than 5,000,000 bytes, the limit"):
        archviz.load(path)


def test_a_jump_past_its_limit_is_a_shape_error(write_spec):
    file, message, _ = limit_error(write_spec, """\
        input: [1, 1, 1]
        layers:
          - maxpool2d: {kernel_size: 1, stride: 1000}
            repeat: 11
    """, ShapeError)
    assert message.startswith(f"{file}:3: layer 10: the strides up to here multiply to a jump of 1e+33")


# --- to_torch refuses what does not fit ------------------------------------------------------------------------

def test_to_torch_refuses_10_to_the_12_parameters_before_allocating(write_spec):
    pytest.importorskip("torch")
    from archviz.torch_build import to_torch

    graph = archviz.load(write_spec(TERA_SPEC))
    start = time.process_time()
    with pytest.raises(ArchvizError) as info:
        to_torch(graph, device="cpu")
    assert time.process_time() - start < 1
    assert f"need {4 * TERA_PARAMS:,} bytes" in str(info.value)  # 4,000,004,000,000
    assert "device='meta'" in str(info.value)
