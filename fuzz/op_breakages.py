"""Break one fact of one op on purpose and record which tests of the registry-wide oracle catch it.

Each breakage replaces one fact (a method, its ONNX readers, its trace adapters) of one registered op (in the pytest process, before collection) with a subtly
wrong version, the kind of slip a contributor makes; the script runs tests/test_op_registry.py and tests/test_trace.py
and lists the tests that fail. A breakage nothing catches is a hole in the oracle: the script exits 1.

    .venv/bin/python fuzz/op_breakages.py            # all breakages; results in fuzz/results/op_breakages.txt
    .venv/bin/python fuzz/op_breakages.py conv-macs  # one

Run from the repository root.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "fuzz" / "results" / "op_breakages.txt"
TESTS = ["tests/test_op_registry.py", "tests/test_trace.py"]


def _conv_macs(original):
    """Forget the groups: C_in instead of C_in / groups in the MACs."""
    def macs(self, attrs, in_shapes, out_shape):
        return original(self, {**attrs, "groups": 1}, in_shapes, out_shape)
    return macs


def _maxpool_window(original):
    """Declare no window (the base default this registry no longer has)."""
    return lambda self, attrs, in_shapes: None


def _conv_onnx_pads(original):
    """Write ONNX pads width-first: [w, h, w, h] instead of [h, w, h, w]."""
    def write_onnx(self, e, node, x):
        class Swapping:
            def __getattr__(self, name):
                return getattr(e, name)

            def add(self, op_type, inputs, output, name, **attrs):
                if "pads" in attrs:
                    top, left, bottom, right = attrs["pads"]
                    attrs["pads"] = [left, top, right, bottom]
                return e.add(op_type, inputs, output, name, **attrs)
        original(self, Swapping(), node, x)
    return write_onnx


def _narrow_shape(original):
    """Off by one in narrow's output shape."""
    def infer_shape(self, attrs, in_shapes):
        shape = list(original(self, attrs, in_shapes))
        shape[attrs["dim"] - 1] += 1 if attrs["start"] else 0
        return tuple(shape)
    return infer_shape


def _lrn_onnx_bias(original):
    """Read ONNX LRN's bias as the default 1 instead of the file's value."""
    def read(r):
        layer = original["LRN"](r)
        return type(layer)(layer.op, {**layer.args, "k": 1.0}, layer.inputs, layer.output)
    return {"LRN": read}


def _leaky_relu_trace(original):
    """Trace nn.LeakyReLU with the default slope instead of the module's."""
    from dataclasses import replace

    adapter = original.modules["torch.nn.LeakyReLU"]
    return replace(original, modules={"torch.nn.LeakyReLU": lambda m, refs: replace(
        adapter(m, refs), attrs={"negative_slope": 0.01, "inplace": m.inplace})})


BREAKAGES = {  # name: (op, the fact broken, how)
    "conv-macs": ("conv2d", "macs", _conv_macs),
    "maxpool-window": ("maxpool2d", "window", _maxpool_window),
    "conv-onnx-pads": ("conv2d", "write_onnx", _conv_onnx_pads),
    "narrow-shape": ("narrow", "infer_shape", _narrow_shape),
    "lrn-onnx-read": ("local_response_norm", "onnx_reads", _lrn_onnx_bias),
    "leaky-relu-trace": ("leaky_relu", "torch_calls", _leaky_relu_trace),
}


def apply(name: str) -> None:
    """Install breakage `name` (called by the pytest plugin below, inside the test process)."""
    from archviz.ops import get_op

    op_name, method, breaking = BREAKAGES[name]
    cls = type(get_op(op_name))
    setattr(cls, method, breaking(getattr(cls, method)))


def pytest_configure(config):  # the plugin: `-p fuzz.op_breakages` with ARCHVIZ_BREAKAGE set
    if os.environ.get("ARCHVIZ_BREAKAGE"):
        apply(os.environ["ARCHVIZ_BREAKAGE"])


def caught_by(name: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "fuzz.op_breakages", "-q", "-rf", *TESTS],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "ARCHVIZ_BREAKAGE": name, "PYTHONPATH": str(ROOT)},
    )
    return sorted(set(re.findall(r"^FAILED (\S+?)(?: - |$)", done.stdout, re.M)))


def main(names: list[str]) -> int:
    lines, missed = [], []
    for name in names or list(BREAKAGES):
        failed = caught_by(name)
        op_name, method, breaking = BREAKAGES[name]
        lines.append(f"{name}: {op_name}.{method}: {breaking.__doc__.strip()}")
        lines.append(f"  caught by {len(failed)} test(s)" + "".join(f"\n    {test}" for test in failed[:8])
                     + (f"\n    ... and {len(failed) - 8} more" if len(failed) > 8 else ""))
        if not failed:
            missed.append(name)
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if not names:
        RESULTS.write_text(text)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
