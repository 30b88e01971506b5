"""Fuzzing the spec loader and the CLI: whatever the spec, `archviz` prints an analysis (exit 0) or one
`archviz: error:` line (exit 2), never a traceback, a hang or a memory blow-up.

A CI-sized run of fuzz/spec_fuzz.py's cases (mutated zoo specs, hostile YAML); hypothesis-made YAML text and
spec-shaped data; one test per hostile input of the issue; one regression test per bug the fuzzer found.
`.venv/bin/python fuzz/spec_fuzz.py --cases 10000` is the long run.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuzz"))
import spec_fuzz  # noqa: E402

CI_CASES = 400  # about 25 s; the seed is fixed, so a failure here reproduces with the same seed
CI_SEED = 2024
INSPECT = ("inspect", "{dir}/" + spec_fuzz.MAIN, "--no-crosscheck", "--format", "json")


def run(folder: Path, spec: str | bytes, *command: str) -> spec_fuzz.Outcome:
    """The outcome of one command (`inspect --format json` by default) on one spec, in this process."""
    content = spec if isinstance(spec, bytes) else spec.encode()
    case = spec_fuzz.Case(0, "test", ((spec_fuzz.MAIN, content),), command or INSPECT)
    return spec_fuzz.run_case(case, folder, budget_s=spec_fuzz.BUDGET_S)


def clean_error(folder: Path, spec: str | bytes, *parts: str, within_s: float = 5.0) -> str:
    """The one error line of a spec that must fail; it names every part, within_s seconds of CPU (not of the clock,
    which a loaded machine stretches)."""
    outcome = run(folder, spec)
    assert outcome.kind == "error", outcome.detail
    for part in parts:
        assert part in outcome.detail, f"{part!r} not in {outcome.detail!r}"
    assert outcome.cpu_seconds < within_s, f"{outcome.cpu_seconds:.1f} s: {outcome.detail}"
    return outcome.detail


# --- the fuzzer ------------------------------------------------------------------------------------------------

def test_a_ci_sized_fuzz_run_finds_no_bug():
    cases = spec_fuzz.make_cases(CI_CASES, seed=CI_SEED)
    outcomes = {case.number: (case, outcome) for case, outcome in spec_fuzz.run_cases(cases)}
    bugs = [f"case {case.number} ({case.recipe}, {' '.join(case.argv)}): {outcome.kind}\n{outcome.detail}"
            for case, outcome in outcomes.values() if outcome.kind in spec_fuzz.BUG_KINDS]
    assert not bugs, "\n\n".join(bugs)
    kinds = [outcome.kind for _, outcome in outcomes.values()]
    assert len(kinds) == CI_CASES
    assert kinds.count("ok") >= CI_CASES // 20, "the fuzzer should reach the analysis, not only the loader"
    assert kinds.count("error") >= CI_CASES // 2


@pytest.mark.parametrize("kind", ["value-size bomb", "control characters", "path-like name"])
def test_the_hostile_cases_of_issue_15_find_no_bug(kind):
    """Values an expression builds past any text (a hang or a memory blow-up before issue 15), control characters in
    names, and `extends:` naming devices, a FIFO (it blocked) and the like: no traceback, no hang, every error line
    under spec_fuzz.LINE_LIMIT characters."""
    cases = spec_fuzz.make_cases(60, seed=CI_SEED, hostile=kind)
    outcomes = list(spec_fuzz.run_cases(cases, budget_s=10))
    bugs = [f"case {case.number} ({case.recipe}, {' '.join(case.argv)}): {outcome.kind}\n{outcome.detail[:2000]}"
            for case, outcome in outcomes if outcome.kind in spec_fuzz.BUG_KINDS]
    assert not bugs, "\n\n".join(bugs)
    assert len(outcomes) == len(cases)


def test_the_generator_is_deterministic():
    first = spec_fuzz.make_cases(40, seed=5)
    assert first == spec_fuzz.make_cases(40, seed=5)
    assert first != spec_fuzz.make_cases(40, seed=6)


YAMLISH = st.lists(st.sampled_from([*spec_fuzz.YAML_ALPHABET, "relu", "layers", "input", "conv2d", ": ", "- ",
                                    "[1, 8, 8]", "\n  ", "$i", "\x00", "\x07"]), max_size=80).map("".join)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(YAMLISH)
def test_yaml_like_text_never_breaks_the_cli(text):
    with tempfile.TemporaryDirectory() as folder:
        outcome = run(Path(folder), text)
    assert outcome.kind in ("ok", "error"), outcome.detail


NUMBERS = st.one_of(st.integers(-3, 300), st.sampled_from([0, -1, 10**9, 10**30, 2**63, 1.5, float("inf")]))
VALUES = st.one_of(NUMBERS, st.booleans(), st.none(), st.sampled_from(
    ["x", "", "same", "valid", "$in_channels * 2", "$i", "$2 ** 10 ** 10", "$nope", "$1/0", "$in_height // 2",
     "$'a' * 10**9", "$-'a'", "$int(1e308 * 10)"]), st.lists(NUMBERS, max_size=3))
ARGUMENTS = st.dictionaries(st.sampled_from(["out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
                                             "bias", "out_features", "output_size", "p", "dim", "start_dim", "k",
                                             "filters", "units", "nope"]), VALUES, max_size=4)
OPS = st.sampled_from(["conv2d", "linear", "maxpool2d", "avgpool2d", "relu", "flatten", "batchnorm2d", "dropout",
                       "adaptive_avgpool2d", "global_avgpool2d", "softmax", "lrn", "identity", "dense", "nope"])
META = st.fixed_dictionaries({}, optional={"repeat": VALUES, "name": st.sampled_from(["a", "a", "0", "层", "a.b"]),
                                           "if": VALUES})
ENTRY = st.one_of(OPS, st.builds(lambda op, args, meta: {op: args, **meta}, OPS, ARGUMENTS, META))
LAYERS = st.recursive(st.lists(ENTRY, max_size=5), lambda inner: st.lists(st.one_of(
    ENTRY, st.builds(lambda kind, branches: {kind: branches}, st.sampled_from(["add", "concat", "sequential", "group"]),
                     st.lists(inner, max_size=3)),
), max_size=4), max_leaves=12)
SPECS = st.fixed_dictionaries({"layers": LAYERS}, optional={
    "input": st.one_of(st.lists(NUMBERS, max_size=4), st.sampled_from(["3x32x32", "1x8x8", [3, 32, 32], [1, 8, 8]])),
    "params": st.dictionaries(st.sampled_from(["a", "b", "i"]), VALUES, max_size=2),
})


@settings(max_examples=150, deadline=None, derandomize=True)
@given(SPECS, st.sampled_from(["inspect", "explain", "diff"]))
def test_spec_shaped_data_never_breaks_the_cli(spec, command):
    spec.setdefault("input", [3, 16, 16])
    text = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)
    argv = {"inspect": INSPECT, "explain": ("explain", "{dir}/spec.yaml", "0"),
            "diff": ("diff", "{dir}/spec.yaml", "lenet")}[command]
    with tempfile.TemporaryDirectory() as folder:
        outcome = run(Path(folder), text, *argv)
    assert outcome.kind in ("ok", "error"), outcome.detail


# --- hostile inputs named in the issue -----------------------------------------------------------------------

def test_a_yaml_alias_bomb_is_refused_at_the_first_alias(tmp_path):
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]  # 10**9 strings
    clean_error(tmp_path, "\n".join(lines) + "\ninput: [1, 8, 8]\nlayers: *a8\n",
                "spec.yaml:2:", "YAML alias *a0 is not supported", within_s=2)


@pytest.mark.parametrize("text", [
    "input: [1, 8, 8]\nlayers: " + "[" * 10_000 + "]" * 10_000 + "\n",
    "input: [1, 8, 8]\nlayers: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n",
    "input: [1, 8, 8]\nlayers:\n  " + "- " * 10_000 + "relu\n",
], ids=["flow list", "flow mapping", "block list"])
def test_10000_deep_nesting_is_refused(tmp_path, text):
    clean_error(tmp_path, text, "spec.yaml:", "YAML is nested more than 200 deep", within_s=3)


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system", "!!python/object/new:os.system"])
def test_a_python_tag_is_refused_and_never_run(tmp_path, tag):
    marker = tmp_path / "ran"
    clean_error(tmp_path, f"input: [1, 8, 8]\nlayers:\n  - {tag} ['touch {marker}']\n",
                "spec.yaml:3:", f"YAML tag {tag} is not allowed")
    assert not marker.exists()


def test_binary_garbage_is_refused(tmp_path):
    clean_error(tmp_path, bytes(range(256)) * 4, "spec.yaml:2:", "not UTF-8 text: byte 0x80 at offset 128")


def test_a_control_character_is_refused_with_its_line(tmp_path):
    """Was a traceback: PyYAML's reader refuses the character while the loader is made, outside the try."""
    clean_error(tmp_path, "input: [1, 8, 8]\nlayers:\n  - relu\x00\n", "spec.yaml:3:",
                "invalid YAML: character '\\x00' is not allowed")


