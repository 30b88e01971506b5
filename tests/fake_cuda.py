"""torch's CUDA autocast, run without a GPU: on fake CUDA tensors (torch._subclasses.fake_tensor), which carry
the AutocastCUDA dispatch key, so autocast picks each op's CUDA policy (lower precision, float32, or promote) exactly
as it would on a card; only shapes and dtypes are computed. torch.autocast("cuda") turns itself off where no GPU is
found, so the switch is flipped directly.
"""

from __future__ import annotations

import contextlib

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.func import functional_call


@contextlib.contextmanager
def cuda_autocast(dtype=torch.bfloat16):
    torch.set_autocast_enabled("cuda", True)
    torch.set_autocast_dtype("cuda", dtype)
    torch.autocast_increment_nesting()
    try:
        yield
    finally:
        if torch.autocast_decrement_nesting() == 0:
            torch.clear_autocast_cache()
        torch.set_autocast_enabled("cuda", False)


def output_dtype_on_cuda(module: torch.nn.Module, inputs, *, autocast=torch.bfloat16) -> torch.dtype:
    """The dtype `module` would give on a CUDA device under autocast, from `inputs` (real CPU tensors whose dtypes
    are kept), its weights and buffers moved to fake CUDA tensors."""
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        state = {name: mode.from_tensor(t).to("cuda")
                 for name, t in [*module.named_parameters(), *module.named_buffers()]}
        fake = [mode.from_tensor(x).to("cuda") for x in inputs]
        with torch.no_grad(), cuda_autocast(autocast):
            output = functional_call(module, state, tuple(fake))
        output = output if isinstance(output, torch.Tensor) else output[0]
        return output.dtype
