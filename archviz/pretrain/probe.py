"""`archviz probe`: what a pretext task taught the backbone, measured with the labels it never saw.

For each probe block (backbone.py: the end of every stage, and the backbone's output) the frozen network's output
for every image, average-pooled to at most FEATURE_BUDGET numbers (a 16x10x10 map becomes 16x5x5 = 400), then:
- linear: a logistic regression (scikit-learn, standardised features) fitted on the training split, its
  regularisation C chosen on the validation split, scored on the test split (the protocol of Zhang et al. 2016 and
  Goyal et al. 2019: a linear classifier on frozen features);
- knn: each test image takes the weighted vote of its KNN_NEIGHBOURS nearest training images by cosine similarity,
  weights exp(similarity / 0.07) (Wu et al. 2018's monitor).
Beside the pretext backbone, the same architecture at its random initialisation (the run's own starting weights)
and trained with the labels under the same budget (archviz train with the run's settings, kept in RUN/supervised),
so that each figure reads against what no learning and what labels give. A run folder holding seed-* runs
(`archviz pretrain --seeds N`) is probed run by run and reported as mean and standard deviation.
--finetune trains the whole network from the pretext weights with the labels instead (RUN/finetune), beside the
supervised run from scratch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from archviz.errors import ArchvizError, display_path
from archviz.output import write_atomic
from archviz.pretrain.choices import ProbeKind
from archviz.train import run_folder
from archviz.train.run_folder import BEST, FINETUNE, LAST, SOURCE_SPEC, SUPERVISED, RunRecord

FEATURE_BUDGET = 512  # numbers per image a block's map is pooled down to: keeps the probe fast and comparable
C_GRID = (0.01, 0.1, 1.0)  # logistic regression's inverse regularisation, chosen on the validation split
KNN_NEIGHBOURS = 20
KNN_TEMPERATURE = 0.07
BACKBONES = ("pretext", "random", "supervised")
BATCH = 256


@dataclass(frozen=True)
class BlockScores:
    block: str
    features: int  # numbers per image after pooling
    accuracy: dict[str, tuple[float, ...]]  # backbone -> test accuracy per seed


@dataclass(frozen=True)
class ProbeResult:
    folder: Path
    task: str
    kind: ProbeKind
    dataset: str
    test_split: str
    runs: tuple[str, ...]  # the pretext runs probed (one per seed)
    blocks: tuple[BlockScores, ...]
    finetune: dict = field(default_factory=dict)  # {"finetune": [acc per seed], "supervised": [...]} with --finetune

    def as_dict(self) -> dict:
        return {"task": self.task, "kind": self.kind.value, "dataset": self.dataset, "test_split": self.test_split,
                "runs": list(self.runs), "finetune": self.finetune,
                "blocks": [{"block": b.block, "features": b.features,
                            "accuracy": {k: list(v) for k, v in b.accuracy.items()}} for b in self.blocks]}


def pretext_runs(folder: Path) -> list[Path]:
    """The run folder itself, or its seed-* runs."""
    seeds = run_folder.seed_runs(folder)
    if not seeds:
        raise ArchvizError(f"{display_path(str(folder))}: not a run folder of archviz pretrain (no best.pt, no "
                           "seed-* runs)")
    return seeds


def probe(folder: str | Path, *, dataset: str | None = None, layers: list[str] | None = None,
          kind: str = ProbeKind.LINEAR, finetune: bool = False, progress=False, threads: int | None = None,
          say: Callable[[str], None] = lambda line: None) -> ProbeResult:
    """Probe every pretext run in `folder`; write FOLDER/probe-KIND.json; return the scores. `say` hears a line
    before each run trained on the way (the supervised baseline, the fine-tuning), which can take a while.
    progress: as archviz.train.train's (a bar on a terminal, ...), or a progress.Reporter: the baselines' epochs, and
    the features and classifiers of each backbone as phases. threads: CPU threads for all of it [default: the cores
    free now, archviz/train/threads.py]."""
    from archviz.torch_build import import_torch
    from archviz.train.progress import reporter
    from archviz.train.threads import choose_threads

    show = progress if hasattr(progress, "line") else reporter(progress)
    torch = import_torch()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or choose_threads().threads)
    try:
        return _probe(Path(folder), dataset=dataset, layers=layers, kind=kind, finetune=finetune, show=show,
                      threads=threads, say=say)
    finally:
        torch.set_num_threads(previous)
        if show is not progress:
            show.close()


def _probe(folder: Path, *, dataset, layers, kind, finetune: bool, show, threads: int | None, say) -> ProbeResult:
    runs = pretext_runs(folder)
    kind = ProbeKind(kind)
    records = [_pretext_record(run) for run in runs]
    task = records[0].pretext["task"]
    data_name = dataset or records[0].dataset["name"]
    scores: dict[str, dict[str, list[float]]] = {}
    sizes: dict[str, int] = {}
    finetuned: dict[str, list[float]] = {"finetune": [], "supervised": []}
    for run, record in zip(runs, records):
        backbones = _backbones(run, record, data_name, show, threads, say)
        data = _probe_data(backbones["pretext"], data_name)
        blocks = layers or _default_blocks(backbones["pretext"])
        for name, trained in backbones.items():
            for block, (accuracy, size) in _probe_backbone(trained, data, blocks, kind, show, name).items():
                scores.setdefault(block, {b: [] for b in BACKBONES})[name].append(accuracy)
                sizes[block] = size
        if finetune:
            finetuned["finetune"].append(_finetune(run, record, data_name, show, threads, say))
            finetuned["supervised"].append(_supervised_accuracy(run))
    result = ProbeResult(folder, task, kind, data_name, data.test_split, tuple(str(r) for r in runs),
                         tuple(BlockScores(block, sizes[block], {k: tuple(v) for k, v in accuracies.items()})
                               for block, accuracies in scores.items()),
                         finetuned if finetune else {})
    write_atomic(folder / run_folder.probe_file(kind.value), json.dumps(result.as_dict(), indent=1) + "\n")
    return result


def _pretext_record(run: Path) -> RunRecord:
    if not (run / run_folder.RUN_JSON).is_file():
        raise ArchvizError(f"{display_path(str(run))}: no run.json; finish the run first (archviz pretrain --resume)")
    record = run_folder.read_record(run)
    if record.pretext is None:
        raise ArchvizError(f"{display_path(str(run))} is a run of archviz train, not of archviz pretrain; probe the "
                           "backbone of a pretext run")
    return record


def _backbones(run: Path, record: RunRecord, dataset: str, progress, threads: int | None, say) -> dict:
    """The pretext backbone, its initial weights, and the same architecture trained with labels (cached)."""
    from archviz.inside.trained import load_trained

    pretext = load_trained(run)
    supervised = load_trained(_supervised_run(run, record, dataset, progress, threads, say))
    return {"pretext": pretext, "random": pretext.initial(record.settings["seed"]), "supervised": supervised}


def _supervised_run(run: Path, record: RunRecord, dataset: str, progress, threads: int | None, say) -> Path:
    """RUN/supervised: archviz train with the pretext run's model, settings and epochs (trained once, then reused)."""
    from archviz.train.loop import train

    folder = run / SUPERVISED
    if not run_folder.is_finished(folder):
        settings = dict(record.settings)
        say(f"training the supervised baseline: archviz train {record.model} on {dataset}, "
            f"{settings['epochs']} epochs, seed {settings['seed']}, into {folder}")
        train(_architecture(run, record), dataset=dataset, output=folder, resume=(folder / LAST).is_file(),
              progress=progress, threads=threads, **settings)
    return folder


