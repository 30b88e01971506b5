"""The training loop of `archviz train`: a spec's model trained on a local dataset, resumable bit for bit.

One process per device (several under torchrun: distributed.py). Every epoch: a permutation of the training images
from a seeded generator, batches adapted on the device (batches.py), cross-entropy on logits, a step of the optimiser
and of the per-batch learning rate schedule; then the validation split, a line of metrics and a checkpoint (last.pt,
and best.pt when the validation loss is the lowest so far). At the end, best.pt is scored on the test split
(per-class report, confusion matrix).

The shape of torchvision's reference scripts (references/classification/train.py): plain functions over a frozen
Setup (settings, data, network, batches) and a small mutable State (optimiser, schedule, generators, position), both
made by setup.py: run calls train_one_epoch and end_epoch (evaluate on the validation split, the checkpoint, the
epoch's line) until the last epoch, then the task's finish. What is trained for is a Task (task.py): Supervised
here, archviz pretrain's PretextTask there; the run folder's files are run_folder.py's.

Exact resume: a checkpoint holds the data-order generator's state at the start of its epoch and the number of
batches done in it, so the same permutation is drawn again and the finished batches skipped; with the weights,
optimiser, scheduler, augmentation generator and global RNG states restored, a run interrupted anywhere (Ctrl-C
stops after the current batch and saves a mid-epoch checkpoint) ends with the same weights as an uninterrupted one
on the CPU with the same thread count.

On CUDA: bf16 autocast, channels_last, cuDNN autotuning, and the images kept on the GPU when they fit; the loss is
read back every SYNC_EVERY batches rather than every batch, so the GPU is not stalled. On the CPU, networks with
convolutions train channels_last too (NHWC convolutions: measured 1.6x faster for lenet and 2-3x for mobilenet_v2 on
a 2-core CPU, resnet18 no slower; benchmarks/train_speed.py).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from archviz.errors import ArchvizError
from archviz.train import batches as batching
from archviz.train import distributed
from archviz.train.checkpoint import FORMAT, check_model, rng_state, versions
from archviz.train.data import DatasetKind, parse_dataset
from archviz.train.model import model_source
from archviz.train.progress import Silent, reporter
from archviz.train.run import (RunResult, TrainingDiverged, TrainingInterrupted, check_text_path, claimed,
                               default_folder)
from archviz.train.run_folder import BEST, LAST, RunRecord, load_best, load_last, save_last, write_metrics, write_record
from archviz.train.settings import (BOUNDS, OPTIONAL_BOUNDS, Adapt, Augment, Device, Log, Normalize, Optimizer,
                                    Runtime, Schedule, Settings)
from archviz.train.setup import Setup, State, lr_factor, set_up, start
from archviz.train.task import Supervised, Task
from archviz.train.threads import load_average, passive_openmp

__all__ = ["train", "run_training", "run", "train_one_epoch", "end_epoch", "evaluate", "lr_factor", "Setup", "State"]

SYNC_EVERY = {"cpu": 1, "cuda": 32}  # batches between reading the loss back (a read waits for the GPU)
EVAL_BATCH_FACTOR = 4  # evaluation holds no gradients: larger batches fit


def loss_function(logits, labels, *, label_smoothing: float = 0.0):
    """Cross-entropy on logits, in float32 whatever the autocast dtype (a module attribute, so tests can patch it)."""
    import torch.nn.functional as F

    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


def train(model: str | Path, *, dataset: str = "digits", data: str | Path | None = None, epochs: int | None = None,
          batch_size: int | None = None, lr: float | None = None, optimizer: str | None = None,
          schedule: str | None = None, weight_decay: float | None = None, augment: str | bool | None = None,
          adapt: str | None = None, seed: int | None = None, device: str = "auto", threads: int | None = None,
          compile: bool = False, output: str | Path | None = None, resume: bool = False, overwrite: bool = False,
          progress: bool | None = None, stop: Callable[[int, int], bool] | None = None,
          time_budget: float | None = None, patience: int | None = None, label_smoothing: float | None = None,
          clip_grad: float | None = None, val_fraction: float | None = None, init: str | None = None,
          freeze: str | None = None, normalize: str | None = None, log: str | None = None) -> RunResult:
    """Train a zoo model or spec file on a dataset; write the run folder; return the final figures.

    Settings left as None take Settings' defaults, or with resume=True the run's own (any given must match them).
    progress: None shows a bar on a terminal and lines elsewhere, True lines, False nothing, or a progress.Reporter
    to show on (left open). stop(epoch, batch),
    called after every batch, stops the run as Ctrl-C does when it returns True. time_budget (seconds of training)
    ends the run after the last epoch that fits in it, as if it were the last one (the schedule is cut short);
    patience ends it after that many epochs without a lower validation loss (best.pt is the lowest's). init: the
    weights to start from (a run folder, a checkpoint or state dict file, or "torchvision"), freeze: layer paths not
    trained, or "backbone" (archviz/train/init.py). log="tensorboard" writes TensorBoard event files in
    RUN/tensorboard as well (tensorboard_log.py).
    Raises TrainingInterrupted when stopped, TrainingDiverged when the loss is not finite.
    The output folder must be new, empty or a run of archviz train; overwrite=True writes into a folder of other
    files (never replacing one) or trains a run anew; while the run writes it, no other run may (run.claimed).
    Under torchrun (WORLD_SIZE > 1) the run is data-parallel, one process per rank (archviz/train/distributed.py).

    >>> result = train("lenet", dataset="digits", epochs=1, output="runs/doc", progress=False)  # doctest: +SKIP
    >>> result.test_accuracy > 0.5  # doctest: +SKIP
    True
    """
    given = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": optimizer, "schedule": schedule,
             "weight_decay": weight_decay, "augment": augment, "adapt": adapt, "seed": seed, "patience": patience,
             "label_smoothing": label_smoothing, "clip_grad": clip_grad, "val_fraction": val_fraction, "init": init,
             "freeze": freeze, "normalize": normalize}
    return run_training(model, given=given, dataset=dataset, data=data, device=device, threads=threads,
                        compile=compile, log=log, output=output, resume=resume, overwrite=overwrite, progress=progress,
                        stop=stop, time_budget=time_budget)


def run_training(model, *, given: dict, dataset: str, data, device: str, threads: int | None, compile: bool, output,
                 resume: bool, progress: bool | None, stop, time_budget: float | None, task: Task | None = None,
                 folder_kind: str = "", overwrite: bool = False, log: str | None = None):
    """train()'s work, for any task (default Supervised(); archviz pretrain passes its PretextTask, whose kind,
    "pretrain", is the kind of run a folder may hold to be written again)."""
    passive_openmp()  # before torch loads (the CLI has called it already; a no-op once torch is imported)
    given = {key: value for key, value in given.items() if value is not None}
    if "augment" in given:  # a preset, or true/false as before the presets
        given["augment"] = _augment_preset(given["augment"])
    _check_choices(given, device)
    if log is not None and log not in {choice.value for choice in Log}:
        raise ArchvizError(f"--log {log!r}: expected one of {', '.join(c.value for c in Log)}")
    runtime = Runtime(Device(device), threads, compile, Log(log or Log.CSV))
    ranks = distributed.join(cuda=Device(device) != Device.CPU and _torch().cuda.is_available())
    try:
        return _train(model, ranks=ranks, dataset=dataset, data=data, given=given, runtime=runtime, output=output,
                      resume=resume, progress=progress, stop=stop, time_budget=time_budget,
                      task=task or Supervised(), folder_kind=folder_kind, overwrite=overwrite)
    except TrainingInterrupted:
        raise  # every rank stopped at the same batch and the checkpoint is written: the group is still sound
    except BaseException as error:
        if not ranks.distributed:
            raise
        distributed.leave(failed=True)  # the peers' collectives fail now, rather than at their timeout
        if distributed.is_collective_failure(error):
            raise ArchvizError(f"{ranks.describe()}: another process of the run failed or stopped "
                               f"({distributed.failure_text(error)}); its own message says why") from None
        raise


def _train(model, *, ranks: distributed.Ranks, dataset: str, data, given: dict, runtime: Runtime, output, resume: bool,
           progress: bool | None, stop, time_budget: float | None, task: Task, folder_kind: str = "",
           overwrite: bool = False):
    """The run in the folder; folder_kind names the default folder (runs/MODEL-DATASET[-KIND]-TIME)."""
    folder = Path(output) if output is not None else default_folder(str(model), dataset, folder_kind)
    if output is None and ranks.distributed:  # the default's time stamp may differ by a second between ranks
        folder = Path(ranks.gather_objects(str(folder))[0])
    for option, value in (("model", model), ("--dataset", dataset), ("--data", data), ("-o", folder)):
        if value is not None:
            check_text_path(option, value)
    kind, path = parse_dataset(dataset, data)
    with claimed(folder, kind=task.kind, resume=resume, overwrite=overwrite, hold=ranks.main):
        return _train_in(model, ranks=ranks, kind=kind, path=path, given=given, runtime=runtime, folder=folder,
                         resume=resume, progress=progress, stop=stop, time_budget=time_budget, task=task)


def _train_in(model, *, ranks: distributed.Ranks, kind: DatasetKind, path, given: dict, runtime: Runtime,
              folder: Path, resume: bool, progress: bool | None, stop, time_budget: float | None, task: Task):
    """The run, once its folder is claimed (run.claimed)."""
    dataset_name = kind.value if path is None else f"{kind.value}:{path}"
    saved = _resume_state(folder, model, dataset_name, given) if resume else None
    settings = Settings.from_dict(saved["settings"]) if saved else Settings.from_dict(
        {**Settings().as_dict(), **{k: (v.value if hasattr(v, "value") else v) for k, v in given.items()}})
    check_settings(settings, runtime)
    own = not hasattr(progress, "line")  # progress may be a Reporter of the caller's (archviz probe), left open
    show = (reporter(progress) if own else progress) if ranks.main else Silent()
    previous_threads = _torch().get_num_threads()
    try:
        with _interrupt_requests() as interrupted:
            def should_stop(epoch: int, batch: int) -> bool:
                return interrupted() or (stop is not None and stop(epoch, batch))

            setup = set_up(model, kind, path, settings=settings, runtime=runtime, folder=folder, show=show,
                           should_stop=should_stop, saved=saved, time_budget=time_budget, ranks=ranks, task=task)
            return run(setup, start(setup))
    finally:
        if own:
            show.close()
        _torch().set_num_threads(previous_threads)


def _augment_preset(value) -> Augment:
    try:
        return Augment.of(value)
    except ValueError:
        raise ArchvizError(f"--{option} {value!r}: expected one of {', '.join(a.value for a in Augment)}") from None


def _check_choices(given: dict, device: str) -> None:
    """A value outside a closed set of choices (--optimizer adamx) as an ArchvizError naming the choices."""
    for option, value, kind in (("optimizer", given.get("optimizer"), Optimizer),
                                ("schedule", given.get("schedule"), Schedule), ("adapt", given.get("adapt"), Adapt),
                                ("normalize", given.get("normalize"), Normalize),
                                ("device", device, Device)):
        if value is not None and value not in {choice.value for choice in kind}:
            raise ArchvizError(f"--{option} {value!r}: expected one of {', '.join(c.value for c in kind)}")


def check_settings(settings: Settings, runtime: Runtime) -> None:
    """Every bad value, up front, as one ArchvizError naming the option; a checkpoint's settings are held to the
    same BOUNDS (checkpoint.check_structure)."""
    problems = [f"--{name.replace('_', '-')} {getattr(settings, name)!r}: {bound.describe()}"
                for name, bound in BOUNDS.items() if not bound.holds(getattr(settings, name))]
    problems += [f"--{name.replace('_', '-')} {getattr(settings, name)!r}: {bound.describe()}"
                 for name, bound in OPTIONAL_BOUNDS.items()
                 if getattr(settings, name) is not None and not bound.holds(getattr(settings, name))]
    if runtime.threads is not None and runtime.threads < 1:
        problems.append(f"--threads {runtime.threads!r}: at least 1")
    if problems:
        raise ArchvizError("; ".join(problems))


def _torch():
    from archviz.torch_build import import_torch

    return import_torch()


def _resume_state(folder: Path, model, dataset_name: str, given: dict) -> dict:
    state = load_last(folder)
    if state["source"]["model"] != str(model):
        raise ArchvizError(f"{folder} is a run of {state['source']['model']!r}, not {str(model)!r}")
    if state["dataset"]["name"] != dataset_name:
        raise ArchvizError(f"{folder} is a run on {state['dataset']['name']!r}, not {dataset_name!r}")
    if state["source"]["kind"] != "code" and model_source(model).spec_text != state["source"]["spec_text"]:
        raise ArchvizError(f"{state['source']['spec_file']} changed since the run in {folder} started; an exact "
                           "resume needs the same spec")
    # a run from before a setting existed had its default (and augment true/false for light/none)
    was = Settings.from_dict({**Settings().as_dict(), **state["settings"]}).as_dict()
    differ = [f"--{key.replace('_', '-')} {value!r} (the run has {was[key]!r})"
              for key, value in given.items() if (value.value if hasattr(value, "value") else value) != was[key]]
    if differ:
        raise ArchvizError(f"--resume continues {folder} with its own settings; leave out: {', '.join(differ)}")
    return state


@contextmanager
def _interrupt_requests():
    """A function telling whether Ctrl-C was pressed; a second Ctrl-C raises KeyboardInterrupt at once."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield lambda: False
        return
    pressed = []

    def handler(signum, frame):
        if pressed:
            signal.default_int_handler(signum, frame)
        pressed.append(time.monotonic())
        sys.stderr.write("\nstopping after this batch to save a checkpoint (Ctrl-C again stops at once)\n")
        sys.stderr.flush()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(pressed)
    finally:
        signal.signal(signal.SIGINT, previous)


