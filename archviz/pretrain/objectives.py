"""Each pretext task as an objective the training loop calls, with the interface PretextObjective declares: its
backbone, its head, and per batch its inputs, targets, loss and score; its extra state in checkpoints. The labels
of the dataset are never read while training; the validation score of instance discrimination alone uses them (a
nearest-neighbour accuracy, as Wu et al. monitor it), to choose best.pt.

Batches arrive normalised (N, C, H, W) as for `archviz train`; random choices draw from the generator the loop
passes (the run's augmentation generator, saved in every checkpoint), and evaluation draws from a generator seeded
afresh each time, so that every epoch scores the same validation puzzles.
"""

from __future__ import annotations

from typing import Any, Protocol

from archviz.graph.ir import Graph
from archviz.pretrain.choices import Task

JIGSAW_PERMUTATIONS = 30  # classes of the jigsaw task: few images per class on small data (the paper: 100 to 1000)
PROJECTION = 128  # dimension of SimCLR's and instance discrimination's embeddings (both papers')
SIMCLR_TEMPERATURE = 0.5  # the paper's best for batch sizes up to 512 (Chen et al. 2020, table 5)
CLUSTERS_PER_CLASS = 10  # DeepCluster over-clusters: k = 10 x the dataset's classes (Caron et al. use k = 10,000)
KNN_NEIGHBOURS = 20
POSITION_NAMES = ("top-left", "top", "top-right", "left", "right", "bottom-left", "bottom", "bottom-right")


class PretextObjective(Protocol):
    """What a pretext task declares, for the loop (archviz/pretrain/loop.py PretextTask runs it): its network
    (backbone, head), its batch (inputs), its loss, its extra state in checkpoints (state, load_state), per-epoch
    work, and what the report shows of it. Batches arrive normalised (N, C, H, W); random choices draw from the
    generator passed in; setup and state are the loop's Setup and State (archviz/train/setup.py), read only."""

    task: Task
    answers_per_image: int  # scored answers one training image gives
    stats: Any  # the batches' normalisation, set by the loop before head() is called

    def backbone(self, graph: Graph) -> Graph: ...

    def head(self, features: tuple[int, ...]) -> Any: ...

    def inputs(self, x, index, generator) -> tuple[Any, Any]:
        """(the network's inputs, the targets) of a batch; index: its images' positions in the training split."""

    def loss(self, outputs, targets, index) -> tuple[Any, Any, int]:
        """(loss, right answers, answers)."""

    def eval_loss(self, net, x, y, start: int, generator) -> tuple[Any, Any, int]: ...

    def epoch_begin(self, setup, state, epoch: int) -> None: ...

    def epoch_order(self, setup, state, epoch: int) -> Any: ...

    def after_step(self, outputs, index) -> None: ...

    def epoch_figures(self) -> dict: ...

    def state(self) -> dict: ...

    def load_state(self, state: dict) -> None: ...

    def describe(self) -> str: ...

    def examples(self, x, generator) -> tuple[list, list[str], int]:
        """(pictures (C, h, w), normalised like x; a caption each; columns): what the task feeds the network, for
        the report."""


class Objective:
    """What the objectives share: the backbone without the classifier, cross-entropy on the head's outputs, its
    score on a split, and no per-epoch work or extra state unless a task adds them (PretextObjective)."""

    answers_per_image = 1

    def __init__(self, *, classes: int, image_shape: tuple[int, ...], train_size: int, stats, seed: int):
        self.classes, self.image_shape, self.train_size, self.stats, self.seed = classes, image_shape, train_size, \
            stats, seed

    def backbone(self, graph: Graph) -> Graph:
        from archviz.pretrain.backbone import backbone

        return backbone(graph)

    def loss(self, outputs, targets, index) -> tuple[Any, Any, int]:
        """(loss, right answers, answers)."""
        import torch.nn.functional as F

        return F.cross_entropy(outputs.float(), targets), (outputs.argmax(1) == targets).sum(), targets.numel()

    def eval_loss(self, net, x, y, start: int, generator) -> tuple[Any, Any, int]:
        inputs, targets = self.inputs(x, None, generator)
        return self.loss(net(inputs), targets, None)

    def epoch_begin(self, setup, state, epoch: int) -> None:
        """Work before an epoch's batches (DeepCluster clusters the features)."""

    def epoch_order(self, setup, state, epoch: int):
        return None  # the loop's permutation

    def after_step(self, outputs, index) -> None:
        """Work after the optimiser's step (instance discrimination updates its memory bank)."""

    def epoch_figures(self) -> dict:
        """Figures of the epoch for metrics.json (DeepCluster: how much its clusters moved)."""
        return {}

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass


class Rotation(Objective):
    """Rotation: every image at 0, 90, 180, 270 degrees; the head tells which (Gidaris et al. 2018)."""

    task = Task.ROTATION
    answers_per_image = 4  # scored answers one training image gives: its 4 turns

    def head(self, features: tuple[int, ...]):
        from torch import nn

        return nn.Linear(features[0], 4)

    def inputs(self, x, index, generator) -> tuple[Any, Any]:
        from archviz.pretrain.tasks import rotations

        return rotations(x)

    def describe(self) -> str:
        return "4 rotations of each image (0, 90, 180, 270 degrees); the head predicts which"

    def examples(self, x, generator) -> tuple[list, list[str], int]:
        inputs, labels = self.inputs(x, None, generator)
        count = x.shape[0]
        order = [k * count + i for i in range(count) for k in range(4)]  # one image per row, its 4 turns across
        return [inputs[j] for j in order], [f"{90 * int(labels[j])} deg" for j in order], 4


class Jigsaw(Objective):
    """3x3 tiles shuffled by one of a fixed set of permutations; a shared encoder per tile, the head tells which
    permutation (Noroozi and Favaro 2016)."""

    task = Task.JIGSAW
    answers_per_image = 1

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        from archviz.pretrain.tasks import jigsaw_permutations

        self.permutations = jigsaw_permutations(JIGSAW_PERMUTATIONS, seed=self.seed)

    def head(self, features):
        from archviz.pretrain.net import mlp

        return mlp(9 * features[0], JIGSAW_PERMUTATIONS)

    def inputs(self, x, index, generator):
        tiles, labels = self._tiles(x, generator)
        return standardised(tiles), labels

    def _tiles(self, x, generator):
        from archviz.pretrain.tasks import jigsaw_tiles

        return jigsaw_tiles(x, self.permutations.to(x.device), generator=generator)

    def examples(self, x, generator):
        tiles, labels = self._tiles(x, generator)  # (N, 9, C, t, t), as cut: standardising would hide the digit
        pictures, captions = [], []
        for n in range(tiles.shape[0]):
            order = self.permutations[int(labels[n])].tolist()
            pictures += list(tiles[n])
            captions += [f"cell {cell}" for cell in order]
        return pictures, captions, 9

    def describe(self) -> str:
        return (f"3x3 tiles shuffled by one of {JIGSAW_PERMUTATIONS} permutations (largest Hamming distance), each "
                "standardised on its own; each "
                "tile resized to the input and encoded by the shared backbone; the head predicts the permutation")


def standardised(tiles):
    """Each tile (N, K, C, t, t) to mean 0 and standard deviation 1 on its own, as Noroozi and Favaro do so that a
    tile's brightness and contrast (a dark corner of a digit) do not tell where it belongs."""
    mean = tiles.mean(dim=(-3, -2, -1), keepdim=True)
    std = tiles.std(dim=(-3, -2, -1), keepdim=True)
    return (tiles - mean) / (std + 1e-5)


class Context(Objective):
    """The centre patch and one of its 8 neighbours; a shared encoder, the head tells where the neighbour lies
    (Doersch et al. 2015)."""

    task = Task.CONTEXT
    answers_per_image = 1

    def head(self, features):
        from archviz.pretrain.net import mlp

        return mlp(2 * features[0], 8)

    def inputs(self, x, index, generator):
        import torch

        from archviz.pretrain.tasks import context_pairs

        pairs = context_pairs(x, generator=generator)
        return torch.stack([pairs.centre, pairs.neighbour], dim=1), pairs.labels  # (N, 2, C, p, p)

    def examples(self, x, generator):
        pairs, labels = self.inputs(x, None, generator)  # (N, 2, C, p, p)
        pictures, captions = [], []
        for n in range(pairs.shape[0]):
            pictures += [pairs[n, 0], pairs[n, 1]]
            captions += ["centre", f"neighbour: {POSITION_NAMES[int(labels[n])]}"]
        return pictures, captions, 2

    def describe(self) -> str:
        return ("a centre patch and one of its 8 neighbours (with a gap and jitter), both encoded by the shared "
                "backbone; the head predicts the neighbour's position")