def _architecture(run: Path, record: RunRecord) -> str:
    """What the baselines train, as data: the run's zoo name or spec file; for a run of PyTorch code, the spec it
    traced to (RUN/source.yaml), since what a run folder names is never imported."""
    from archviz.spec.zoo import zoo_names
    from archviz.trace.load import is_model_source
    model = record.model
    if model in zoo_names() or (model.endswith((".yaml", ".yml")) and not is_model_source(model)):
        return model
    text = run_folder.load_best(run)["source"].get("spec_text")
    if not isinstance(text, str) or not text:
        raise ArchvizError(f"{display_path(str(run))}: the run's checkpoint holds no spec of its model; archviz does "
                           f"not import the code a run folder names ({model!r})")
    return str(write_atomic(run / SOURCE_SPEC, text))


def _supervised_accuracy(run: Path) -> float:
    return run_folder.read_record(run / SUPERVISED).final["test_accuracy"]


def _finetune(run: Path, record: RunRecord, dataset: str, progress, threads: int | None, say) -> float:
    """Test accuracy of the whole network trained with the labels from the pretext weights (RUN/finetune)."""
    from archviz.train.loop import run_training
    from archviz.train.task import Supervised

    folder = run / FINETUNE
    if run_folder.is_finished(folder):
        return run_folder.read_record(folder).final["test_accuracy"]
    say(f"fine-tuning {record.model} from {run / BEST} on {dataset}, {record.settings['epochs']} epochs, "
        f"into {folder}")
    result = run_training(_architecture(run, record), given=dict(record.settings), dataset=dataset, data=None,
                          device="auto", threads=threads, compile=False, output=folder,
                          resume=(folder / LAST).is_file(), progress=progress, stop=None, time_budget=None,
                          task=Supervised(backbone_from=run / BEST))
    return result.test_accuracy


