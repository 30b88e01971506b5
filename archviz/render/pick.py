"""`archviz pick`: a Pick as plain aligned text (one row per fitting model, best published top-1 first) and as JSON
({input, batch, budget, sources, fitting: [...], over_budget: [...], left: [...]}, every row with its citation)."""

from __future__ import annotations

import textwrap
from collections import defaultdict

from archviz.analysis.pick import Budget, Pick, Row, Source
from archviz.format import human, seconds_text, shape, size_bytes

LISTED = 8  # names shown per group of left-out models before "..."


def pick_text(chosen: Pick, *, width: int = 120) -> str:
    """The fitting models as a table, then the front, what is over budget and what was left out, and the sources."""
    lines = [_title(chosen), ""]
    if chosen.fitting:
        lines += _table(chosen)
    else:
        lines.append("No model fits this budget.")
    front = [row.candidate.name for row in chosen.fitting if row.on_front]
    notes = [f"Pareto front of published top-1 against MACs: {', '.join(front) or 'none'}."]
    if chosen.options.device is not None:
        fastest = [row.candidate.name for row in chosen.fitting if row.on_latency_front]
        notes.append(f"Pareto front of published top-1 against predicted latency: {', '.join(fastest) or 'none'}.")
    notes += _no_accuracy_notes(chosen.fitting)
    if chosen.twins:
        same = ", ".join(zoo if twin == f"torchvision:{zoo}" else f"{zoo} (= {twin})" for zoo, twin in chosen.twins)
        notes.append(f"Listed once, under torchvision's name: the zoo's {same}, the same networks.")
    notes += _params_notes(chosen.fitting)
    if chosen.over_budget:
        over = _names([row.candidate.name for row in chosen.over_budget])
        notes.append(f"Over budget: {len(chosen.over_budget)} ({over}); --format json lists their figures.")
    notes += _left_notes(chosen)
    notes += _sources_notes(chosen)
    lines.append("")
    for note in notes:
        lines += textwrap.wrap(note, width=width, subsequent_indent="  ", break_on_hyphens=False)
    return "\n".join(lines) + "\n"


def _title(chosen: Pick) -> str:
    limits = budget_text(chosen.budget) or "no budget"
    count = len(chosen.fitting) + len(chosen.over_budget)
    return (f"{len(chosen.fitting)} of {count} ImageNet classifiers within {limits} at {shape(chosen.options.input)}, "
            f"batch {chosen.options.batch} ({', '.join(chosen.sources)})")


def budget_text(budget: Budget) -> str:
    """'MACs <= 1.0 G, params <= 25.0 M'."""
    parts = []
    if budget.max_params is not None:
        parts.append(f"params <= {human(budget.max_params)}")
    if budget.max_macs is not None:
        parts.append(f"MACs <= {human(budget.max_macs)}")
    if budget.max_memory_bytes is not None:
        parts.append(f"memory <= {size_bytes(budget.max_memory_bytes)}")
    if budget.max_latency_s is not None:
        parts.append(f"latency <= {seconds_text(budget.max_latency_s)}")
    return ", ".join(parts)


def _columns(chosen: Pick) -> list[tuple[str, callable]]:
    columns = [("Model", lambda r: r.candidate.name), ("Top-1", _top1), ("Weights", _weights),
               ("Params", lambda r: human(r.figures.params)), ("MACs", lambda r: human(r.figures.macs))]
    if chosen.options.memory:
        columns.append(("Train mem" if chosen.options.optimizer else "Memory", _memory))
    if chosen.options.device is not None:
        columns.append(("Latency", _latency))
    columns.append(("Front", lambda r: "yes" if r.on_front else ""))
    return columns


def _table(chosen: Pick) -> list[str]:
    columns = _columns(chosen)
    cells = [[title for title, _ in columns]] + [[cell(row) for _, cell in columns] for row in chosen.fitting]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    left_aligned = {"Model", "Weights", "Front"}
    return ["  ".join(text.ljust(w) if title in left_aligned else text.rjust(w)
                      for (title, _), text, w in zip(columns, line, widths)).rstrip() for line in cells]


def _top1(row: Row) -> str:
    accuracy = row.candidate.accuracy
    return "-" if accuracy is None else f"{accuracy.top1:.3f}"


def _weights(row: Row) -> str:
    """The weights' enum member, with the crop size it was measured at where that differs from the input."""
    accuracy = row.candidate.accuracy
    if accuracy is None:
        return "-"
    member = accuracy.weights.rpartition(".")[2]
    return f"{member} @{accuracy.crop_size}" if "published at" in row.candidate.accuracy_note else member


def _memory(row: Row) -> str:
    return "-" if row.figures.memory_bytes is None else size_bytes(row.figures.memory_bytes)


def _latency(row: Row) -> str:
    text = seconds_text(row.figures.latency_s)
    return f">= {text}" if row.figures.latency_partial else text