def run(setup: Setup, state: State):
    """Train epoch after epoch until the last (or the time budget), then let the task score best.pt."""
    _header(setup)
    if setup.ranks.main:
        setup.folder.mkdir(parents=True, exist_ok=True)
    if setup.log is not None:
        note = setup.log.graph(setup.net, setup.make_batch(setup.images["train"][:2]))
        if note:
            setup.show.line(f"  {note}")
    state.started = time.perf_counter()
    try:
        while (state.position.epoch < setup.settings.epochs and not _out_of_patience(setup, state)
               and not _out_of_time(setup, state)):
            epoch = state.position.epoch + 1
            train_one_epoch(setup, state, epoch)
            end_epoch(setup, state, epoch)
    except TrainingDiverged as error:
        write_run_record(setup, state, "diverged", message=str(error))
        raise
    except TrainingInterrupted as error:
        write_run_record(setup, state, "interrupted", message=str(error))
        setup.ranks.barrier()  # last.pt is written before any rank goes on (to resume it, say)
        raise
    finally:
        if setup.log is not None:
            setup.log.close()
    result = setup.task.finish(setup, state)
    setup.ranks.barrier()  # every file is written before any rank returns
    return result


def train_one_epoch(setup: Setup, state: State, epoch: int) -> None:
    """The epoch's training batches (from the checkpoint's batch when resumed), summed into state.position; stops
    at a loss that is not finite (TrainingDiverged) or when asked to (TrainingInterrupted, after saving last.pt)."""
    torch, p, s, task = _torch(), state.position, setup.settings, setup.task
    if p.batch == 0:
        p.loss_sum, p.correct, p.seen, p.seconds = 0.0, 0, 0, 0.0
    task.epoch_begin(setup, state, epoch)
    state.order_state = state.order.get_state()
    order = task.epoch_order(setup, state, epoch)
    if order is None:
        order = torch.randperm(len(setup.data.train), generator=state.order)
    order = setup.ranks.shard(order).to(setup.store)
    setup.show.epoch_start(epoch, s.epochs, setup.batches, p.batch)
    setup.net.train()
    sync_every = SYNC_EVERY.get(setup.device.type, SYNC_EVERY["cuda"])
    pending, asked = [], False
    tick = time.perf_counter()
    for batch in range(p.batch, setup.batches):
        index = order[batch * s.batch_size:(batch + 1) * s.batch_size]
        x = setup.make_batch(setup.images["train"][index], generator=state.augment_draws)
        y = setup.labels["train"][index.to(setup.device)]
        with setup.memory.step(lambda: _alive_between_steps(setup, state), (x, y)):
            loss, correct, count = task.batch_loss(setup, x, y, index, state.augment_draws)
            pending.append((batch + 1, loss.detach(), correct, count))
            state.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if s.clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(setup.net.parameters(), s.clip_grad)
            state.optimizer.step()
        state.scheduler.step()
        task.after_step()
        p.batch = batch + 1
        state.done_here += 1
        asked = setup.should_stop(epoch, batch + 1) or (asked and setup.ranks.distributed)
        stopping = False
        # under torchrun the ranks agree to stop when they flush, so that all stop after the same batch
        if len(pending) >= sync_every or (asked and not setup.ranks.distributed) or batch + 1 == setup.batches:
            stopping = _flush(setup, state, pending, epoch, stop=asked)
            p.seconds += time.perf_counter() - tick
            tick = time.perf_counter()
            _progress(setup, state, epoch)
        if stopping:
            _interrupt(setup, state, epoch)
    p.seconds += time.perf_counter() - tick
    p.seconds = setup.ranks.max(p.seconds, setup.device)  # the slowest rank's time is the run's