@pytest.mark.parametrize(("value", "message"), [
    ("!!float abc", "'abc' is not a valid !!float"),  # was ValueError
    ("!!float ''", "'' is not a valid !!float"),  # was IndexError
    ("!!bool maybe", "'maybe' is not a valid !!bool"),  # was KeyError
    ("!!timestamp 2001-13-45", "'2001-13-45' is not a valid !!timestamp"),  # was ValueError
    ("9" * 5000, "'" + "9" * 40 + "...' is not a valid !!int"),  # Python reads at most 4,300 digits: was ValueError
    ("!!set conv2d", "expected a mapping, found a scalar"),  # was ValueError in our constructor
    ("!!seq conv2d", "expected a list, found a scalar"),  # was AttributeError
])
def test_yaml_values_its_constructors_cannot_read(tmp_path, value, message):
    clean_error(tmp_path, f"input: [3, 8, 8]\nlayers:\n  - conv2d: {{out_channels: {value}, kernel_size: 1}}\n",
                "spec.yaml:3:", f"invalid YAML: {message}")


def test_sizes_of_10_to_the_30_are_refused(tmp_path):
    clean_error(tmp_path, f"input: [3, 8, 8]\nlayers:\n  - conv2d: {{out_channels: {10**30}, kernel_size: 1}}\n",
                "spec.yaml:3:", "out_channels must be at most 1,000,000,000, got 10000000000")
    clean_error(tmp_path, f"input: [3, {10**30}, 8]\nlayers: [relu]\n",
                "spec.yaml:1:", "every size must be an integer from 1 to 1,000,000,000")


