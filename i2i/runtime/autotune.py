"""Speed choices by measurement: time the candidate settings on this machine, keep the fastest, cache the verdict.

The caller says what can vary (`axes`: each a name and its options, the first the baseline; the axis most likely
to pay first) and how to time one setting (`measure`: seconds per step); `tune` walks the axes one at a time
(coordinate descent: each option of an axis is tried with the best of the others so far) within a fixed time
budget (`budget_seconds`: 5 s on a CPU, 10 s on a GPU, or I2I_AUTOTUNE_SECONDS); options it has no time left
for keep their baseline and are named as untimed. Verdicts are cached in the user's cache
folder (`$XDG_CACHE_HOME/i2i/autotune.json`) under a key naming the device model, torch version, thread count and
what was timed, so the next run on the same machine starts at once. `I2I_AUTOTUNE=off` turns measuring off (the
callers fall back to fixed rules), `I2I_AUTOTUNE=fresh` measures again and replaces the cached verdict.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

Setting = dict[str, Any]
Measure = Callable[[Setting], float]  # seconds per step of one setting (math.inf: not usable)
BF16_NOT_NATIVE = 2.0  # bf16 matmuls this many times slower than fp32 (emulated bf16): not worth timing
WIN = 0.05  # an option replaces the current one only when at least this much faster (timing noise)
BUDGET_SECONDS = {"cpu": 5.0, "cuda": 10.0}  # what measuring may add to a run whose cache is cold


@dataclass
class Verdict:
    """What tuning chose and why: the setting, the seconds per step of every setting timed, and how long it took."""

    chosen: Setting
    timings: list[dict[str, Any]] = field(default_factory=list)  # [{"setting": ..., "seconds": ...}, ...]
    tuning_seconds: float = 0.0
    cached: bool = False
    key: str = ""
    budget: float = 0.0
    untimed: list[dict[str, Any]] = field(default_factory=list)  # settings the budget left no time for
    notes: list[str] = field(default_factory=list)  # how it was measured, when not plainly (a proxy shape)

    def seconds(self, setting: Mapping[str, Any]) -> float | None:
        return next((t["seconds"] for t in self.timings if t["setting"] == dict(setting)), None)

    def explain(self, axes: Mapping[str, Sequence[Any]], label: Callable[[str, Any], str]) -> list[str]:
        """Per axis, each option not chosen against the chosen one, the rest of the setting alike:
        'bf16 1.90x slower' (options never timed are left out)."""
        parts: list[str] = []
        for name, options in axes.items():
            for option in options:
                if option == self.chosen.get(name):
                    continue
                pairs = [(t["seconds"], self.seconds(t["setting"] | {name: self.chosen[name]}), t.get("note"))
                         for t in self.timings if t["setting"].get(name) == option]
                ratio, note = next(((other / mine, note) for other, mine, note in pairs if mine), (None, None))
                if ratio is None:
                    continue
                if ratio == float("inf"):
                    why = note or "its output differs from fp32's"
                    parts.append(f"{label(name, option)} not usable ({why})")
                elif ratio >= 1:
                    parts.append(f"{label(name, option)} {ratio:.2f}x slower")
                else:
                    parts.append(f"{label(name, option)} {1 / ratio:.2f}x faster, within the {WIN:.0%} noise margin")
        return parts

    def summary(self, axes: Mapping[str, Sequence[Any]], label: Callable[[str, Any], str],
                notes: Sequence[str] = ()) -> str:
        """One line: what was chosen, then how the others compared, e.g.
        'fp32, batch 8; bf16 1.90x slower, batch 1 1.31x slower (measured in 9.1 s)'."""
        varied = {k: v for k, v in axes.items() if len(v) > 1}
        chosen = ", ".join(label(k, v) for k, v in self.chosen.items() if k in varied) or "nothing to choose"
        timed = [t["setting"] for t in self.timings]
        untimed = [label(k, o) for k, v in varied.items() for o in v if all(s.get(k) != o for s in timed)]
        if untimed:
            notes = [*notes, f"{', '.join(untimed)} not timed (the {self.budget:g} s budget was spent)"]
        compared = [*self.explain(varied, label), *notes, *self.notes]
        where = "cached verdict" if self.cached else f"measured in {self.tuning_seconds:.1f} s"
        return chosen + (f"; {', '.join(compared)}" if compared else "") + f" ({where})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mode() -> str:
    """'on' (measure, use the cache), 'off' (fixed rules) or 'fresh' (measure again), from I2I_AUTOTUNE."""
    value = os.environ.get("I2I_AUTOTUNE", "on").strip().lower()
    return {"0": "off", "false": "off", "no": "off"}.get(value, value if value in ("on", "off", "fresh") else "on")


def budget_seconds(device: torch.device) -> float:
    """How long measuring may take on `device`: I2I_AUTOTUNE_SECONDS, else BUDGET_SECONDS by device kind."""
    try:
        return max(0.0, float(os.environ["I2I_AUTOTUNE_SECONDS"]))
    except (KeyError, ValueError):
        return BUDGET_SECONDS["cuda" if device.type == "cuda" else "cpu"]


def tune(axes: Mapping[str, Sequence[Any]], measure: Measure, budget: float,
         relative_cost: Callable[[Setting], float] | None = None, setting_cost: float | None = None) -> Verdict:
    """The fastest setting found by coordinate descent over `axes` (the first option of each is the baseline).

    The baseline is always timed. What timing the current best setting took (building and warming up included)
    predicts what each candidate takes, times `relative_cost(candidate) / relative_cost(best)` when given (a batch
    twice the size costs twice as much), and a candidate is timed only while the prediction fits within `budget`
    seconds. `setting_cost` is what timing the baseline cost where the caller timed it already (`measure`
    remembers it)."""
    started = time.perf_counter()
    verdict = Verdict(chosen={name: options[0] for name, options in axes.items()}, budget=budget)
    best = _timed(verdict, measure, verdict.chosen)
    best_cost = setting_cost if setting_cost is not None else time.perf_counter() - started  # timing the chosen
    cost = relative_cost or (lambda setting: 1.0)
    for name, options in axes.items():
        for option in options[1:]:
            candidate = verdict.chosen | {name: option}
            predicted = best_cost * cost(candidate) / max(cost(verdict.chosen), 1e-9)
            if time.perf_counter() - started + predicted > budget:
                verdict.untimed.append(candidate)
                continue
            before = time.perf_counter()
            seconds = _timed(verdict, measure, candidate)
            if seconds < best * (1 - WIN):
                verdict.chosen, best, best_cost = candidate, seconds, time.perf_counter() - before
    verdict.tuning_seconds = time.perf_counter() - started
    return verdict


def _timed(verdict: Verdict, measure: Measure, setting: Setting) -> float:
    seconds = verdict.seconds(setting)
    if seconds is None:
        note = None
        try:
            seconds = float(measure(dict(setting)))
        except torch.OutOfMemoryError:  # too big a batch for this device: not usable, the others still are
            seconds, note = float("inf"), "out of memory"
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        verdict.timings.append({"setting": dict(setting), "seconds": seconds} | ({"note": note} if note else {}))
        log.debug(f"speed: {setting} {seconds:.4f} s per step{f' ({note})' if note else ''}")
    return seconds


def best_of(step: Callable[[], None], device: torch.device, reps: int = 2, give_up_after: float | None = None,
            at_least: float = 0.5) -> float:
    """Seconds of one call of `step`: a warm-up call, then the fastest of `reps` timed calls, more (up to 5) while
    they add up to under `at_least` seconds (a short step is noisier) or the last was clearly the fastest yet (the
    first calls after a warm-up are often still building kernels). A first timed call slower than `give_up_after`
    ends the timing (that setting has lost already; that call's time is returned), as does a warm-up three times
    slower."""
    def once() -> float:
        sync(device)
        start = time.perf_counter()
        step()
        sync(device)
        return time.perf_counter() - start

    warm = once()
    if give_up_after is not None and warm > 3 * give_up_after:
        return warm
    times = [once()]
    if give_up_after is not None and times[0] > give_up_after:
        return times[0]
    while len(times) < 5 and (len(times) < reps or sum(times) < at_least or times[-1] < 0.9 * min(times[:-1])):
        times.append(once())
    return min(times)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    """The device's model: the GPU's name, or the CPU's model name from /proc/cpuinfo."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "cpu"


def machine_key(device: torch.device, what: Mapping[str, Any]) -> str:
    """The cache key: device model, torch version, CPU threads and `what` was timed (shapes, networks)."""
    described = {"device": device_name(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
                 "what": what}
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "i2i" / "autotune.json"


def cached(key: str) -> Verdict | None:
    """The cached verdict under `key`, or None (none, or the cache file is unreadable: measured again)."""
    try:
        entry = json.loads(cache_file().read_text()).get(key)
        return None if entry is None else Verdict(**{**entry, "cached": True})
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def store(key: str, verdict: Verdict) -> None:
    """Add `verdict` to the cache (atomically; a cache that cannot be written is skipped, never an error)."""
    path = cache_file()
    try:
        entries = json.loads(path.read_text()) if path.exists() else {}
        entries = entries if isinstance(entries, dict) else {}
    except (OSError, ValueError):
        entries = {}
    entries[key] = {k: v for k, v in verdict.to_dict().items() if k != "cached"} | {"key": key}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # a reader never sees a half-written cache
        temp.write_text(json.dumps(entries, indent=1, default=str) + "\n")
        os.replace(temp, path)
    except OSError:
        pass


def lookup(key: str, axes: Mapping[str, Sequence[Any]]) -> Verdict | None:
    """The verdict cached under `key` if it chose among `axes`' options (None under I2I_AUTOTUNE=fresh)."""
    if mode() == "fresh":
        return None
    found = cached(key)
    return found if found is not None and all(found.chosen.get(k) in v for k, v in axes.items()) else None


def tune_cached(key: str, axes: Mapping[str, Sequence[Any]], measure: Measure, budget: float,
                relative_cost: Callable[[Setting], float] | None = None) -> Verdict:
    """`tune`, or the verdict cached under `key` (I2I_AUTOTUNE=fresh measures again)."""
    found = lookup(key, axes)
    if found is not None:
        return found
    verdict = tune(axes, measure, budget, relative_cost)
    verdict.key = key
    store(key, verdict)
    return verdict


def matmul_seconds(dtype: torch.dtype, device: torch.device, n: int = 512, reps: int = 3) -> float:
    """Seconds of one n x n matmul in `dtype` (a quick probe: is this dtype native here at all?)."""
    seeded = torch.Generator().manual_seed(0)  # the process's own random stream is left alone
    a, b = (torch.randn(n, n, generator=seeded).to(device, dtype) for _ in range(2))
    return best_of(lambda: a @ b, device, reps, at_least=0.01)


def bf16_slowdown(device: torch.device) -> float:
    """How many times slower a bf16 matmul is than an fp32 one here (a 256x256 probe, cached like the verdicts)."""
    key = machine_key(device, {"kind": "bf16 matmul probe"})
    found = lookup(key, {})
    if found is not None and isinstance(found.chosen.get("bf16_slowdown"), float):
        return found.chosen["bf16_slowdown"]
    matmul_seconds(torch.float32, device, n=256, reps=1)  # the first matmul of a process starts the thread pool
    ratio = matmul_seconds(torch.bfloat16, device, n=256, reps=2) / matmul_seconds(torch.float32, device, n=256)
    store(key, Verdict(chosen={"bf16_slowdown": ratio}))
    return ratio