def end_epoch(setup: Setup, state: State, epoch: int) -> None:
    """The validation split, the epoch's row of metrics, last.pt (and best.pt at the lowest validation loss so far)
    and the epoch's line; then a stop asked for during the epoch ends the run here."""
    p, s = state.position, setup.settings
    val_loss, val_accuracy, _ = evaluate(setup, "val")
    row = {"epoch": epoch, "train_loss": p.loss_sum / max(p.seen, 1), "train_accuracy": p.correct / max(p.seen, 1),
           "val_loss": val_loss, "val_accuracy": val_accuracy, "lr": state.optimizer.param_groups[0]["lr"],
           "seconds": p.seconds, "images_per_second": _images_per_second(setup, state),
           **setup.task.epoch_figures()}
    p.history.append(row)
    # lowest validation loss, not highest accuracy: a small validation split saturates its accuracy early
    best = p.best is None or (-val_loss, val_accuracy) > (-p.best["val_loss"], p.best["val_accuracy"])
    if best:
        p.best = {"epoch": epoch, "val_accuracy": val_accuracy, "val_loss": val_loss}
    p.epoch, p.batch = epoch, 0
    state.order_state = state.order.get_state()
    checkpoint = checkpoint_state(setup, state)
    if setup.ranks.main:
        save_last(setup.folder, checkpoint, best=best)
        write_metrics(setup.folder, p.history)
    if setup.log is not None:
        setup.log.epoch(row, setup.net)
    setup.show.line(_epoch_line(row, s.epochs, best))
    if setup.ranks.any(setup.should_stop(epoch, setup.batches), setup.device) and epoch < s.epochs:
        _interrupt(setup, state, epoch, at_epoch_end=True)