def test_a_power_tower_is_refused_before_it_is_computed(tmp_path):
    clean_error(tmp_path, "input: [3, 8, 8]\nlayers:\n  - conv2d: {out_channels: $2 ** 10 ** 10, kernel_size: 1}\n",
                "spec.yaml:3:", "exponent larger than 64", within_s=1)


def test_two_blocks_that_use_each_other_are_refused(tmp_path):
    clean_error(tmp_path, "input: [3, 8, 8]\nblocks:\n  a: {layers: [relu, b]}\n  b: {layers: [a]}\nlayers: [a]\n",
                "spec.yaml:", "is nested more than 64 deep (does it use itself?)", within_s=2)


def test_a_repeat_of_a_billion_is_refused(tmp_path):
    clean_error(tmp_path, "input: [3, 8, 8]\nlayers:\n  - relu: {}\n    repeat: 1000000000\n",
                "spec.yaml:3:", "repeat must be an integer from 0 to 100,000, got 1000000000", within_s=1)


# --- regressions: bugs the fuzzer found ------------------------------------------------------------------------

@pytest.mark.parametrize(("expression", "message"), [
    ("$-'a'", "cannot negate 'a'"),  # was TypeError
    ("$4 if 'a' < 1 else 2", "'<' not supported between instances of 'str' and 'int'"),  # was TypeError
    ("$int(1e308 * 10)", "cannot convert float infinity to integer"),  # was OverflowError
    ("$ceil(1e400)", "cannot convert float infinity to integer"),  # was OverflowError
    ("$int(1e308)", "result is too large"),
    ("$round(5, -10**29)", "round to at most 30 digits"),  # computed 10**(10**29): a hang
    ("$4 if 'ab' * 10**9 else 1", "result is longer than 10,000"),  # a 2 GB string
    ("$4 if [1] * 10**8 else 1", "result is longer than 10,000"),  # an 800 MB list
    ("$4 if '%0999999999d' % 1 else 1", "text formatting with % is not allowed"),  # a 1 GB string
    ("$" + "-" * 489 + "4", "is nested too deeply"),  # was RecursionError
])
def test_expressions_that_broke_the_cli(tmp_path, expression, message):
    spec = f"input: [3, 8, 8]\nlayers:\n  - conv2d: {{out_channels: \"{expression}\", kernel_size: 1}}\n"
    clean_error(tmp_path, spec, "spec.yaml:3:", message, within_s=2)


def test_parameters_that_double_a_text_stop_at_the_length_limit(tmp_path):
    """Each parameter twice the one before: 60 of them made a text of 10**18 characters (a hang)."""
    params = "".join(f"  p{i}: $p{i - 1} + p{i - 1}\n" for i in range(1, 60))
    clean_error(tmp_path, f"input: [3, 8, 8]\nparams:\n  p0: \"$'a' * 400\"\n{params}layers: [relu]\n",
                "params.p5:", "result is longer than 10,000", within_s=2)


