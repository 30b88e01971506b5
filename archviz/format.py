"""Number and shape formatting shared by every stage that writes text (explanations, diagrams, renderers)."""

from __future__ import annotations

_SCALES = ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K"))


def exact(value: int) -> str:
    """138357544 -> '138,357,544'."""
    return f"{value:,}"


def human(value: float) -> str:
    """138357544 -> '138.4 M'; small numbers as they are."""
    for scale, suffix in _SCALES:
        if abs(value) >= scale:
            return f"{value / scale:.1f} {suffix}"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:.3g}"


def exact_and_human(value: int) -> str:
    """'138,357,544 (138.4 M)'; the human figure only where it helps."""
    return exact(value) if abs(value) < 10_000 else f"{exact(value)} ({human(value)})"


def size_bytes(value: int) -> str:
    """Decimal units, as torchinfo: 553,430,176 -> '553.43 MB'."""
    for scale, suffix in ((10**12, "TB"), (10**9, "GB"), (10**6, "MB"), (10**3, "KB")):
        if value >= scale:
            return f"{value / scale:.2f} {suffix}"
    return f"{value} B"


def shape(dims) -> str:
    """(64, 112, 112) -> '64x112x112'."""
    return "x".join(str(d) for d in dims)


NOT_TRACKED = "not tracked"  # a receptive field where the input is not a C x H x W image (tokens, sequences)


def field_text(values) -> str:
    """A receptive field as pair_text writes it, or NOT_TRACKED where the report has none (None)."""
    return NOT_TRACKED if values is None else pair_text(values)


def widest(fields):
    """The largest (height x width) of some receptive fields; None where any is not tracked."""
    fields = list(fields)
    return None if any(f is None for f in fields) else max(fields, key=lambda f: f[0] * f[1])


def pair_text(values) -> str:
    """(212, 212) -> '212'; (7, 3) -> '7x3'; a fraction (a jump after a pixel shuffle) as a decimal: 0.5."""
    a, b = (float(v) for v in values)
    return f"{a:g}" if a == b else f"{a:g}x{b:g}"


SLUG_LIMIT = 100  # characters of a default file name's stem; well under every file system's 255 bytes


def slug(text: str, *, fallback: str = "model") -> str:
    """A file-name stem made of `text` (a model's name, a user's argument): ASCII letters, digits and `-_.`, other
    runs of characters as one `_`, no leading dot, at most SLUG_LIMIT characters; `fallback` when nothing is left.
    A default output built from it stays in its folder whatever the text holds.

    >>> slug("../../etc/passwd"), slug("torchvision:resnet50"), slug("."), slug("a\\x1b[2Jb"), slug("café")
    ('etc_passwd', 'torchvision_resnet50', 'model', 'a_2Jb', 'cafe')
    """
    import re
    import unicodedata

    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")  # café -> cafe
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", plain).strip("._-")[:SLUG_LIMIT].rstrip("._-")
    return stem or fallback


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_bytes(text: str, *, what: str) -> int:
    """'24GB' -> 24,000,000,000; '80GiB' -> 85,899,345,920; '512 MB', '1.5TB' and plain bytes too.

    >>> parse_bytes("24GB", what="--fit"), parse_bytes("1 GiB", what="--fit")
    (24000000000, 1073741824)
    """
    from archviz.errors import SpecError

    number = text.strip().upper().replace(" ", "").replace("_", "").replace(",", "")
    unit = number.lstrip("0123456789.")
    value = number[: len(number) - len(unit)]
    try:
        amount = float(value) * _UNITS[unit]
    except (KeyError, ValueError):
        raise SpecError(f"{what}: {text!r} is not an amount of memory (expected a number and a unit: 24GB, 80GiB, "
                        "512MB)") from None
    if amount < 1:
        raise SpecError(f"{what}: {text!r} is less than one byte")
    return int(amount)


def seconds_text(seconds: float | None) -> str:
    """A duration at a readable scale: 0.000123 -> '123 µs', 0.0456 -> '45.6 ms', 2.5 -> '2.50 s'; None -> '-'."""
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"