def evaluate(setup: Setup, split: str, *, predictions: bool = False):
    """(mean loss, accuracy, predicted labels or None) of the current weights on a split, in eval mode.

    Under torchrun each rank scores every world-th image and the sums are added over the ranks.
    """
    torch, ranks, task = _torch(), setup.ranks, setup.task
    task.eval_begin(setup)
    images, labels = setup.images[split], setup.labels[split]
    count = len(labels)
    if ranks.distributed:
        ranks.broadcast_module(setup.net, buffers_only=True)  # batch norm's running statistics: rank 0's, saved
        images, labels = images[ranks.rank::ranks.world], labels[ranks.rank::ranks.world]
    size = setup.settings.batch_size * EVAL_BATCH_FACTOR
    setup.net.eval()
    sums, guesses = torch.zeros(3, device=setup.device, dtype=torch.float64), []  # (loss sum, correct, answers)
    with torch.no_grad():
        for first in range(0, len(labels), size):
            x = setup.make_batch(images[first:first + size])
            loss_sum, correct, answers, guess = task.eval_batch(setup, x, labels[first:first + size], first)
            sums[0] += loss_sum
            sums[1] += correct
            sums[2] += answers
            guesses.append(guess)
    setup.net.train()
    ranks.sum_(sums)
    predicted = None
    if predictions:
        predicted = ranks.gather_strided(torch.cat(guesses) if guesses else labels[:0], count).cpu()
    answers = max(float(sums[2]), 1.0)
    return float(sums[0]) / answers, float(sums[1]) / answers, predicted


