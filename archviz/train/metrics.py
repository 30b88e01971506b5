"""The final per-class report and confusion matrix, computed from predicted and true labels with numpy.

The report's figures and text layout are scikit-learn's `classification_report` (precision, recall, F1 and support
per class, then accuracy, macro and weighted averages), with zero_division=0: a class never predicted has precision
0. tests/test_train.py checks both against sklearn.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClassRow:
    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ClassReport:
    rows: tuple[ClassRow, ...]
    accuracy: float
    macro: ClassRow
    weighted: ClassRow
    confusion: tuple[tuple[int, ...], ...]  # confusion[true][predicted]

    @property
    def support(self) -> int:
        return sum(row.support for row in self.rows)

    def as_dict(self) -> dict:
        def row(r: ClassRow) -> dict:
            return {"precision": r.precision, "recall": r.recall, "f1": r.f1, "support": r.support}

        return {"classes": {r.name: row(r) for r in self.rows}, "accuracy": self.accuracy,
                "macro_avg": row(self.macro), "weighted_avg": row(self.weighted), "support": self.support}

    def text(self, digits: int = 2) -> str:
        """The layout of sklearn.metrics.classification_report."""
        headers = ("precision", "recall", "f1-score", "support")
        width = max(max((len(r.name) for r in self.rows), default=0), len("weighted avg"), digits)
        row_format = "{:>{width}s} " + " {:>9.{digits}f}" * 3 + " {:>9}\n"
        text = ("{:>{width}s} " + " {:>9}" * 4).format("", *headers, width=width) + "\n\n"
        for r in self.rows:
            text += row_format.format(r.name, r.precision, r.recall, r.f1, r.support, width=width, digits=digits)
        text += "\n"
        text += ("{:>{width}s} " + " {:>9.{digits}}" * 2 + " {:>9.{digits}f} {:>9}\n").format(
            "accuracy", "", "", self.accuracy, self.support, width=width, digits=digits)
        for name, r in (("macro avg", self.macro), ("weighted avg", self.weighted)):
            text += row_format.format(name, r.precision, r.recall, r.f1, r.support, width=width, digits=digits)
        return text

    def confusion_csv(self) -> str:
        """Rows are true classes, columns predicted ones; the corner cell says so."""
        names = [r.name for r in self.rows]
        lines = [",".join(["true\\predicted", *(_csv_cell(n) for n in names)])]
        lines += [",".join([_csv_cell(name), *map(str, counts)]) for name, counts in zip(names, self.confusion)]
        return "\n".join(lines) + "\n"


def _csv_cell(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def class_report(true, predicted, names: tuple[str, ...] | list[str]) -> ClassReport:
    """Per-class precision, recall, F1 and support of integer labels 0..len(names)-1.

    >>> class_report([0, 0, 1, 1], [0, 1, 1, 1], ["a", "b"]).rows[1]
    ClassRow(name='b', precision=0.6666666666666666, recall=1.0, f1=0.8, support=2)
    """
    import numpy as np

    true = np.asarray(true, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    count = len(names)
    confusion = np.bincount(true * count + predicted, minlength=count * count).reshape(count, count)
    hits = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted_count = confusion.sum(axis=0)
    precision = np.divide(hits, predicted_count, out=np.zeros(count), where=predicted_count > 0)
    recall = np.divide(hits, support, out=np.zeros(count), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(count), where=denominator > 0)
    total = int(support.sum())
    rows = tuple(ClassRow(str(n), float(p), float(r), float(f), int(s))
                 for n, p, r, f, s in zip(names, precision, recall, f1, support))
    weights = support / total if total else np.zeros(count)
    macro = ClassRow("macro avg", float(precision.mean()), float(recall.mean()), float(f1.mean()), total)
    weighted = ClassRow("weighted avg", float(precision @ weights), float(recall @ weights), float(f1 @ weights), total)
    accuracy = float(hits.sum() / total) if total else 0.0
    return ClassReport(rows, accuracy, macro, weighted, tuple(tuple(int(v) for v in row) for row in confusion))
