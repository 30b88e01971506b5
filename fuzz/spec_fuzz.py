"""Fuzz the spec loader and the CLI: every input gives an analysis (exit 0) or one `archviz: error:` line (exit 2).

A case is a spec file, and maybe a second one, with an `archviz inspect|explain|diff` command line. The specs are
the zoo's (specs/*.yaml) mutated as text (lines deleted, doubled, swapped; numbers made 0, -1, 10**30, floats or
text; keys and layer types renamed; unicode names; junk inserted; the file cut short) or as data (keys and items
removed, values of the wrong type, duplicate layer names, blocks that use themselves or each other, nested
repeats, odd inputs and `extends:`), or hostile from the start (YAML alias bombs, 10,000-deep nesting, binary
garbage, `!!python/object/apply` tags, huge repeats, long expressions, `$2 ** 10 ** 10`, random YAML-ish text,
expressions that build huge values, control characters in every kind of name, path-like names: devices, a named
pipe, /proc files, paths too long for the system).

Each case runs through typer's CliRunner in a worker process whose address space is limited (a memory blow-up is
a MemoryError there, not a frozen machine). Its budget is CPU time, so that a loaded machine does not turn slow
cases into hangs: an alarm stops a case past BUDGET_S seconds of CPU, another one past WALL_FACTOR times that on
the clock (a case blocked on I/O), and a worker that does not answer at all is killed.

An outcome is `ok` (exit 0; --format json must parse as strict JSON), `error` (exit 2, exactly one stderr line
starting "archviz: error:", no traceback, under LINE_LIMIT characters) or a bug: `traceback` (any other exit, an
uncaught exception, more than one line), `long` (an error line of LINE_LIMIT characters or more), `hang` or
`memory`. Bug cases, and the slowest case, are written to fuzz/failures/ with the command
that reproduces them.

    .venv/bin/python fuzz/spec_fuzz.py --cases 10000 --seed 0 --jobs 2

The figures of the long runs are kept in fuzz/results/.

tests/test_fuzz_specs.py runs a few hundred of these cases on every test run.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import yaml

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
FAILURES = Path(__file__).resolve().parent / "failures"
BUDGET_S = 30.0  # CPU seconds per case: the costliest legitimate case, 100,000 layers (MAX_NODES) printed as JSON
# (60 MB), takes 10 to 20 s of CPU; every other case takes well under a second
WALL_FACTOR = 5  # a case may take this many times its CPU budget on the clock (on a loaded machine)
GRACE_S = 60.0  # past the wall-clock limit, a worker whose alarm did not fire is killed
MEMORY_BYTES = 4 * 2**30  # address space of a worker; a 100,000-layer analysis needs about 1 GB
MAIN = "spec.yaml"  # the name of the (first) spec in a case's folder
OTHER = "other.yaml"  # the second spec of a diff between two fuzzed files
FIFO = "pipe.yaml"  # made a named pipe, not a file, in a case's folder: opening it to read waits for a writer
LINE_LIMIT = 500  # characters of an error line, "archviz: error: " included (issue 15)

# --- vocabulary ----------------------------------------------------------------------------------------------

WEIRD_NUMBERS = ("0", "-1", "1000000000000000000000000000000", "1000000000", "100000", "1.5", "2.0", "-0.5", "0.0",
                 "'x'", "abc", "null", "true", "[]", "{}", "[1, 2, 3]", ".inf", ".nan", "1e400", "0x10", "2001-12-14",
                 "'$2 ** 10 ** 10'", "'$in_channels * 2'", "'$i'", "'$nope'", "'$1 / 0'", "'$-1'", "'$in_height'",
                 "'$int(1e308 * 10)'", "'$round(5, -10**29)'", "'$''a'' * 10**9'", "!!binary aGVsbG8=", "!!float 3",
                 "'same'", "'valid'", "é", "层", "[1]", "[1, 1, 1]", "[0, 0]", "-1000000000", "999999999999",
                 "9" * 5000, "!!float abc", "!!int ''", "!!bool maybe", "!!timestamp 2001-13-45", "!!seq x",
                 "!!set x", "1:30")
CONTROL_NAMES = ("nul\x00byte", "a\nb", "a\rb", "\x1b[2J\x1b[31mred", "tab\tbed", "bell\x07", "\x7f", "\x85next",
                 "\u2028line", "\u202eevil", "\ufeffbom", "\x08\x08\x08", "\x0c")
UNICODE_NAMES = ("конв", "层1", "😀", "naïve", "a b", "a.b", "1abc", "_", "ǅ", "\u200b", "x" * 300, "ｃｏｎｖ", "Σ",
                 *CONTROL_NAMES)
KEYS = ("name", "repeat", "if", "note", "layers", "blocks", "params", "input", "extends", "variants", "inline",
        "description", "torchvision", "source", "branches", "required", "sequential", "group", "add", "concat")
LAYER_NAMES = ("conv1", "fc", "0", "1", "features.0", "layer1.0.conv1", "conv2d_1", "dense_1", "classifier.6",
               "relu", "layer3", "x" * 300, "层", ".", "..", "layer1.0", "head", "stem", "Mixed_5b", "-x", "--help",
               "../conv1", "/etc/passwd", "a\x00b", "\x1b[31mconv1", "conv1\n")
JUNK = (": ", "- ", "[", "]", "{", "}", "&a ", "*a", "!!python/object/apply:os.system ['true'] ", "\t", "'", '"',
        "# ", "? ", "|", ">", "%YAML 1.1\n", "---\n", "...\n", "\x00", "\x85", "\ufeff", "$", "!!set ", "@", "`")
YAML_ALPHABET = "abcxyz019 :-[]{},&*!|>'\"#%@`?\n\t.$_\\é层"
COMMANDS_FORMATS = ("table", "keras", "json", "csv", "markdown")


def op_vocabulary() -> tuple[list[str], list[str]]:
    """(op names and aliases, argument names and aliases) of the registry."""
    from archviz.ops import all_names, get_op

    ops = all_names()
    args = sorted({alias for name in ops for arg in get_op(name).args for alias in (arg.name, *arg.aliases)})
    return ops, args


def zoo_texts() -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(SPECS.glob("*.yaml"))}


# --- cases ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    number: int
    recipe: str  # how the case was made
    files: tuple[tuple[str, bytes], ...]  # written into the case's folder
    argv: tuple[str, ...]  # archviz's arguments; "{dir}" is the case's folder


@dataclass(frozen=True)
class Outcome:
    kind: str  # ok, error; bugs: traceback, hang, memory
    seconds: float  # on the clock
    detail: str  # the error line, or what went wrong
    cpu_seconds: float = 0.0


BUG_KINDS = ("traceback", "long", "hang", "memory")


class _NoAliasDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # a copied subtree must not come out as an alias
    def ignore_aliases(self, data):
        return True


class Generator:
    """Deterministic cases from a seed: the same seed gives the same cases."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.zoo = zoo_texts()
        self.models = [name for name in self.zoo if not name.startswith("_")]
        self.libraries = [name for name in self.zoo if name.startswith("_")]
        self.ops, self.args = op_vocabulary()
        self.trees: dict[str, object] = {}  # the zoo's specs as data, parsed once
        longest_first = sorted(map(re.escape, self.ops), key=len, reverse=True)
        self.type_pattern = re.compile(r"\b(" + "|".join(longest_first) + r")\b")

    def case(self, number: int, *, hostile: str | None = None) -> Case:
        """A case; one of the HOSTILE kind named, if any."""
        rng = self.rng
        roll = 1.0 if hostile else rng.random()
        if roll < 0.42:
            recipe, main = self.text_mutant()
        elif roll < 0.78:
            recipe, main = self.data_mutant()
        else:
            recipe, main = self.hostile(hostile)
        files = {name: text.encode() for name, text in self.zoo.items() if name.startswith("_")}
        if rng.random() < 0.1:  # the library a zoo spec extends, mutated
            library = rng.choice(self.libraries)
            how, text = self.mutate_text(self.zoo[library])
            files[library] = text.encode()
            recipe += f" + {library}: {how}"
        files[MAIN] = main if isinstance(main, bytes) else main.encode("utf-8", "surrogatepass")
        argv = self.command(files)
        if recipe == "path-like name":
            files[FIFO] = b""
            if rng.random() < 0.3:  # the spec named on the command line is the odd file
                odd = rng.choice(ODD_PATHS).replace("{case}", "{dir}")
                argv = ["explain", odd, "0"] if rng.random() < 0.3 else ["inspect", odd, "--no-crosscheck"]
        return Case(number, recipe, tuple(files.items()), tuple(argv))

    # --- command lines ---
    def command(self, files: dict[str, bytes]) -> list[str]:
        rng = self.rng
        spec = "{dir}/" + MAIN
        roll = rng.random()
        if roll < 0.6:
            argv = ["inspect", spec, "--no-crosscheck", "--format", "json"]
        elif roll < 0.72:
            argv = ["inspect", spec, "--no-crosscheck", "--format", rng.choice(COMMANDS_FORMATS)]
            argv += self.options()
        elif roll < 0.86:
            argv = ["explain", spec, rng.choice(LAYER_NAMES)] + self.options(depth=False, fmt=False)
        else:
            other = rng.choice(self.models).removesuffix(".yaml")
            if rng.random() < 0.3:
                files[OTHER] = self.mutate_text(self.zoo[rng.choice(self.models)])[1].encode()
                other = "{dir}/" + OTHER
            pair = [spec, other] if rng.random() < 0.5 else [other, spec]
            argv = ["diff", *pair] + (["--format", "json"] if rng.random() < 0.5 else [])
        return argv

    def options(self, *, depth: bool = True, fmt: bool = True) -> list[str]:
        rng = self.rng
        options = []
        if rng.random() < 0.3:
            options += ["--input", rng.choice(("3x32x32", "1x1x1", "3x224x224", "0x1x1", "abc", "3,64,64", "7",
                                               "3x1000000000x1000000000", "3x10x10x10", "1x2"))]
        if rng.random() < 0.2:
            options += ["--batch", rng.choice(("1", "7", "1000000"))]
        if rng.random() < 0.2:
            options += ["--set", rng.choice(("num_classes=10", "num_classes=0", "nope=1", "num_classes=$2**10**10",
                                             "num_classes=[1", "=3", "num_classes", "batch_norm=true",
                                             "width=1.5", "num_classes=-1"))]
        if depth and rng.random() < 0.2:
            options += ["--depth", rng.choice(("1", "2", "100"))]
        if rng.random() < 0.1:
            options += ["--dtype", rng.choice(("float16", "int8", "float64"))]
        return options

    # --- text mutations ---
    def text_mutant(self) -> tuple[str, str]:
        name = self.rng.choice(self.models)
        how, text = self.mutate_text(self.zoo[name])
        return f"{name}: {how}", text

    def mutate_text(self, text: str) -> tuple[str, str]:
        rng = self.rng
        steps = []
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 5))):
            mutation = rng.choice(TEXT_MUTATIONS)
            text = mutation(self, text)
            steps.append(mutation.__name__)
        return ", ".join(steps), text

    def delete_line(self, text):
        lines = text.splitlines(keepends=True)
        if not lines:
            return text
        del lines[self.rng.randrange(len(lines))]
        return "".join(lines)

    def duplicate_line(self, text):
        lines = text.splitlines(keepends=True)
        if not lines:
            return text
        i = self.rng.randrange(len(lines))
        lines.insert(i, lines[i])
        return "".join(lines)

    def swap_lines(self, text):
        lines = text.splitlines(keepends=True)
        if not lines:
            return text
        i, j = self.rng.randrange(len(lines)), self.rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        return "".join(lines)

    def reindent_line(self, text):
        lines = text.splitlines(keepends=True)
        if not lines:
            return text
        i = self.rng.randrange(len(lines))
        lines[i] = (" " * self.rng.choice((1, 2, 4)) + lines[i]) if self.rng.random() < 0.5 else lines[i].lstrip(" ")
        return "".join(lines)

    def replace_number(self, text):
        numbers = list(re.finditer(r"(?<![\w.])\d+(?![\w.])", text))
        if not numbers:
            return text
        match = self.rng.choice(numbers)
        return text[:match.start()] + self.rng.choice(WEIRD_NUMBERS) + text[match.end():]

    def replace_value(self, text):
        values = list(re.finditer(r"(?<=: )[^\s#{}\[\],][^#{}\[\],\n]*", text))
        if not values:
            return text
        match = self.rng.choice(values)
        return text[:match.start()] + self.rng.choice(WEIRD_NUMBERS) + text[match.end():]

    def rename_key(self, text):
        keys = list(re.finditer(r"[A-Za-z_][\w]*(?=:)", text))
        if not keys:
            return text
        match = self.rng.choice(keys)
        new = self.rng.choice((*KEYS, *self.args[:40], *UNICODE_NAMES, match.group() + "s", match.group()[:-1]))
        return text[:match.start()] + new + text[match.end():]

    def rename_type(self, text):
        found = list(self.type_pattern.finditer(text))
        if not found:
            return text
        match = self.rng.choice(found)
        new = self.rng.choice((*self.ops, *UNICODE_NAMES, "bottleneck", "basic", "stem", "head", "sequential",
                               "group", "add", "concat", "conv3d", "Conv2D"))
        return text[:match.start()] + new + text[match.end():]

    def rename_layer(self, text):
        names = list(re.finditer(r"(?<=name: )[^\s#]+", text))
        if not names:
            return text
        match = self.rng.choice(names)
        new = self.rng.choice((*UNICODE_NAMES, *(m.group() for m in names)))  # often another layer's: a duplicate
        return text[:match.start()] + json.dumps(new, ensure_ascii=False) + text[match.end():]

    def insert_junk(self, text):
        at = self.rng.randrange(len(text) + 1)
        return text[:at] + self.rng.choice(JUNK) + text[at:]

    def truncate(self, text):
        return text[:self.rng.randrange(len(text) + 1)]

    def splice(self, text):
        """Lines of another zoo spec in the middle of this one."""
        donor = self.zoo[self.rng.choice(self.models)].splitlines(keepends=True)
        lines = text.splitlines(keepends=True)
        start = self.rng.randrange(len(donor))
        piece = donor[start:start + self.rng.randint(1, 8)]
        at = self.rng.randrange(len(lines) + 1)
        return "".join(lines[:at] + piece + lines[at:])

    # --- data mutations ---
    def data_mutant(self) -> tuple[str, str]:
        rng = self.rng
        name = rng.choice(self.models)
        data = copy.deepcopy(self.parsed(name))
        steps = []
        for _ in range(rng.choice((1, 1, 2, 2, 3))):
            mutation = rng.choice(DATA_MUTATIONS)
            data = mutation(self, data)
            steps.append(mutation.__name__)
        text = yaml.dump(data, Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=rng.random() < 0.5,
                         default_flow_style=rng.choice((False, None)))
        return f"{name}: {', '.join(steps)}", text

    def parsed(self, name: str):
        if name not in self.trees:
            self.trees[name] = yaml.load(self.zoo[name], Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        return self.trees[name]

    def weird_value(self, depth: int = 0):
        rng = self.rng
        choices = [0, -1, 10**30, 10**9, 100000, 1.5, 2.0, float("inf"), float("nan"), "x", "", None, True, False,
                   [], {}, [1, 2], [3, 224, 224], "$2 ** 10 ** 10", "$in_channels * 2", "$i", "$nope", "$1/0",
                   "$" + "1+" * 300 + "1", "$" + "(" * 100 + "1" + ")" * 100, "$(", "3x32x32", "same", "é",
                   rng.choice(UNICODE_NAMES), rng.choice(self.ops), rng.randint(-5, 300)]
        if depth < 2:
            choices += [[self.weird_value(depth + 1)], {rng.choice(KEYS): self.weird_value(depth + 1)}]
        return rng.choice(choices)

    def positions(self, data) -> list[tuple[object, object]]:
        """(container, key or index) of every value in the tree."""
        found = []

        def walk(node):
            if isinstance(node, dict):
                for key in list(node):
                    found.append((node, key))
                    walk(node[key])
            elif isinstance(node, list):
                for index in range(len(node)):
                    found.append((node, index))
                    walk(node[index])

        walk(data)
        return found

    def layer_lists(self, data) -> list[list]:
        """Every `layers:` list (top level and blocks) and every branch list of an add or concat."""
        lists = []

        def walk(node, parent_key=None):
            if isinstance(node, dict):
                for key, value in node.items():
                    walk(value, key)
            elif isinstance(node, list):
                if parent_key in ("layers", "sequential", "group", "add", "concat", "branches", "branch"):
                    lists.append(node)
                for item in node:
                    walk(item, "branch" if parent_key in ("add", "concat", "branches") else None)

        walk(data)
        return [items for items in lists if isinstance(items, list)]

    def drop(self, data):
        spots = self.positions(data)
        if spots:
            container, key = self.rng.choice(spots)
            del container[key]
        return data

    def replace(self, data):
        spots = self.positions(data)
        if spots:
            container, key = self.rng.choice(spots)
            container[key] = self.weird_value()
        return data

    def rename(self, data):
        spots = [(c, k) for c, k in self.positions(data) if isinstance(c, dict)]
        if spots:
            container, key = self.rng.choice(spots)
            new = self.rng.choice((*KEYS, *self.ops, *self.args[:30], *UNICODE_NAMES, 1, 2.5, True, None))
            if new not in container:
                container[new] = container.pop(key)
        return data

    def duplicate_item(self, data):
        lists = [items for items in self.layer_lists(data) if items]
        if lists:
            items = self.rng.choice(lists)
            i = self.rng.randrange(len(items))
            items.insert(i, copy.deepcopy(items[i]))
        return data

    def shuffle(self, data):
        lists = [items for items in self.layer_lists(data) if len(items) > 1]
        if lists:
            self.rng.shuffle(self.rng.choice(lists))
        return data

    def meta(self, data):
        """repeat, if, name or note on a layer entry."""
        rng = self.rng
        lists = [items for items in self.layer_lists(data) if items]
        if not lists:
            return data
        items = rng.choice(lists)
        i = rng.randrange(len(items))
        if not isinstance(items[i], (dict, str)):
            return data
        entry = items[i] if isinstance(items[i], dict) else {items[i]: None}
        key = rng.choice(("repeat", "repeat", "if", "name", "name", "note"))
        entry[key] = {
            "repeat": lambda: rng.choice((0, 1, 2, 3, 1000, 100000, 10**9, 10**30, -1, 1.5, "$i", "$2 ** 10 ** 10",
                                          "$in_channels", "x", None, [2])),
            "if": lambda: rng.choice((True, False, 0, 1, "x", None, "$i == 0", "$in_channels > 1", "$nope", "$1/0")),
            "name": lambda: rng.choice((*UNICODE_NAMES, *LAYER_NAMES, 0, 1.5, None, True, "conv1", "conv1")),
            "note": lambda: rng.choice(("ok", 1, None, ["x"], "é" * 1000)),
        }[key]()
        items[i] = entry
        return data

    def cycle(self, data):
        """A block that uses itself, or two blocks that use each other."""
        rng = self.rng
        blocks = data.setdefault("blocks", {}) if isinstance(data, dict) else None
        if not isinstance(blocks, dict):
            return data
        if blocks and rng.random() < 0.5:
            name = rng.choice(list(blocks))
            if isinstance(blocks[name], dict) and isinstance(blocks[name].get("layers"), list):
                blocks[name]["layers"].append(name)
        else:
            blocks["cyc_a"] = {"layers": ["relu", "cyc_b"]}
            blocks["cyc_b"] = {"params": {"n": 1}, "layers": [{"cyc_a": None}]}
        if isinstance(data.get("layers"), list):
            data["layers"].insert(rng.randrange(len(data["layers"]) + 1), rng.choice(("cyc_a", *blocks)))
        return data

    def nest_repeats(self, data):
        """An entry wrapped in groups that repeat it: the counts multiply."""
        lists = [items for items in self.layer_lists(data) if items]
        if lists:
            items = self.rng.choice(lists)
            i = self.rng.randrange(len(items))
            entry = items[i]
            for _ in range(self.rng.randint(1, 4)):
                entry = {"group": [entry], "repeat": self.rng.choice((2, 10, 1000, 100000))}
            items[i] = entry
        return data

    def retype(self, data):
        lists = [items for items in self.layer_lists(data) if items]
        if lists:
            items = self.rng.choice(lists)
            i = self.rng.randrange(len(items))
            entry = items[i]
            new = self.rng.choice((*self.ops, "sequential", "group", "add", "concat", *UNICODE_NAMES))
            if isinstance(entry, dict):
                heads = [k for k in entry if k not in ("name", "repeat", "if", "note")]
                if heads:
                    entry[new] = entry.pop(heads[0])
            else:
                items[i] = new
        return data

    def top_level(self, data):
        rng = self.rng
        if not isinstance(data, dict):
            return data
        key = rng.choice(("input", "input", "params", "extends", "variants", "name", "layers", "blocks"))
        data[key] = {
            "input": lambda: rng.choice(([3, 32, 32], [0, 1, 1], [1, 1, 1], [3, 10**9, 10**9], [3, 10**30, 10],
                                         [3, 32], [3, 32, 32, 32], [], "3x32x32", "3 x 32", 3, [3.5, 32, 32],
                                         [True, 32, 32], [[3], 32, 32], None)),
            "params": lambda: {rng.choice(("num_classes", "width", "x", "batch_norm")): self.weird_value()},
            "extends": lambda: rng.choice(("_resnet.yaml", "_vgg.yaml", MAIN, "missing.yaml", "/dev/zero",
                                           "/dev/null", ".", "..", "/", 3, None, "_inception.yaml")),
            "variants": lambda: {"v": self.weird_value()},
            "name": lambda: self.weird_value(),
            "layers": lambda: self.weird_value(),
            "blocks": lambda: self.weird_value(),
        }[key]()
        return data

    # --- hostile inputs ---
    def hostile(self, kind: str | None = None) -> tuple[str, str | bytes]:
        rng = self.rng
        kind = kind or rng.choice(list(HOSTILE))
        return kind, HOSTILE[kind](self, rng)


def _alias_bomb(self, rng) -> str:
    levels = rng.randint(3, 9)
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "\n".join(lines) + f"\ninput: [1, 8, 8]\nlayers: *a{levels - 1}\n"


def _deep(self, rng) -> str:
    depth = rng.choice((150, 250, 1000, 10_000))
    form = rng.choice(("flow", "map", "block", "sequential"))
    if form == "flow":
        return "input: [1, 8, 8]\nlayers: " + "[" * depth + "]" * depth + "\n"
    if form == "map":
        return "input: [1, 8, 8]\nlayers: " + "{a: " * depth + "1" + "}" * depth + "\n"
    if form == "block":
        return "input: [1, 8, 8]\nlayers:\n" + "".join("  " * i + "- \n" for i in range(min(depth, 400)))
    text = "input: [1, 8, 8]\nlayers:\n"
    for i in range(min(depth, 400)):
        text += "  " * (i + 1) + "- sequential:\n"
    return text + "  " * (min(depth, 400) + 2) + "- relu\n"


def _binary(self, rng) -> bytes:
    garbage = rng.randbytes(rng.randint(1, 400))
    prefix = rng.choice((b"", b"input: [1, 8, 8]\nlayers:\n  - ", b"\xef\xbb\xbf", b"name: x\n"))
    return prefix + garbage


def _python_tag(self, rng) -> str:
    tag = rng.choice(("!!python/object/apply:os.system ['true']", "!!python/object/new:os.system [true]",
                      "!!python/name:os.system", "!!python/module:os", "!!python/tuple [1, 2]",
                      "!!python/object:builtins.dict {}", "!<tag:yaml.org,2002:python/object/apply:os.system> [x]",
                      "!custom x", "!!binary aGVsbG8=", "!!set {a, b}", "!!omap [{a: 1}]", "!!timestamp 2001-12-14",
                      "!!int '0x1F'", "!!str 3", "!!null ''", "!!float '1e400'", "!!map {relu: {}}",
                      "!!seq [relu]", "!!bool yes", "!!pairs [[a, 1]]"))
    where = rng.choice(("layer", "input", "top", "arg"))
    if where == "layer":
        return f"input: [1, 8, 8]\nlayers:\n  - {tag}\n"
    if where == "input":
        return f"input: {tag}\nlayers: [relu]\n"
    if where == "arg":
        return f"input: [1, 8, 8]\nlayers:\n  - conv2d: {{out_channels: {tag}, kernel_size: 1}}\n"
    return f"{tag}\n"


def _huge_repeat(self, rng) -> str:
    count = rng.choice((10**5, 10**5 + 1, 2 * 10**5, 10**6, 10**9, 10**30, 2**63, -(10**9)))
    inner = rng.choice(("relu", "group: []", "conv2d: {out_channels: 1, kernel_size: 1}", "sequential: []",
                        "identity"))
    return f"input: [1, 4, 4]\nlayers:\n  - {inner}\n    repeat: {count}\n"


def _nested_repeats(self, rng) -> str:
    levels = rng.randint(2, 5)
    inner = rng.choice(("relu", "group: []", "identity: {}", "add: [[relu], []]", "relu\n    if: false"))
    text = f"- {inner}\n  repeat: {rng.choice((10, 1000, 200000))}\n"
    for _ in range(levels - 1):
        body = "".join("    " + line + "\n" for line in text.splitlines())
        text = f"- group:\n{body}  repeat: {rng.choice((10, 1000, 200000))}\n"
    return "input: [1, 4, 4]\nlayers:\n" + "".join("  " + line + "\n" for line in text.splitlines())


def _long_expression(self, rng) -> str:
    expression = rng.choice((
        "$2 ** 10 ** 10", "$" + "1+" * 249 + "1", "$" + "1+" * 260 + "1", "$" + "-" * 490 + "4",
        "$" + "(" * 99 + "4" + ")" * 99, "$" + "not " * 120 + "4", "$" + "[" * 150 + "4" + "]" * 150,
        "$" + "2**" * 100 + "1", "$10**30", "$10**29 * 10", "$'a' * 10**9", "$'%0999999999d' % 1",
        "$[1] * 10**8", "$int(1e308 * 10)", "$round(5, -10**29)", "$ceil(1e400)", "$abs('x')", "$min()",
        "$max([])", "$-'a'", "$'a' < 1", "$[1][5]", "$(1 if 'x' else 2)", "$__import__('os')", "$().__class__",
        "$lambda: 1", "$[x for x in [1]]", "$in_channels.bit_length()", "${1 + 1}", "$'\\x00'", "$1 if",
        "$1e308 * 10", "$int(1e300)", "$(-8) ** 0.5", "$10 ** -400", "$2.0 ** 1000", "$f'{1}'"))
    return ("input: [3, 8, 8]\nlayers:\n  - conv2d: {out_channels: " + json.dumps(expression) +
            ", kernel_size: 1}\n")


def _value_bomb(self, rng) -> str:
    """Values an expression builds past any text: shared lists repeated inside each other (a repr or an `==` of
    10**12 items), parameters that double a list, and long values a message would quote."""
    form = rng.choice(("expression", "expression", "doubling", "long literal", "long list"))
    if form == "doubling":
        levels = rng.randint(1, 40)
        params = "".join(f"  p{i}: \"$[p{i - 1}, p{i - 1}]\"\n" for i in range(1, levels + 1))
        use = rng.choice((f"$p{levels}", f"$p{levels} == p{levels}", f"$p{levels}[0]", f"$[p{levels}] * 3",
                          f"$-p{levels}", f"$p{levels} + p{levels}"))
        return (f"input: [3, 8, 8]\nparams:\n  p0: \"$[1] * {rng.choice((10, 100, 5000))}\"\n{params}layers:\n"
                f"  - conv2d: {{out_channels: {json.dumps(use)}, kernel_size: 1}}\n")
    if form == "long literal":
        value = rng.choice(("x", "é", "\x07", "[1]")) * rng.choice((500, 50_000, 1_000_000))
        where = rng.choice(("out_channels", "name", "repeat", "if", "param", "type"))
        if where == "param":
            return f"input: [3, 8, 8]\nparams:\n  p: {json.dumps(value)}\nlayers:\n  - relu: {{}}\n    if: $p * 2\n"
        if where == "type":
            return f"input: [3, 8, 8]\nlayers:\n  - {json.dumps(value)}\n"
        if where == "out_channels":
            return f"input: [3, 8, 8]\nlayers:\n  - conv2d: {{out_channels: {json.dumps(value)}, kernel_size: 1}}\n"
        return f"input: [3, 8, 8]\nlayers:\n  - relu: {{}}\n    {where}: {json.dumps(value)}\n"
    if form == "long list":
        items = ", ".join(["1"] * rng.choice((100, 10_000, 200_000)))
        use = rng.choice(("$p", "$p == p", "$[p] * 10", "$p['a']", "$p + p", "$max(p)", "$-p", "$p < 'a'"))
        return (f"input: [3, 8, 8]\nparams:\n  p: [{items}]\nlayers:\n"
                f"  - conv2d: {{out_channels: {json.dumps(use)}, kernel_size: 1}}\n")
    expression = rng.choice((
        "$[[[1] * 10000] * 10000] * 10000", "$[[1] * 10000] * 10000 == [[1] * 10000] * 10000",
        "$[[[1] * 10000] * 10000] * 10000 == [[[1] * 10000] * 10000] * 10000", "$[[1] * 100] * 100",
        "$[[1] * 5000] + [[1] * 5000]", "$[['a' * 5000] * 2]", "$[[1] * 9999][0][5]", "$([7] * 9000)['a']",
        "$-([1] * 9000)", "$[1] * 9000 < 'a'", "$max([[1] * 5000, [2] * 5000])", "$[[]] * 10**9",
        "$[[[]] * 5000] * 5000", "$min([[1] * 10000] * 10000)", "$abs([1] * 9000)", "$int('9' * 4000)",
        "$round([1] * 9000)", "$[[1] * 3000] * 3 if 1 else 0", "$('a' * 9999)[10**9]", "$[1, [2, [3, [4]]]] * 3000",
        "$[" + ", ".join(["[1] * 9000"] * 20) + "]", "$" + " + ".join(["[[1] * 700]"] * 20)))
    where = rng.choice(("out_channels", "if", "repeat", "param"))
    if where == "param":
        return (f"input: [3, 8, 8]\nparams:\n  big: {json.dumps(expression)}\nlayers:\n"
                "  - conv2d: {out_channels: $big, kernel_size: 1}\n")
    if where in ("if", "repeat"):
        return f"input: [3, 8, 8]\nlayers:\n  - relu: {{}}\n    {where}: {json.dumps(expression)}\n"
    return f"input: [3, 8, 8]\nlayers:\n  - conv2d: {{out_channels: {json.dumps(expression)}, kernel_size: 1}}\n"


def _control_characters(self, rng) -> str:
    """A control character (or a line or paragraph separator, a right-to-left override, a BOM) in a name, a key, a
    value or an expression, escaped for YAML or raw."""
    name = rng.choice(CONTROL_NAMES) if rng.random() < 0.7 else chr(rng.choice((*range(32), 127, *range(128, 160))))
    quoted = json.dumps(name) if rng.random() < 0.8 else name
    return rng.choice((
        f"name: {quoted}\ninput: [1, 8, 8]\nlayers: [relu]\n",
        f"input: [1, 8, 8]\nlayers:\n  - relu: {{}}\n    name: {quoted}\n",
        f"input: [1, 8, 8]\nlayers:\n  - {quoted}\n",
        f"input: [1, 8, 8]\nlayers:\n  - {{{quoted}: {{}}}}\n",
        f"input: [1, 8, 8]\nlayers:\n  - conv2d: {{out_channels: 2, kernel_size: 1, {quoted}: 1}}\n",
        f"input: [1, 8, 8]\nblocks:\n  {quoted}: {{layers: [relu]}}\nlayers: [{quoted}]\n",
        f"input: [1, 8, 8]\nblocks:\n  {quoted}: {{layers: [relu]}}\nlayers: [relux]\n",
        f"input: [1, 8, 8]\nparams:\n  {quoted}: 3\nlayers: [relu]\n",
        f"input: [1, 8, 8]\nparams:\n  c: {quoted}\nlayers:\n  - conv2d: {{out_channels: $c, kernel_size: 1}}\n",
        f"input: [1, 8, 8]\nvariants:\n  {quoted}: {{params: {{}}}}\nlayers: [relu]\n",
        f"input: [1, 8, 8]\nlayers:\n  - conv2d: {{out_channels: {json.dumps('$' + name)}, kernel_size: 1}}\n",
        f"input: [1, 8, 8]\nlayers:\n  - conv2d: {{out_channels: {json.dumps('$2 if ' + repr(name) + ' else 1')}, "
        "kernel_size: 1}\n",
        f"input: [1, 8, 8]\nextends: {quoted}\nlayers: [relu]\n",
        f"input: [1, 8, 8]\nlayers:\n  - relu: {{}}\n    note: {quoted}\n",
        f"input: [1, 8, 8]\nlayers:\n  - add: [[relu], [relu]]\n    name: {quoted}\n",
    ))


ODD_PATHS = ("/dev/null", "/dev/zero", "/dev/full", "/dev/urandom", "/dev/stdin", "/dev/tty", "/proc/self/fd/0",
             "/proc/self/mem", "/proc/self/status", "/proc/self", "/", ".", "..", "{case}/" + FIFO, "{case}",
             "{case}/missing.yaml", "{case}/" + MAIN + "/", "{case}//" + MAIN, "~/spec.yaml", "a" * 300 + ".yaml",
             "/".join(["a"] * 3000) + ".yaml", "x\x00y.yaml", "\n.yaml", " ", "", "-", "file:///etc/hostname",
             "http://example.com/x.yaml", "*.yaml", "C:\\x.yaml", "../" * 40 + "etc/hostname", "%2e%2e/x.yaml")


def _path_like(self, rng) -> str:
    """`extends:` naming what is not a spec file: a device, a named pipe (FIFO, made in the case's folder), /proc,
    a folder, a path too long for the system, a NUL byte, a URL. Devices that do anything when opened (a watchdog,
    a disk) are left out: only ones that read harmlessly are named."""
    target = rng.choice(ODD_PATHS).replace("{case}/", "").replace("{case}", ".")
    base = rng.choice(("input: [1, 8, 8]\nlayers: [relu]\n", "layers: [relu]\n", "input: [1, 8, 8]\n"))
    return f"extends: {json.dumps(target)}\n{base}"


def _yamlish(self, rng) -> str:
    size = rng.randint(1, 400)
    return "".join(rng.choice(YAML_ALPHABET) if rng.random() < 0.7 else rng.choice(("relu", "layers", "input",
                   "conv2d", "name", "repeat", "- ", ": ", "[1, 8, 8]", "\n  ", "$i")) for _ in range(size))


def _odd_structure(self, rng) -> str:
    return rng.choice((
        "", "null", "~", "[]", "{}", "3", "'x'", "layers", "layers: relu", "layers: []", "input: [1, 8, 8]\n",
        "input: [1, 8, 8]\nlayers: {}\n", "input: [1, 8, 8]\nlayers: [[]]\n", "input: [1, 8, 8]\nlayers: [{}]\n",
        "input: [1, 8, 8]\nlayers: [null]\n", "input: [1, 8, 8]\nlayers: [{relu: {}, conv2d: {}}]\n",
        "input: [1, 8, 8]\nlayers: [{name: x}]\n", "input: [1, 8, 8]\nlayers: [{? [a]: 1}]\n",
        "input: [1, 8, 8]\nlayers: [{1: 2}]\n", "input: [1, 8, 8]\nlayers: [relu]\n---\nlayers: [relu]\n",
        "input: [1, 8, 8]\nlayers: [relu, relu]\nlayers: [relu]\n", "input: [1, 8, 8]\nlayers:\n  - add: []\n",
        "input: [1, 8, 8]\nlayers:\n  - add: [[relu]]\n", "input: [1, 8, 8]\nlayers:\n  - add: [[relu], [conv2d]]\n",
        "input: [1, 8, 8]\nlayers:\n  - concat: {dim: 5, branches: [[], []]}\n",
        "input: [1, 8, 8]\nlayers:\n  - add: [[{conv2d: {out_channels: 2, kernel_size: 1}}], []]\n",
        "input: [1, 8, 8]\nlayers:\n  - flatten\n  - conv2d: {out_channels: 2, kernel_size: 1}\n",
        "input: [1, 8, 8]\nlayers:\n  - maxpool2d: {kernel_size: 9}\n",
        "input: [1, 1, 1]\nlayers:\n  - maxpool2d: {kernel_size: 1, stride: 1000000000}\n    repeat: 100\n",
        "input: [4, 8, 8]\nlayers:\n  - conv2d: {out_channels: 6, kernel_size: 1, groups: 4}\n",
        "input: [1, 8, 8]\nlayers:\n  - conv2d: {out_channels: 1, kernel_size: 3, padding: same, stride: 2}\n",
        "input: [1, 8, 8]\nlayers:\n  - conv2d: {out_channels: 1, kernel_size: 3, dilation: 1000000000}\n",
        "input: [1, 8, 8]\nlayers:\n  - adaptive_avgpool2d: {output_size: [null, 1000000000]}\n",
        "input: [1, 8, 8]\nlayers:\n  - flatten: {start_dim: 5}\n", "input: [8]\nlayers: [relu, conv2d]\n",
        "input: [1, 8, 8]\nlayers:\n  - sequential: []\n    name: a\n  - relu\n    name: a\n",
        "input: [1, 8, 8]\nlayers:\n  - group: [relu]\n    name: g\n",
        "input: [1, 8, 8]\nblocks:\n  b: {layers: [relu], inline: true}\nlayers:\n  - b\n    repeat: 3\n",
        "input: [1, 8, 8]\nblocks:\n  relu: {layers: [relu]}\nlayers: [relu]\n",
        "input: [1, 8, 8]\nblocks:\n  b: {params: {c: required}, layers: [relu]}\nlayers: [b]\n",
        "input: [1, 8, 8]\nextends: spec.yaml\nlayers: [relu]\n",
        "input: [1, 8, 8]\nextends: /dev/zero\nlayers: [relu]\n",
        "input: [1, 8, 8]\nlayers:\n  - relu\n    name: " + "n" * 2000 + "\n",
        "input: [1, 8, 8]\nvariants: {v: {params: {x: 1}}}\nlayers: [relu]\n",
        "input: [1, 8, 8]\nparams: {a: $b, b: $a}\nlayers: [relu]\n",
        "input: [1, 8, 8]\nparams: {a: $a}\nlayers: [relu]\n",
    ))


HOSTILE = {
    "alias bomb": _alias_bomb, "deep nesting": _deep, "binary garbage": _binary, "python tag": _python_tag,
    "huge repeat": _huge_repeat, "nested repeats": _nested_repeats, "long expression": _long_expression,
    "yaml-ish text": _yamlish, "odd structure": _odd_structure, "value-size bomb": _value_bomb,
    "control characters": _control_characters, "path-like name": _path_like,
}
TEXT_MUTATIONS = (Generator.delete_line, Generator.duplicate_line, Generator.swap_lines, Generator.reindent_line,
                  Generator.replace_number, Generator.replace_number, Generator.replace_value, Generator.rename_key,
                  Generator.rename_type, Generator.rename_layer, Generator.insert_junk, Generator.truncate,
                  Generator.splice)
DATA_MUTATIONS = (Generator.drop, Generator.replace, Generator.replace, Generator.rename, Generator.duplicate_item,
                  Generator.shuffle, Generator.meta, Generator.meta, Generator.cycle, Generator.nest_repeats,
                  Generator.retype, Generator.top_level)


def make_cases(count: int, *, seed: int, hostile: str | None = None) -> list[Case]:
    generator = Generator(seed)
    return [generator.case(number, hostile=hostile) for number in range(count)]


# --- running one case ------------------------------------------------------------------------------------------

class Overrun(BaseException):
    """The case ran past its budget (a BaseException, so that CliRunner does not swallow it)."""


def run_case(case: Case, folder: Path, *, budget_s: float = BUDGET_S) -> Outcome:
    """Write the case's files into folder and run its command in this process, with an alarm after budget_s
    seconds of CPU (or WALL_FACTOR times that on the clock)."""
    from typer.testing import CliRunner

    from archviz.cli import app

    write_files(case, folder)
    argv = [arg.replace("{dir}", str(folder)) for arg in case.argv]

    def alarm(signum, frame):
        raise Overrun(signal.Signals(signum).name)

    handlers = {number: signal.signal(number, alarm) for number in (signal.SIGPROF, signal.SIGALRM)}
    signal.setitimer(signal.ITIMER_PROF, budget_s)  # CPU time of this process
    signal.setitimer(signal.ITIMER_REAL, budget_s * WALL_FACTOR)
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        result = CliRunner().invoke(app, argv)
    except Overrun as overrun:
        limit = f"{budget_s} s of CPU" if overrun.args[0] == "SIGPROF" else f"{budget_s * WALL_FACTOR} s on the clock"
        return Outcome("hang", time.perf_counter() - start, f"ran past {limit}:\n{traceback.format_exc()}",
                       time.process_time() - cpu_start)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        for number, handler in handlers.items():
            signal.signal(number, handler)
    return classify(result, argv, time.perf_counter() - start, time.process_time() - cpu_start)


def write_files(case: Case, folder: Path) -> None:
    for name, content in case.files:
        if name == FIFO:
            os.mkfifo(folder / name)
        else:
            (folder / name).write_bytes(content)


def classify(result, argv: list[str], seconds: float, cpu_seconds: float = 0.0) -> Outcome:
    error = result.exception
    if error is not None and not isinstance(error, SystemExit):
        kind = "memory" if isinstance(error, MemoryError) else "traceback"
        text = "".join(traceback.format_exception(error))
        return Outcome(kind, seconds, text, cpu_seconds)
    stderr = result.stderr
    if result.exit_code == 0:
        if "Traceback" in result.stdout or "Traceback" in stderr:
            return Outcome("traceback", seconds, f"exit 0 with a traceback:\n{stderr}", cpu_seconds)
        if "json" in argv:
            try:
                json.loads(result.stdout, parse_constant=_no_constant)
            except ValueError as problem:
                return Outcome("traceback", seconds, f"--format json printed invalid JSON: {problem}",
                               cpu_seconds)
        return Outcome("ok", seconds, "", cpu_seconds)
    lines = stderr.splitlines()
    if (result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("archviz: error: ")
            and "Traceback" not in stderr):
        if len(lines[0]) >= LINE_LIMIT:
            return Outcome("long", seconds, f"an error line of {len(lines[0]):,} characters:\n{lines[0]}", cpu_seconds)
        return Outcome("error", seconds, lines[0], cpu_seconds)
    detail = f"exit {result.exit_code}, stderr:\n{stderr}\nstdout:\n{result.stdout[-2000:]}"
    return Outcome("traceback", seconds, detail, cpu_seconds)


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


# --- workers ---------------------------------------------------------------------------------------------------

def _worker(connection, budget_s: float, memory_bytes: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    with tempfile.TemporaryDirectory(prefix="archviz-fuzz-") as tmp:
        while True:
            case = connection.recv()
            if case is None:
                return
            folder = Path(tmp) / str(case.number)
            folder.mkdir()
            try:
                outcome = run_case(case, folder, budget_s=budget_s)
            except MemoryError:
                outcome = Outcome("memory", 0.0, "MemoryError outside the command")
            shutil.rmtree(folder, ignore_errors=True)
            connection.send(outcome)


class _Worker:
    def __init__(self, budget_s: float, memory_bytes: int):
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # never fork a process that may hold torch's threads
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(child, budget_s, memory_bytes), daemon=True)
        self.process.start()
        child.close()
        self.case: Case | None = None
        self.started = 0.0

    def give(self, case: Case) -> None:
        self.case, self.started = case, time.perf_counter()
        self.connection.send(case)

    def stop(self, *, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            try:
                self.connection.send(None)
            except (BrokenPipeError, OSError):
                pass
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def run_cases(cases: Iterable[Case], *, jobs: int = 1, budget_s: float = BUDGET_S,
              memory_bytes: int = MEMORY_BYTES) -> Iterator[tuple[Case, Outcome]]:
    """Run cases in `jobs` worker processes; yield (case, outcome) as each finishes. A worker that dies, runs out
    of memory or overruns is replaced."""
    from multiprocessing.connection import wait

    pending = iter(cases)
    idle = [_Worker(budget_s, memory_bytes) for _ in range(jobs)]
    busy: list[_Worker] = []
    try:
        while True:
            while idle:
                case = next(pending, None)
                if case is None:
                    break
                worker = idle.pop()
                worker.give(case)
                busy.append(worker)
            if not busy:
                return
            ready = wait([w.connection for w in busy], timeout=1.0)
            for worker in list(busy):
                case, elapsed = worker.case, time.perf_counter() - worker.started
                outcome = None
                if worker.connection in ready:
                    try:
                        outcome = worker.connection.recv()
                    except (EOFError, OSError):
                        code = worker.process.exitcode
                        outcome = Outcome("memory" if code == -9 else "traceback", elapsed,
                                          f"the worker died (exit code {code})")
                elif elapsed > budget_s * WALL_FACTOR + GRACE_S:
                    outcome = Outcome("hang", elapsed, f"no answer after {elapsed:.0f} s; worker killed")
                if outcome is None:
                    continue
                busy.remove(worker)
                if outcome.kind in BUG_KINDS:  # its state is not to be trusted: a fresh worker
                    worker.stop(kill=True)
                    worker = _Worker(budget_s, memory_bytes)
                idle.append(worker)
                yield case, outcome
    finally:
        for worker in idle + busy:
            worker.stop(kill=worker in busy)


# --- reporting -------------------------------------------------------------------------------------------------

def save(case: Case, outcome: Outcome, folder: Path) -> Path:
    """The case's files, its command and its outcome, to reproduce it by hand."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    FAILURES.mkdir(exist_ok=True)
    (FAILURES / ".gitignore").write_text("*\n")
    write_files(case, folder)
    command = "archviz " + " ".join(_quote(arg.replace("{dir}/", "")) for arg in case.argv)
    (folder / "case.txt").write_text(
        f"case {case.number}: {case.recipe}\nrun from this folder: {command}\n"
        f"outcome: {outcome.kind} in {outcome.cpu_seconds:.2f} s of CPU, {outcome.seconds:.2f} s on the clock\n\n"
        f"{outcome.detail}\n"
    )
    return folder


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w./=,:-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="CPU seconds per case")
    args = parser.parse_args(argv)

    generator = Generator(args.seed)
    counts = {kind: 0 for kind in ("ok", "error", *BUG_KINDS)}
    slowest: tuple[Case, Outcome] | None = None
    longest = ""  # the longest clean error line
    bugs = []
    started = time.perf_counter()
    cases = (generator.case(number) for number in range(args.cases))
    for done, (case, outcome) in enumerate(run_cases(cases, jobs=args.jobs, budget_s=args.budget), 1):
        counts[outcome.kind] += 1
        if outcome.kind == "error" and len(outcome.detail) > len(longest):
            longest = outcome.detail
        if slowest is None or outcome.cpu_seconds > slowest[1].cpu_seconds:
            slowest = (case, outcome)
        if outcome.kind in BUG_KINDS:
            bugs.append(save(case, outcome, FAILURES / f"{outcome.kind}-{args.seed}-{case.number}"))
            print(f"BUG {outcome.kind} in case {case.number} ({case.recipe}): saved to {bugs[-1]}", flush=True)
        if done % 500 == 0:
            print(f"... {done} cases, {time.perf_counter() - started:.0f} s", flush=True)
    print(f"cases          {sum(counts.values())} (seed {args.seed}, {time.perf_counter() - started:.0f} s)")
    print(f"ok analyses    {counts['ok']}")
    print(f"clean errors   {counts['error']}")
    print(f"tracebacks     {counts['traceback']}  (must be 0)")
    print(f"long messages  {counts['long']}  (an error line of {LINE_LIMIT} characters or more; must be 0)")
    print(f"hangs          {counts['hang']}  (over {args.budget} s of CPU, or {args.budget * WALL_FACTOR} s on the "
          "clock)")
    print(f"memory         {counts['memory']}  (over {MEMORY_BYTES // 2**30} GiB)")
    print(f"longest error  {len(longest)} characters: {longest[:160]}{'...' if len(longest) > 160 else ''}")
    if slowest is not None:
        folder = save(*slowest, FAILURES / "slowest")
        print(f"slowest case   {slowest[1].cpu_seconds:.2f} s of CPU ({slowest[1].seconds:.2f} s on the clock): case "
              f"{slowest[0].number} ({slowest[0].recipe}), {slowest[1].kind}; saved to {folder}")
    return 1 if bugs else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, str(ROOT))
    import spec_fuzz  # the workers unpickle spec_fuzz.Case, not __main__.Case

    sys.exit(spec_fuzz.main())