def autocast(setup: Setup):
    """bf16 autocast on CUDA; nothing on the CPU."""
    if setup.device.type == "cuda":
        return _torch().autocast("cuda", dtype=_torch().bfloat16)
    from contextlib import nullcontext

    return nullcontext()


def load_best_weights(setup: Setup) -> None:
    """best.pt's weights into the net: rank 0 reads it (the folder may be on its machine alone) and sends them."""
    if setup.ranks.main:
        state = load_best(setup.folder)
        check_model(state, setup.folder / BEST, setup.net.state_dict())
        setup.net.load_state_dict(state["model"])
    setup.ranks.broadcast_module(setup.net)


# --- records ---------------------------------------------------------------------------------------------------------

def checkpoint_state(setup: Setup, state: State) -> dict:
    """The checkpoint; under torchrun every rank calls it (it gathers each rank's random states)."""
    d, fitted = setup.data, setup.fitted
    own = {"augment_generator": state.augment_draws.get_state(), "rng": rng_state()}
    everyone = setup.ranks.gather_objects(own)
    return {
        "format": FORMAT,
        "model": setup.net.state_dict(),
        "source": fitted.source.as_dict(),
        "graph": {"name": fitted.graph.name, "input_shape": list(fitted.input_shape),
                  "changes": list(fitted.changes), "params": setup.params,
                  "spec": setup.graph_spec},  # the graph rebuilt from data, never by importing code
        "settings": setup.settings.as_dict(),
        "runtime": _runtime_record(setup),
        "dataset": {"name": d.name, "classes": list(d.classes), "image_shape": list(d.image_shape),
                    "sizes": {"train": len(d.train), "val": len(d.val), d.test_split: len(d.test)},
                    "notes": list(d.notes), "input_steps": list(setup.input_steps),
                    "normalize": {"mean": list(setup.stats.mean), "std": list(setup.stats.std)}},
        "versions": versions(),
        "position": state.position.as_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "order_generator": state.order_state,
        **own,
        **({"ranks": everyone} if setup.ranks.distributed else {}),  # each rank's random states, for --resume
        **setup.task.extra_state(),
    }