def _default_blocks(trained) -> list[str]:
    from archviz.pretrain.backbone import probe_blocks

    return probe_blocks(trained.graph)


@dataclass(frozen=True)
class _Data:
    splits: dict  # name -> (uint8 images (N, C, H, W), labels (N,))
    test_split: str


def _probe_data(trained, dataset: str) -> _Data:
    from archviz.train.data import load_dataset

    shape = trained.input_shape
    data = load_dataset(dataset, image_size=tuple(shape[1:]), channels=shape[0]) if dataset.startswith("folder:") \
        else load_dataset(dataset)
    return _Data({name: (getattr(data, name).images, getattr(data, name).labels) for name in ("train", "val", "test")},
                 data.test_split)


def _probe_backbone(trained, data: _Data, blocks: list[str], kind: ProbeKind, show, name: str
                    ) -> dict[str, tuple[float, int]]:
    """block -> (test accuracy, feature size) for one network; its two phases shown on `show` (a Reporter)."""
    batches = sum(math.ceil(len(images) / BATCH) for images, _ in data.splits.values())
    show.phase(f"features of the {name} backbone", batches)
    done = [0]

    def step():
        done[0] += 1
        show.step(done[0])

    features = {split: _features(trained, images, blocks, step) for split, (images, _) in data.splits.items()}
    labels = {split: labels for split, (_, labels) in data.splits.items()}
    fits = len(C_GRID) if kind == ProbeKind.LINEAR else 1
    show.phase(f"{kind.value} probes of the {name} backbone", len(blocks) * fits)
    done[0] = 0
    scores = {}
    for block in blocks:
        f = {split: features[split][block] for split in features}
        score = _linear(f, labels, step) if kind == ProbeKind.LINEAR else _knn(f, labels)
        if kind != ProbeKind.LINEAR:
            step()
        scores[block] = (score, f["train"].shape[1])
    return scores


def _features(trained, images, blocks: list[str], step=lambda: None) -> dict:
    """block -> (N, D) float32 numpy: each block's output for every image, pooled to at most FEATURE_BUDGET."""
    import numpy as np
    import torch

    from archviz.inside.capture import capture_outputs
    from archviz.inside.layers import find_layer
    from archviz.train.batches import BatchMaker

    for block in blocks:
        find_layer(trained.graph, block)
    maker = BatchMaker(input_shape=trained.input_shape, stats=trained.stats, device=torch.device("cpu"),
                       channels_last=False, augment=False, flips=False)
    chunks: dict[str, list] = {block: [] for block in blocks}
    for start in range(0, len(images), BATCH):
        x = maker(torch.from_numpy(np.ascontiguousarray(images[start:start + BATCH])))
        outputs, _ = capture_outputs(trained.net, blocks, x)
        for block in blocks:
            chunks[block].append(_pooled(outputs[block]).numpy())
        step()
    return {block: np.concatenate(parts) for block, parts in chunks.items()}


def _pooled(output):
    """(N, C, H, W) average-pooled to (N, C * s * s) <= FEATURE_BUDGET numbers; vectors as they are."""
    import torch.nn.functional as F

    if output.dim() != 4:
        return output.flatten(1).float()
    channels, height, width = output.shape[1:]
    side = max(1, min(height, width, math.isqrt(max(FEATURE_BUDGET // channels, 1))))
    return F.adaptive_avg_pool2d(output.float(), side).flatten(1)


def _linear(features: dict, labels: dict, step=lambda: None) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features["train"])
    scaled = {split: scaler.transform(f) for split, f in features.items()}
    best = None
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=2000).fit(scaled["train"], labels["train"])
        score = model.score(scaled["val"], labels["val"])
        step()
        if best is None or score > best[0]:
            best = (score, model)
    return float(best[1].score(scaled["test"], labels["test"]))


def _knn(features: dict, labels: dict) -> float:
    import numpy as np

    def unit(f):
        return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)

    train, test = unit(features["train"]), unit(features["test"])
    classes = int(max(labels["train"].max(), labels["test"].max())) + 1
    similarity = test @ train.T  # (test, train)
    k = min(KNN_NEIGHBOURS, train.shape[0])
    nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    weights = np.exp(np.take_along_axis(similarity, nearest, axis=1) / KNN_TEMPERATURE)
    votes = np.zeros((len(test), classes))
    np.add.at(votes, (np.arange(len(test))[:, None], labels["train"][nearest]), weights)
    return float((votes.argmax(1) == labels["test"]).mean())
