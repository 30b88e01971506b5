"""`archviz train --log tensorboard`: TensorBoard event files beside metrics.csv, in RUN/tensorboard.

Written with torch.utils.tensorboard's SummaryWriter (the tensorboard package; pip install 'archviz[tensorboard]'):
each epoch's scalars (train/val loss and accuracy, images/s) and learning rate, a histogram of every parameter, and
once the model's graph (traced from a batch of training images). A resumed run appends to the same folder, dropping
what an interrupted run wrote past its checkpoint (purge_step). Only rank 0 writes. View: tensorboard --logdir RUN.
"""

from __future__ import annotations

from pathlib import Path

from archviz.errors import MissingDependencyError
from archviz.train.run_folder import TENSORBOARD

SCALARS = {"train_loss": "loss/train", "val_loss": "loss/val", "train_accuracy": "accuracy/train",
           "val_accuracy": "accuracy/val", "lr": "lr", "images_per_second": "images_per_second"}


class TensorBoardLog:
    """One run's event files: graph() once, epoch() after every epoch, close() at the end."""

    def __init__(self, folder: Path, *, first_epoch: int):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise MissingDependencyError("--log tensorboard writes with the tensorboard package, which is not "
                                         "installed: pip install 'archviz[tensorboard]'") from None
        self.folder = folder / TENSORBOARD
        self.writer = SummaryWriter(str(self.folder), purge_step=first_epoch + 1 if first_epoch else None)

    def graph(self, net, batch) -> str | None:
        """The model's graph, traced from `batch`; a model the tracer cannot follow is said, not fatal."""
        import warnings

        try:
            with warnings.catch_warnings():  # torch.jit.trace's deprecation, which SummaryWriter still calls
                warnings.simplefilter("ignore", FutureWarning)
                self.writer.add_graph(net, batch)
        except Exception as error:  # torch.jit.trace refuses some models; the scalars are the point
            return f"tensorboard: the graph was left out ({type(error).__name__}: {str(error).splitlines()[0]})"
        return None

    def epoch(self, row: dict, net) -> None:
        step = row["epoch"]
        for key, tag in SCALARS.items():
            if key in row:
                self.writer.add_scalar(tag, row[key], step)
        for name, parameter in net.named_parameters():
            self.writer.add_histogram(f"weights/{name}", parameter.detach().float().cpu(), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