def write_run_record(setup: Setup, state: State, status: str, **extra) -> RunRecord:
    """run.json (and metrics.json/csv) as the run stands: `status` and its figures (`extra`: RunRecord's fields)."""
    p, d, fitted = state.position, setup.data, setup.fitted
    record = RunRecord(
        status=status, **setup.task.record(), **extra,
        model=setup.model, source={k: v for k, v in fitted.source.as_dict().items() if k != "spec_text"},
        graph={"name": fitted.graph.name, "input_shape": list(fitted.input_shape),
               "changes": list(fitted.changes), "params": setup.params},
        dataset={"name": d.name, "classes": list(d.classes), "image_shape": list(d.image_shape),
                 "sizes": {"train": len(d.train), "val": len(d.val), d.test_split: len(d.test)},
                 "notes": list(d.notes), "input_steps": list(setup.input_steps),
                 "augmentation": batching.describe_augmentation(setup.settings.augment, d.flips)
                 if setup.settings.augment else None,
                 "normalize": {"mean": list(setup.stats.mean), "std": list(setup.stats.std)}},
        settings=setup.settings.as_dict(), runtime=_runtime_record(setup), versions=versions(),
        epochs_done=p.epoch, best=p.best, train_seconds=sum(row["seconds"] for row in p.history))
    if setup.ranks.main:
        write_metrics(setup.folder, p.history)
        write_record(setup.folder, record)
    return record


def _runtime_record(setup: Setup) -> dict:
    record = {"device": str(setup.device), "threads": setup.threads, "compile": setup.runtime.compile,
              "log": setup.runtime.log.value}
    if setup.ranks.distributed:
        record.update(world_size=setup.ranks.world, backend=setup.ranks.backend)
    return record


# --- the pieces of the loop -------------------------------------------------------------------------------------------