def _names(names: list[str]) -> str:
    if len(names) <= LISTED + 1:  # "and 1 more" would take the room of the name
        return ", ".join(names)
    return ", ".join(names[:LISTED]) + f" and {len(names) - LISTED} more"


def _no_accuracy_notes(rows) -> list[str]:
    by_note = defaultdict(list)
    for row in rows:
        if row.candidate.accuracy is None:
            by_note[row.candidate.accuracy_note].append(row.candidate.name)
    return [f"No top-1 ({note}): {_names(names)}." for note, names in by_note.items()]


def _params_notes(rows) -> list[str]:
    """Where the cited weights hold another number of parameters than the network analysed."""
    notes = []
    for row in rows:
        published = row.candidate.accuracy.num_params if row.candidate.accuracy is not None else None
        if published not in (None, row.figures.params):
            notes.append(f"{row.candidate.name}: its published weights hold {published:,} params, the network "
                         f"analysed {row.figures.params:,}.")
    return notes


def _left_notes(chosen: Pick) -> list[str]:
    not_task = [left.candidate.name for left in chosen.left if left.not_task]
    notes = [f"Not ImageNet classifiers: {_names(not_task)}."] if not_task else []
    notes += [f"Left out: {left.candidate.name}: {_sentence(left.reason)}" for left in chosen.left if not left.not_task]
    return notes


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _sources_notes(chosen: Pick) -> list[str]:
    notes = []
    if chosen.sources != (Source.TIMM,):
        notes.append("Top-1: ImageNet-1K acc@1 as torchvision publishes it in its weights' metadata (models/*.py, read "
                     "from the installed source), the best of a builder's weights measured at the input's size; @N: "
                     "measured at NxN, not at the analysed input. A zoo model with a torchvision builder shares its "
                     "network and accuracy. Each figure's recipe: --format json or -o PAGE.html.")
    computed = ["Params", "MACs (per image)"] + ["memory"] * chosen.options.memory + ["latency"] * bool(
        chosen.options.device)
    notes.append(f"{', '.join(computed)}: archviz's own formulas at {shape(chosen.options.input)}.")
    if Source.TIMM in chosen.sources:
        notes.append("timm's models have no top-1 here: its installed pretrained configs publish none.")
    if chosen.options.memory:
        notes.append(_memory_note(chosen))
    if chosen.options.device is not None:
        notes.append(f"Latency: the roofline's forward pass of the batch on {chosen.options.device} (archviz inspect "
                     "--device), predicted; >= marks a lower bound (some layers have no prediction).")
    return notes


def _memory_note(chosen: Pick) -> str:
    if chosen.options.optimizer:
        return (f"Train mem: the predicted peak of one training step at batch {chosen.options.batch} with "
                f"{chosen.options.optimizer} (archviz inspect --train).")
    return (f"Memory: inference at batch {chosen.options.batch}: the weights and the forward pass's peak "
            "activations, float32 (add --train for a training step's peak).")


def pick_dict(chosen: Pick) -> dict:
    """Everything pick found, as plain data (the JSON of --format json and of the HTML page)."""
    budget = chosen.budget
    return {
        "input": list(chosen.options.input), "batch": chosen.options.batch,
        "train_optimizer": chosen.options.optimizer if chosen.options.memory else None,
        "device": chosen.options.device, "sources": list(chosen.sources),
        "budget": {"max_params": budget.max_params, "max_macs": budget.max_macs,
                   "max_memory_bytes": budget.max_memory_bytes, "max_latency_s": budget.max_latency_s},
        "fitting": [row_dict(row) for row in chosen.fitting],
        "over_budget": [row_dict(row) for row in chosen.over_budget],
        "twins": [{"zoo": zoo, "torchvision": twin} for zoo, twin in chosen.twins],
        "left": [{"model": left.candidate.name, "source": left.candidate.source.value, "reason": left.reason,
                  "not_imagenet_classifier": left.not_task} for left in chosen.left],
    }


def row_dict(row: Row) -> dict:
    accuracy = row.candidate.accuracy
    figures = row.figures
    return {
        "model": row.candidate.name, "source": row.candidate.source.value,
        "top1": None if accuracy is None else accuracy.top1,
        "top5": None if accuracy is None else accuracy.top5,
        "weights": None if accuracy is None else accuracy.weights,
        "eval_crop": None if accuracy is None else accuracy.crop_size,
        "citation": None if accuracy is None else {"weights": accuracy.weights, "recipe": accuracy.recipe,
                                                   "file": accuracy.source, "published_params": accuracy.num_params},
        "accuracy_note": row.candidate.accuracy_note,
        "published_weights": [{"weights": w.weights, "top1": w.top1, "eval_crop": w.crop_size}
                              for w in row.candidate.variants],
        "params": figures.params, "macs": figures.macs, "memory_bytes": figures.memory_bytes,
        "latency_s": figures.latency_s, "latency_lower_bound": figures.latency_partial,
        "over": list(row.over), "on_front": row.on_front, "on_latency_front": row.on_latency_front,
    }