def test_strides_that_compound_on_a_1x1_map_stop_with_a_shape_error(tmp_path):
    """A stride larger than its 1x1 map keeps the map at 1x1 while the jump multiplies: 10**9 per layer overflowed
    the float of `start` (OverflowError), and printing a jump of more than 4,300 digits raises ValueError."""
    clean_error(tmp_path, "input: [1, 1, 1]\nlayers:\n  - maxpool2d: {kernel_size: 1, stride: 1000000000}\n"
                          "    repeat: 600\n", "spec.yaml:3:", "layer 3:", "more than 1e+30")


def test_strides_on_a_1x1_map_are_analysed_while_the_jump_is_in_range(tmp_path):
    outcome = run(tmp_path, "input: [1, 1, 1]\nlayers:\n  - maxpool2d: {kernel_size: 1, stride: 2}\n    repeat: 90\n")
    assert outcome.kind == "ok", outcome.detail


def test_a_spec_that_is_not_a_regular_file_is_not_read(tmp_path):
    """`extends: /dev/zero` read forever (a hang, then a memory blow-up); now only regular files are read."""
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    clean_error(tmp_path, "extends: /dev/zero\nlayers: [relu]\n", "/dev/zero: is a device, not a regular file")


def test_an_error_naming_a_block_with_a_line_break_is_one_line(tmp_path):
    """Was two lines: the closest names (a block called "re\\nlu") are printed as they are."""
    clean_error(tmp_path, 'input: [1, 8, 8]\nblocks:\n  "re\\nlu": {layers: [relu]}\nlayers: [relux]\n',
                "spec.yaml:4:", "unknown layer type 'relux' (did you mean: relu, relu6, re\\nlu?)")


@pytest.mark.parametrize("stall", ["compute", "wait"])
def test_a_case_past_its_budget_is_a_hang_not_waited_for(tmp_path, monkeypatch, stall):
    """The budget works: past 0.2 s of CPU (a loop), or five times that on the clock (a wait), the case stops."""
    import archviz

    def forever(*args, **kwargs):
        while True:
            if stall == "wait":
                time.sleep(1)

    monkeypatch.setattr(archviz, "inspect", forever)
    case = spec_fuzz.Case(0, stall, ((spec_fuzz.MAIN, b"layers: [relu]\n"),), INSPECT)
    start = time.perf_counter()
    outcome = spec_fuzz.run_case(case, tmp_path, budget_s=0.2)
    assert outcome.kind == "hang" and time.perf_counter() - start < 10, outcome
    assert ("s of CPU" if stall == "compute" else "on the clock") in outcome.detail


def test_the_memory_of_a_worker_is_limited():
    """A case that fills memory is a MemoryError in its worker, reported as a bug, and the next case still runs."""
    big = b"input: [1, 4, 4]\nlayers:\n  - relu: {}\n    repeat: 100000\n"  # about 600 MB to analyse
    small = b"input: [1, 4, 4]\nlayers: [relu]\n"
    cases = [spec_fuzz.Case(number, "", ((spec_fuzz.MAIN, spec),), INSPECT) for number, spec in enumerate((big, small))]
    outcomes = dict(spec_fuzz.run_cases(cases, memory_bytes=300 * 2**20))
    assert [outcomes[case].kind for case in cases] == ["memory", "ok"]


def test_adaptive_pooling_to_a_billion_outputs_is_analysed_without_a_loop(tmp_path):
    """Was a hang: the window sizes were found by listing every one of the 10**9 windows."""
    spec = "input: [1, 8, 8]\nlayers:\n  - adaptive_avgpool2d: {output_size: [null, 1000000000]}\n"
    for command in (INSPECT, ("explain", "{dir}/spec.yaml", "0")):
        outcome = run(tmp_path, spec, *command)
        assert outcome.kind == "ok" and outcome.cpu_seconds < 5, outcome


def test_adaptive_windows_in_closed_form_equal_torchs_windows_listed():
    from archviz.ops.pool import adaptive_windows

    for size in range(1, 50):
        for out in range(1, 50):
            windows = [-(-((i + 1) * size) // out) - (i * size) // out for i in range(out)]  # torch's [start, end)
            assert adaptive_windows(size, out) == (max(windows), sum(windows)), (size, out)