def _header(setup: Setup) -> None:
    s, data, device, threads = setup.settings, setup.data, setup.device, setup.threads
    lines = [f"{setup.task.title(setup.model, setup.params)} on {data.describe()}"]
    lines += [f"  data: {note}" for note in data.notes]
    once = " (once for the whole dataset, before training)" if setup.prepared else ""
    lines += [f"  input: {step}{once}" for step in setup.input_steps]
    lines += [f"  model: {change}" for change in setup.fitted.changes]
    lines += [f"  {line}" for line in (setup.started.lines() if setup.started else [])]
    augment = batching.describe_augmentation(s.augment, data.flips)
    lines.append(f"  settings: {s.optimizer.value} lr {s.lr:g}, weight decay {s.weight_decay:g}, "
                 f"{s.schedule.value} schedule, batch {s.batch_size}, {s.epochs} epochs, seed {s.seed}; {augment}"
                 + "".join(f", {text}" for text in _extra_settings(s)) + f"; {_normalized(s)}")
    on = (f"{device}" + (", bf16 autocast" if device.type == "cuda" else "")
          + (", channels_last" if setup.channels_last else ""))
    chosen = (f" ({setup.thread_choice.describe()})" if setup.thread_choice else
              " (the run's own)" if setup.saved and setup.runtime.threads is None else "")
    waiting = "; OpenMP threads wait passively" if passive_openmp() and device.type == "cpu" and threads > 1 else ""
    lines.append(f"  device: {on}, {threads} CPU thread{'s' if threads != 1 else ''}{chosen}{waiting}"
                 f"{', torch.compile' if setup.runtime.compile else ''}; run folder {setup.folder}")
    if setup.ranks.distributed:
        r = setup.ranks
        lines.append(f"  data-parallel: {r.world} processes ({r.backend}), each training on a share of "
                     f"{r.shard_size(len(data.train)):,} images; batch {s.batch_size} per process, so each "
                     f"step sees {r.world * s.batch_size}")
    busy = load_average()
    if device.type == "cpu" and threads > 1 and busy > threads - 0.5:
        lines.append(f"  note: this machine is busy (load {busy:.1f} on {threads} cores); threads that wait "
                     "for each other can make training many times slower: try --threads 1")
    if setup.saved:
        p = setup.saved["position"]
        lines.append(f"  resuming after epoch {p['epoch']}" + (f", batch {p['batch']}" if p["batch"] else ""))
        was = setup.saved["runtime"]["threads"]
        if was != threads and device.type == "cpu":
            lines.append(f"  note: the run used {was} threads and this one {threads}: the weights may differ "
                         "in the last bits from an uninterrupted run")
    for line in lines + setup.task.header():
        setup.show.line(line)


def _normalized(s: Settings) -> str:
    return {"dataset": "normalised by the training images' mean and std per channel",
            "imagenet": "normalised by ImageNet's mean and std (torchvision's)", "none": "not normalised"}[s.normalize]


def _extra_settings(s: Settings) -> list[str]:
    texts = [f"label smoothing {s.label_smoothing:g}"] if s.label_smoothing else []
    if s.clip_grad is not None:
        texts.append(f"gradients clipped to norm {s.clip_grad:g}")
    if s.patience is not None:
        texts.append(f"early stopping after {s.patience} epoch{'s' if s.patience != 1 else ''} without a lower "
                     "validation loss")
    return texts


def _alive_between_steps(setup: Setup, state: State) -> list:
    """The tensors a training step starts with: the weights, buffers and optimizer state."""
    tensors = [*setup.net.parameters(), *setup.net.buffers()]
    for saved in state.optimizer.state.values():
        tensors += [value for value in saved.values() if isinstance(value, _torch().Tensor)]
    return tensors


def _images_per_second(setup: Setup, state: State) -> float:
    p = state.position
    return p.seen / setup.task.answers_per_image / p.seconds if p.seconds else 0.0


def _out_of_patience(setup: Setup, state: State) -> bool:
    """Whether --patience epochs have passed without a lower validation loss than best.pt's (early stopping);
    decided from the position alone, so a resumed run stops where the uninterrupted one does."""
    patience, p = setup.settings.patience, state.position
    if patience is None or p.best is None or p.epoch - p.best["epoch"] < patience:
        return False
    state.stopped_early = (f"no lower validation loss in the {patience} epoch{'s' if patience != 1 else ''} after "
                           f"epoch {p.best['epoch']} (--patience {patience}); best.pt is epoch {p.best['epoch']}'s")
    setup.show.line(f"stopped early: {state.stopped_early}")
    return True


def _out_of_time(setup: Setup, state: State) -> bool:
    """Whether one more epoch, at the mean time of those run, would go past the time budget."""
    history = state.position.history
    if setup.time_budget is None or not history:
        return False
    spent = sum(row["seconds"] for row in history)
    if spent + spent / len(history) <= setup.time_budget:
        return False
    state.stopped_early = (f"the time budget of {setup.time_budget:g} s allowed {len(history)} of "
                           f"{setup.settings.epochs} epochs")
    setup.show.line(f"stopped early: {state.stopped_early}")
    return True