class SimCLR(Objective):
    """Two random views of each image; the projections of the pair attract, the rest of the batch repels
    (Chen et al. 2020)."""

    task = Task.SIMCLR
    answers_per_image = 2  # its two views

    def head(self, features):
        from archviz.pretrain.net import mlp

        return mlp(features[0], PROJECTION)

    def inputs(self, x, index, generator):
        import torch

        from archviz.pretrain.contrastive import simclr_views

        one, two = simclr_views(x, generator=generator, flip=self.image_shape[0] == 3)
        return torch.cat([one, two]), None

    def loss(self, outputs, targets, index):
        import torch
        import torch.nn.functional as F

        from archviz.pretrain.contrastive import nt_xent

        count = outputs.shape[0] // 2
        one, two = outputs[:count].float(), outputs[count:].float()
        z = F.normalize(torch.cat([one, two]), dim=1)
        similarity = (z @ z.T).fill_diagonal_(-2.0)
        right = (similarity.argmax(1) == torch.arange(2 * count, device=z.device).roll(count)).sum()
        return nt_xent(one, two, temperature=SIMCLR_TEMPERATURE), right, 2 * count

    def examples(self, x, generator):
        views, _ = self.inputs(x, None, generator)
        count = x.shape[0]
        pictures = [picture for i in range(count) for picture in (x[i], views[i], views[count + i])]
        return pictures, ["image", "view 1", "view 2"] * count, 3

    def describe(self) -> str:
        return (f"two random views of each image (crop, {'mirror, ' if self.image_shape[0] == 3 else ''}brightness "
                f"and contrast); NT-Xent loss at temperature {SIMCLR_TEMPERATURE}, the rest of the batch as "
                "negatives; the score: how often a view's nearest neighbour in the batch is its pair")


class InstanceDiscrimination(Objective):
    """Each image its own class: a non-parametric softmax over a memory bank of every training image's embedding
    (Wu et al. 2018)."""

    task = Task.INSTDISC
    answers_per_image = 1

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        import torch

        from archviz.pretrain.contrastive import MemoryBank

        self.bank = MemoryBank.random(self.train_size, PROJECTION, generator=torch.Generator().manual_seed(self.seed))

    def head(self, features):
        from torch import nn

        return nn.Linear(features[0], PROJECTION)

    def inputs(self, x, index, generator):
        return x, index

    def loss(self, outputs, targets, index):
        if self.bank.features.device != outputs.device:
            self.bank.features = self.bank.features.to(outputs.device)
        logits = self.bank.logits(outputs.float())
        indices = index.to(outputs.device)
        import torch.nn.functional as F

        return F.cross_entropy(logits, indices), (logits.argmax(1) == indices).sum(), len(indices)

    def after_step(self, outputs, index) -> None:
        self.bank.update(index, outputs)

    def eval_loss(self, net, x, y, start, generator):
        """A weighted nearest-neighbour vote of the bank (the training images' labels) on validation images:
        1 - its accuracy stands in for the loss."""
        import torch.nn.functional as F

        z = F.normalize(net(x).float(), dim=1)
        similarity = z @ self.bank.features.to(z.device, z.dtype).T
        right = (self._vote(similarity) == y).sum()
        return (len(y) - right).double() / len(y), right, len(y)

    def _vote(self, similarity):
        import torch

        values, neighbours = similarity.topk(min(KNN_NEIGHBOURS, similarity.shape[1]), dim=1)
        votes = torch.zeros(similarity.shape[0], self.classes, device=similarity.device)
        votes.scatter_add_(1, self.train_labels.to(similarity.device)[neighbours], (values / 0.07).exp())
        return votes.argmax(1)

    def epoch_begin(self, setup, state, epoch):
        self.train_labels = setup.labels["train"]

    def state(self):
        return {"memory_bank": self.bank.state_dict()}

    def load_state(self, state):
        if "memory_bank" in state:
            self.bank.load_state_dict(state["memory_bank"])

    def examples(self, x, generator):
        return list(x), [f"class {i}: itself" for i in range(x.shape[0])], x.shape[0]

    def describe(self) -> str:
        return (f"each training image its own class: {PROJECTION}-d embeddings against a memory bank of all "
                f"{self.train_size:,} (momentum {self.bank.momentum}, temperature {self.bank.temperature}); "
                f"validation score: a {KNN_NEIGHBOURS}-nearest-neighbour vote over the bank")


OBJECTIVES = {Task.ROTATION: Rotation, Task.JIGSAW: Jigsaw, Task.CONTEXT: Context, Task.SIMCLR: SimCLR,
              Task.INSTDISC: InstanceDiscrimination}


def task_backbone(task: str, graph: Graph) -> Graph:
    """The backbone `task` trains of the fitted graph: the graph without its classifier, or for colorization the
    part that ends on the last spatial map."""
    if Task(task) == Task.COLORIZATION:
        from archviz.inside.layers import auto_cam_layer
        from archviz.pretrain.backbone import cut

        return cut(graph, auto_cam_layer(graph).name)
    from archviz.pretrain.backbone import backbone

    return backbone(graph)


def objective_for(task: str, **kwargs) -> PretextObjective:
    from archviz.pretrain.clustering import DeepCluster  # subclasses of Objective, in their own modules
    from archviz.pretrain.colorization import Colorization

    known = {**OBJECTIVES, Task.DEEPCLUSTER: DeepCluster, Task.COLORIZATION: Colorization}
    return known[Task(task)](**kwargs)
