"""``lsmcheck run``: audit logit files and flags (and the user's own implementations), gate.

Settings come from the config file (see :mod:`lsmcheck.config`) and the flags; a flag given
on the command line overrides the file's value for the same setting.

Exit codes: 0 every result passes; 1 a result fails the gate, an implementation errored, or
(with ``--baseline``) a result regressed or vanished; 2 a usage, config or input error;
``--exit-zero`` turns 1 into 0 (never 2).
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click
from click.core import ParameterSource

from lsmcheck import baseline as baseline_file
from lsmcheck.algorithms import Algorithm, get_algorithm
from lsmcheck.api import audit
from lsmcheck.audit import Progress
from lsmcheck.cli import keep_until_exit
from lsmcheck.cli.common import (
    ProgressBar,
    algorithm_names,
    algorithm_option,
    check_outputs,
    danger_zone_option,
    dtype_names,
    dtype_option,
    guard,
    impl_limit_options,
    jobs_option,
    note_black_boxes,
    precision_flags,
    precision_option,
    quiet_option,
    reference_option,
    scheduler_option,
    style_for,
    write_atomically,
)
from lsmcheck.config import Config, ConfigError, discover
from lsmcheck.errors import InputError, LimitError, UsageError
from lsmcheck.formats import FORMAT_MODULES, Style, formatter, render
from lsmcheck.gate import (
    DEFAULT_TOLERANCE,
    FAIL_ON_CHOICES,
    Thresholds,
    check_tolerance,
    parse_fail_on,
)
from lsmcheck.impllimits import Limits
from lsmcheck.options import Options
from lsmcheck.parallel import default_jobs, tune_malloc
from lsmcheck.sources import count_elements, iter_sources, longest_vectors
from lsmcheck.userimpl import load, same_code, spec_file
from lsmcheck.vectors import BYTES_PER_LOGIT, MAX_LENGTH, Vector, audit_size


def _given(name: str) -> bool:
    """Whether the option ``name`` was typed on the command line (not its default)."""
    source = click.get_current_context().get_parameter_source(name)
    return source not in (None, ParameterSource.DEFAULT)


def _implementations(
    impls: tuple[str, ...], cfg: Config, timeout: float | None, memory: str | None
) -> list[Algorithm]:
    """The user's implementations: ``--impl`` values, else the config's, each started in its
    sandbox with the ``--impl-timeout`` and ``--impl-memory`` limits (or the config's)."""
    limits = Limits.make(  # checked even when unused: a typo in a CI script fails at once
        timeout if timeout is not None else cfg.impl_timeout,
        memory if memory is not None else cfg.impl_memory,
        "--impl-timeout" if timeout is not None else cfg.where("impl_timeout"),
        "--impl-memory" if memory is not None else cfg.where("impl_memory"),
    )
    if not (impls or cfg.implementations):
        return []
    where = cfg.where("implementations")
    none: tuple[str, ...] = ()
    named = [(spec, "--impl", none) for spec in impls] or [
        (spec, f"{where}[{i}]", cfg.search) for i, spec in enumerate(cfg.implementations or ())
    ]
    seen: set[tuple[str, str, str]] = set()
    loaded = []
    for spec, flag, search in named:  # one named twice (however spelt: ops.py:f, ./ops.py:f)
        code = same_code(spec, search)  # is audited once, as -a x,x is
        if code not in seen:
            seen.add(code)
            loaded.append(load(spec, flag, search, limits))
    return loaded


def _sources(cfg: Config, impls: tuple[str, ...]) -> list[str]:
    """Files besides the inputs that no report may replace: the config file in use and the
    source files of the user's implementations (``-o pyproject.toml`` is a slip of the hand)."""
    files = [spec_file(spec) for spec in impls]
    files += [spec_file(spec, cfg.search) for spec in cfg.implementations or ()]
    return [f for f in (cfg.path, *files) if f is not None]


def _check_rule_names(cfg: Config, user: list[Algorithm]) -> None:
    """A threshold table for an algorithm nobody could run is a typo: say so."""
    names = {a.name for a in user} | cfg.algorithm_names()
    for rule in cfg.rules:
        if rule.algorithm is None or rule.algorithm in names:
            continue
        try:
            get_algorithm(rule.algorithm)
        except UsageError:
            table = rule.origin.rpartition(" [")[2].rstrip("]")
            raise ConfigError(
                f"{cfg.at(table)}: unknown algorithm {rule.algorithm!r} (neither built in nor "
                "one of the implementations)"
            ) from None


def _options(
    cfg: Config,
    user: list[Algorithm],
    dtypes: tuple[str, ...],
    algorithms: tuple[str, ...],
    precision: int,
    per_element: bool,
    thresholds: Thresholds,
    **precisions: Any,
) -> Options:
    if algorithms:
        builtin = algorithm_names(algorithms)
    elif cfg.algorithms is not None:
        builtin = algorithm_names(cfg.algorithms)
    else:  # with implementations of their own, users audit those (add -a to compare)
        builtin = () if user else algorithm_names(())
    # the config keys a value came from when no flag gave it: their errors name the key
    from_config = {
        "--dtype": "dtypes" if not dtypes and cfg.dtypes else None,
        "--algorithm": "algorithms" if not algorithms and cfg.algorithms is not None else None,
        "--precision": "precision" if not _given("precision") and cfg.precision else None,
    }
    try:
        options = Options(
            dtypes=dtype_names(dtypes or cfg.dtypes or ()),
            algorithms=(*builtin, *user),
            precision_bits=precision if _given("precision") else (cfg.precision or precision),
            per_element=per_element,
            thresholds=thresholds,
            **precisions,  # --accumulate, --block, --target, --grad
        )
        options.validate()
    except ConfigError:
        raise
    except UsageError as e:
        flag, _, rest = str(e).partition(": ")
        key = from_config.get(flag)
        if key is None:
            raise
        raise ConfigError(f"{cfg.where(key)}: {rest}") from None
    return options


def _named(vectors: Iterable[Vector], names: dict[str, str]) -> Iterator[Vector]:
    """The config's inputs under the names the config gives them, whatever the current
    directory (``../logits.csv`` read from a subdirectory is still ``logits.csv``)."""
    for v in vectors:
        name = names.get(v.source, v.source)
        yield v if name == v.source else dataclasses.replace(v, source=name)


def _outputs(
    cfg: Config, fmt: str, output: str | None, output_format: tuple[str, ...]
) -> tuple[str | None, list[tuple[str, str, str]]]:
    """The format written to standard output (``None``: nothing is) and the files to write:
    (format, path, flag).

    ``-`` is standard output, for ``-o -`` as for ``--output-format FORMAT:-``; standard output
    holds one report, so a ``FORMAT:-`` replaces the default table there, and two reports
    meant for it (``-f json --output-format junit:-``) are an error.
    """
    typed = _given("fmt")
    if not typed and cfg.format is not None:
        if cfg.format not in FORMAT_MODULES:
            choices = ", ".join(FORMAT_MODULES)
            raise ConfigError(
                f"{cfg.where('format')}: unknown format {cfg.format!r} (choose from {choices})"
            )
        fmt = cfg.format
    claim = None  # who asked for standard output: -o -, -f, the config's format (no flag)
    if output == "-":  # -o - is standard output
        output, claim = None, "-o -"
    elif output is None and typed:
        claim = f"-f {fmt}"
    elif output is None and cfg.format is not None and not output_format:
        claim = cfg.where("format")
    files = [(fmt, output, "--output")] if output is not None else []
    stdout: str | None = None if files else fmt
    flag = "--output-format" if output_format else cfg.where("output_format")
    for spec in output_format or cfg.output_format or ():
        name, _, path = spec.partition(":")
        if not path or name not in FORMAT_MODULES:
            raise UsageError(
                f"{flag}: expected FORMAT:PATH with FORMAT one of {', '.join(FORMAT_MODULES)}, "
                f"got {spec!r}"
            )
        if path != "-":
            files.append((name, path, flag))
            continue
        if claim is not None:
            raise UsageError(f"{flag}: {spec} writes standard output, and so does {claim}")
        stdout, claim = name, f"{flag} {spec}"
    return stdout, files


def _files(cfg: Config, named: bool) -> tuple[tuple[str, str], ...]:
    """(name, path) of the config's inputs, when the report names them (relative to the
    config file) other than the path they are read from (relative to the current
    directory): annotations must point at the file from where lsmcheck runs."""
    if not (named and cfg.inputs and cfg.input_names):
        return ()
    pairs = zip(cfg.input_names, cfg.inputs, strict=True)
    return tuple((name, path) for name, path in pairs if name != path)


def _loading(writers: list[str], progress: Progress) -> Progress:
    """``progress``, which first imports the modules that will write the report.

    They are imported after the first chunk, while worker processes (or a cluster) audit the
    next ones: with ``--jobs 2`` the import (the table's rich, some 0.05 s) then costs half its
    time instead of adding all of it after the audit.  With one process it costs the same.
    """
    pending = list(dict.fromkeys(writers))

    def callback(done: int, total: int | None) -> None:
        while pending:
            formatter(pending.pop())
        progress(done, total)

    return callback


def _write(path: str, text: str, inputs: list[str], flag: str) -> None:
    try:
        write_atomically(path, text, inputs, flag)
    except OSError as e:
        raise UsageError(f"{flag}: cannot write {path}: {e.strerror}") from None
    click.echo(f"lsmcheck: wrote {path}", err=True)


def _to_compare(baseline: str | None, save_baseline: str | None) -> str | None:
    """The baseline to compare with: ``None`` when this run creates it.

    With ``--save-baseline``, a baseline that does not exist yet is recorded, not compared
    with, when it is the config's ``baseline`` or the very file being saved: the first run
    of a project must be able to create the file its config names.  A missing ``--baseline``
    saved elsewhere stays an error (a typo must not pass the gate unseen).
    """
    if not (baseline and save_baseline) or os.path.lexists(baseline):
        return baseline
    if _given("baseline") and os.path.abspath(baseline) != os.path.abspath(save_baseline):
        return baseline
    click.echo(f"lsmcheck: no baseline {baseline} yet: nothing to compare with", err=True)
    return None


def _not_nan(value: float | None) -> float | None:
    """``value``, unless it is NaN (which passes every range check)."""
    if value is not None and math.isnan(value):
        raise click.BadParameter("expected a number of seconds, got nan")
    return value


#: The longest ``--timeout``: 1e9 s (31 years; the interval timer cannot hold much more).
MAX_TIMEOUT = 1e9


#: The longest vector ``run`` audits without ``--max-length``.
DEFAULT_MAX_LENGTH = MAX_LENGTH


def _check_lengths(inputs: Sequence[str], max_length: int) -> None:
    """Refuse an array whose vectors are longer than ``max_length`` before reading it (text
    inputs are checked vector by vector as they are read: :func:`_bounded`)."""
    for source, n in longest_vectors(inputs):
        if n > max_length:
            raise InputError(source, _too_long("vectors", n, max_length))


def _bounded(vectors: Iterable[Vector], max_length: int) -> Iterator[Vector]:
    """``vectors``, refusing one longer than ``max_length`` before it is audited: a 16 MiB
    CSV line holds 8 million logits, some 4 GB to audit."""
    for v in vectors:
        if len(v.values) > max_length:
            raise InputError(v.label, _too_long("a vector", len(v.values), max_length))
        yield v


def _too_long(what: str, n: int, max_length: int) -> str:
    return (
        f"{what} of {n:,} logits {'is' if what == 'a vector' else 'are'} longer than "
        f"--max-length {max_length:,}: a vector is audited whole, at about {BYTES_PER_LOGIT} "
        f"bytes per logit ({audit_size(n)} here); raise --max-length to audit it"
    )


class _Limits:
    """``--max-elements`` and ``--timeout``: checked after every chunk, and by an alarm that
    interrupts a long chunk when the time is up.  ``done`` counts logits x dtypes audited."""

    def __init__(self, max_elements: int | None, timeout: float | None) -> None:
        self.max_elements = max_elements
        self.timeout = timeout
        self.start = time.monotonic()
        self.done = 0
        self.total: int | None = None

    def _stop(self, flag: str) -> LimitError:
        elapsed = time.monotonic() - self.start
        of = "" if self.total is None else f" of {self.total}"
        return LimitError(
            f"{flag}: stopped after auditing {self.done}{of} elements (logits x dtypes) in "
            f"{elapsed:.1f} s; no report was written"
        )

    def check_total(self) -> None:
        """Refuse before any work an input whose size is known and above ``--max-elements``
        (auditing it up to the limit would be work thrown away)."""
        n, most = self.total, self.max_elements
        if n is not None and most is not None and n > most:
            raise LimitError(
                f"--max-elements {most}: the input holds {n} elements (logits x dtypes); "
                "nothing was audited and no report was written"
            )

    def progress(self, bar: Callable[[int, Any], None]) -> Callable[[int, Any], None]:
        def callback(done: int, total: Any) -> None:
            self.done = done
            bar(done, total)
            if self.max_elements is not None and done > self.max_elements:
                raise self._stop(f"--max-elements {self.max_elements}")
            if self.timeout is not None and time.monotonic() - self.start > self.timeout:
                raise self._stop(f"--timeout {self.timeout:g}")

        return callback

    @contextmanager
    def alarm(self) -> Iterator[None]:
        """Raise the timeout's LimitError from a SIGALRM when the time is up (POSIX)."""
        in_main_thread = threading.current_thread() is threading.main_thread()
        if self.timeout is None or not hasattr(signal, "setitimer") or not in_main_thread:
            yield  # the per-chunk check in progress() still applies
            return

        def ring(_signum: int, _frame: object) -> None:
            raise self._stop(f"--timeout {self.timeout:g}")

        previous = signal.signal(signal.SIGALRM, ring)
        signal.setitimer(signal.ITIMER_REAL, self.timeout)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


@click.command()
@click.argument("paths", nargs=-1, metavar="[PATHS]...")
@click.option(
    "-l", "--logits", multiple=True, metavar="TEXT", help='A vector typed inline: -l "2,1,0.1".'
)
@dtype_option
@algorithm_option
@click.option(
    "--impl",
    "impls",
    multiple=True,
    metavar="KIND=MODULE:FUNCTION",
    help="Audit your own implementation (repeatable): --impl log_softmax=mypkg.ops:fused, "
    "or a file: --impl log_softmax=ops/fused.py:fused.  KIND is softmax, log_softmax or "
    "logsumexp.  Each runs in a process of its own.",
)
@impl_limit_options
@precision_option
@reference_option
@jobs_option
@scheduler_option
@quiet_option
@precision_flags
@click.option("--per-element", is_flag=True, help="Include every element in the JSON report.")
@click.option(
    "--keep",
    type=click.IntRange(min=0),
    metavar="N",
    help="Aggregate as results stream: keep the N worst vectors (and the first N failing and "
    "skipped) per algorithm and dtype; totals cover all.  Default: every result up to "
    "100,000, then 10; with a baseline, every result.",
)
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(sorted(FORMAT_MODULES)),
    default="table",
    show_default=True,
    help="Report format on standard output (or -o).",
)
@click.option("-o", "--output", metavar="FILE", help="Write the report here (atomically).")
@click.option(
    "--output-format",
    multiple=True,
    metavar="FORMAT:PATH",
    help="Also write the report in FORMAT to PATH (repeatable): --output-format junit:r.xml; "
    "a PATH of - is standard output (instead of -f's report).",
)
@click.option("--max-ulp", type=float, metavar="N", help="Fail a result whose max ULP error > N.")
@click.option(
    "--max-rel-error", type=float, metavar="X", help="Fail a result whose max relative error > X."
)
@click.option(
    "--fail-on",
    multiple=True,
    metavar="EVENTS",
    help=f"Fail a result with any of these ({', '.join(FAIL_ON_CHOICES)}); with 'unaudited' "
    "fail inputs that cannot be audited (undefined or unrepresentable); 'all' is every one.",
)
@click.option(
    "--baseline",
    "baseline",
    metavar="FILE",
    help="Fail only on regressions against this baseline (see --save-baseline).",
)
@click.option("--save-baseline", metavar="FILE", help="Record this run's results as a baseline.")
@click.option(
    "--baseline-tolerance",
    type=float,
    metavar="ULP",
    help=f"How many ulp max_ulp may grow before it regresses [default: {DEFAULT_TOLERANCE:g}].",
)
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    help="Read settings from this file (default: lsmcheck.toml or pyproject.toml, searched "
    "upwards from the current directory).",
)
@click.option("--no-config", is_flag=True, help="Ignore every config file.")
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when the gate fails.")
@click.option(
    "--max-elements",
    type=click.IntRange(min=1),
    metavar="N",
    help="Stop with exit code 2 and no report once more than N elements (logits x dtypes) "
    "have been audited (checked after each chunk of about 131,072 logits); an input known to "
    "be larger (.npy, .npz, -l) is refused before any work.",
)
@click.option(
    "--max-length",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_LENGTH,
    show_default=True,
    metavar="N",
    help="Refuse (exit code 2) a vector longer than N logits (a .npy/.npz before reading it, "
    "a text vector before auditing it): one vector is audited whole, at about 500 bytes of "
    "memory per logit.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True, max=MAX_TIMEOUT),
    callback=lambda _ctx, _param, value: _not_nan(value),
    metavar="SECONDS",
    help="Stop with exit code 2 and no report when the audit has run this long.",
)
@danger_zone_option
@guard
def run(
    paths: tuple[str, ...],
    logits: tuple[str, ...],
    dtypes: tuple[str, ...],
    algorithms: tuple[str, ...],
    impls: tuple[str, ...],
    impl_timeout: float | None,
    impl_memory: str | None,
    precision: int,
    reference: str,
    jobs: int | None,
    scheduler: str | None,
    quiet: bool,
    accumulate: str | None,
    block: int,
    target: str | None,
    grad: bool,
    bounds: bool,
    per_element: bool,
    keep: int | None,
    fmt: str,
    output: str | None,
    output_format: tuple[str, ...],
    max_ulp: float | None,
    max_rel_error: float | None,
    fail_on: tuple[str, ...],
    baseline: str | None,
    save_baseline: str | None,
    baseline_tolerance: float | None,
    config_path: str | None,
    no_config: bool,
    exit_zero: bool,
    max_elements: int | None,
    max_length: int,
    timeout: float | None,
    danger_zone: float | None,
) -> int:
    """Audit the logit vectors in PATHS (CSV, TSV, JSON, .npy, .npz; - for stdin)."""
    cfg = discover(config_path, use_files=not no_config)
    thresholds = Thresholds(
        max_ulp=max_ulp,
        max_rel_error=max_rel_error,
        fail_on=parse_fail_on(fail_on),
        rules=cfg.rules,
    )
    stdout, files = _outputs(cfg, fmt, output, output_format)
    user = _implementations(impls, cfg, impl_timeout, impl_memory)
    _check_rule_names(cfg, user)
    precisions = {"accumulate": accumulate, "block": block, "target": target, "grad": grad}
    precisions["bounds"] = bounds
    options = _options(
        cfg, user, dtypes, algorithms, precision, per_element, thresholds, **precisions
    )
    note_black_boxes(options.formats(), user)
    inputs = paths if paths or logits else (cfg.inputs or ())
    baseline = _to_compare(baseline or cfg.baseline, save_baseline)
    options = dataclasses.replace(
        options,
        danger_zone=danger_zone,
        reference=reference,
        keep=keep,
        aggregate=not (baseline or save_baseline),  # a baseline needs every result
    )
    try:  # fail before the audit
        recorded = baseline_file.load(baseline) if baseline else None
    except InputError as e:  # the config's baseline: say where the config names it
        if baseline is None or baseline != cfg.baseline or _given("baseline"):
            raise
        raise ConfigError(f"{cfg.where('baseline')}: {e}") from None
    sources = _sources(cfg, impls)
    protected = [*inputs, *sources, *([baseline] if baseline else [])]
    outputs = [(path, flag, protected) for _, path, flag in files]
    if save_baseline:  # may replace the baseline it compares with, never an input
        outputs.append((save_baseline, "--save-baseline", [*inputs, *sources]))
    check_outputs(outputs)  # before the audit: a refused file wastes no work
    _check_lengths(inputs, max_length)
    vectors = _bounded(iter_sources(inputs, logits, stdin=sys.stdin), max_length)  # streamed
    named = not (paths or logits)
    if named and cfg.inputs and cfg.input_names:
        vectors = _named(vectors, dict(zip(cfg.inputs, cfg.input_names, strict=True)))
    tolerance = next(
        t for t in (baseline_tolerance, cfg.baseline_tolerance, DEFAULT_TOLERANCE) if t is not None
    )
    check_tolerance(tolerance)  # before the audit, not after it
    total = count_elements(inputs, logits)
    tune_malloc()
    bar = ProgressBar(quiet)
    limits = _Limits(max_elements, timeout)
    limits.total = None if total is None else total * len(options.formats())
    limits.check_total()
    writers = [*([stdout] if stdout else []), *(name for name, _, _ in files)]
    try:
        with limits.alarm():
            report = audit(
                vectors,
                options,
                _loading(writers, limits.progress(lambda done, _: bar(done, limits.total))),
                baseline=recorded,
                baseline_tolerance=tolerance,
                jobs=jobs or default_jobs(),
                scheduler=scheduler,
            )
    finally:
        bar.close()
    keep_until_exit()
    if save_baseline:
        _write(save_baseline, baseline_file.dumps(report), [*inputs, *sources], "--save-baseline")
    located = _files(cfg, named)  # where github and junit point, relative to the cwd
    for name, path, flag in files:
        _write(path, render(name, report, Style(color=False, files=located)), protected, flag)
    if stdout is not None:
        style = dataclasses.replace(style_for(sys.stdout), files=located)
        sys.stdout.write(render(stdout, report, style))
    return 0 if exit_zero else report.exit_code