def _flush(setup: Setup, state: State, pending: list, epoch: int, *, stop: bool = False) -> bool:
    """Add the pending batches' loss and accuracy to the epoch's (summed over the ranks under torchrun); stop at
    a loss that is not finite. Returns whether to stop now: `stop` here, and on any rank under torchrun."""
    torch, p = _torch(), state.position
    if setup.ranks.distributed:
        return _flush_ranks(setup, state, pending, epoch, stop)
    losses = torch.stack([item[1] for item in pending]).float().cpu()
    _check_finite(setup, state, losses, pending, epoch)
    corrects = torch.stack([item[2] for item in pending]).cpu().tolist()
    for (_, _, _, size), loss, correct in zip(pending, losses.tolist(), corrects):
        p.loss_sum += loss * size
        p.correct += int(correct)
        p.seen += size
    pending.clear()
    return stop


def _flush_ranks(setup: Setup, state: State, pending: list, epoch: int, stop: bool) -> bool:
    torch, p, count, device = _torch(), state.position, len(pending), setup.device
    sizes = torch.tensor([item[3] for item in pending], dtype=torch.float64, device=device)
    packed = torch.cat([torch.stack([item[1] for item in pending]).double() * sizes,
                        torch.stack([item[2] for item in pending]).double(), sizes,
                        torch.tensor([float(stop)], dtype=torch.float64, device=device)])
    packed = setup.ranks.sum_(packed).cpu()  # (loss sums, corrects, sizes) per batch, then the stop requests
    loss_sums, corrects, sizes = packed[:count], packed[count:2 * count], packed[2 * count:3 * count]
    _check_finite(setup, state, loss_sums / sizes, pending, epoch)
    p.loss_sum += float(loss_sums.sum())
    p.correct += int(corrects.sum())
    p.seen += int(sizes.sum())
    pending.clear()
    return bool(packed[-1] > 0)


def _check_finite(setup: Setup, state: State, losses, pending: list, epoch: int) -> None:
    finite = _torch().isfinite(losses)
    if not bool(finite.all()):
        first = int((~finite).nonzero()[0, 0])
        batch, value = pending[first][0], float(losses[first])
        kept = (f"last.pt keeps epoch {state.position.epoch}, the last good one" if state.position.epoch else
                "no epoch completed, so there is no checkpoint")
        raise TrainingDiverged(
            f"the loss became {value} at epoch {epoch}, batch {batch} of {setup.batches} (lr "
            f"{state.optimizer.param_groups[0]['lr']:g}); training stopped and {kept}; try a lower --lr")


def _progress(setup: Setup, state: State, epoch: int) -> None:
    p = state.position
    elapsed = time.perf_counter() - state.started
    remaining = (setup.settings.epochs - epoch) * setup.batches + setup.batches - p.batch
    eta = elapsed / state.done_here * remaining if state.done_here else float("nan")
    setup.show.batch(p.batch, p.loss_sum / max(p.seen, 1), p.correct / max(p.seen, 1),
                     _images_per_second(setup, state), eta)


def _interrupt(setup: Setup, state: State, epoch: int, *, at_epoch_end: bool = False):
    if not at_epoch_end:
        checkpoint = checkpoint_state(setup, state)
        if setup.ranks.main:
            save_last(setup.folder, checkpoint)
    where = (f"after epoch {epoch}" if at_epoch_end else
             f"in epoch {epoch} after batch {state.position.batch} of {setup.batches}")
    raise TrainingInterrupted(f"interrupted {where}; {setup.folder / LAST} holds this point; continue with "
                              f"--resume -o {setup.folder}", checkpoint=setup.folder / LAST)


def _epoch_line(row: dict, epochs: int, best: bool) -> str:
    width = len(str(epochs))
    return (f"epoch {row['epoch']:>{width}}/{epochs}  train loss {row['train_loss']:.4f} acc "
            f"{row['train_accuracy']:6.1%}  val loss {row['val_loss']:.4f} acc {row['val_accuracy']:6.1%}  "
            f"lr {row['lr']:.2e}  {row['images_per_second']:,.0f} img/s  {row['seconds']:.1f} s"
            + ("  *" if best else ""))
