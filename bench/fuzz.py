"""Fuzzing benchmark: N generated inputs per input surface (default 100,000), counting crashes, 5xx
answers, refusals without a message and wrong answers; the target is zero of each.

    .venv/bin/python bench/fuzz.py                              # every surface, 100,000 inputs each
    .venv/bin/python bench/fuzz.py --inputs 20000 --surfaces api,slo-yaml --budget 600

Surfaces and their inputs (generators and oracles: ``tests/fuzzing.py``, ``tests/fuzzing_apps.py``):

* ``otlp-protobuf``: ``collector.decode`` parse + check of mutated real requests (bit flips,
  truncation, splices, random bytes) in a plain loop, well-formed requests with invalid values
  (ids of every length, any enum or time) from hypothesis, and coverage-guided mutations from atheris
  (libFuzzer, in a subprocess) when it is installed;
* ``otlp-json``: structure and text mutations of the OTLP/JSON examples, and hypothesis trees shaped
  like OTLP/JSON with wrong types;
* ``gzip``: both receivers' gunzip on valid, truncated, corrupted, multi-member and bomb bodies
  (plain loop and atheris), checked against Python's gzip module;
* ``zipkin-json``: mutations of the Zipkin examples and hypothesis span lists;
* ``receivers``: the above bodies with every content type and encoding, POSTed end to end through
  the OTLP/HTTP and Zipkin applications over real durable queues and a real store;
* ``api``: every GET route and query parameter of the UI/API application (JSON, Jaeger, HTML) over a
  store with spans, logs, metrics, SLO history, an incident and a silence;
* ``slo-yaml``, ``policy-yaml``: the SLO spec loader (native and OpenSLO) and the notification policy
  loader on mutated examples, hypothesis documents and deep nesting.

``--budget`` stops a surface after that many seconds, and the table says how many inputs it tried:
an honest count. The table is printed and appended to docs/reliability/fuzz.md with the command.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SURFACES = (
    "otlp-protobuf",
    "otlp-json",
    "gzip",
    "zipkin-json",
    "receivers",
    "api",
    "slo-yaml",
    "policy-yaml",
)


SHM = Path("/dev/shm")
#: One input in this many comes from a hypothesis strategy (slower to draw than a mutation is to make).
HYPOTHESIS_SHARE = 10


class OutOfTime(Exception):
    """The surface's time budget is spent."""


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    # Refusals are logged at INFO and quarantined batches at WARNING: millions of lines otherwise.
    import logging

    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(previous)


def run_loop(
    tally: Any,
    make: Callable[[random.Random], Any],
    oracle: Callable[[Any], object],
    n: int,
    seed: int,
    deadline: float,
) -> None:
    """``n`` inputs from ``make`` through ``oracle``, or fewer if ``deadline`` (monotonic) passes."""
    rng = random.Random(seed)
    for i in range(n):
        if i % 64 == 0 and time.monotonic() > deadline:
            return
        tally.run(oracle, make(rng))


def run_hypothesis(
    tally: Any, strategy: Any, oracle: Callable[[Any], object], n: int, seed: int, deadline: float
) -> None:
    """Up to ``n`` examples of ``strategy`` (generation only: a finding is counted, not shrunk)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as fixed_seed

    if n <= 0:
        return

    @settings(
        max_examples=n,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @fixed_seed(seed)
    @given(strategy)
    def run(value: Any) -> None:
        if time.monotonic() > deadline:
            raise OutOfTime
        tally.run(oracle, value)

    with contextlib.suppress(OutOfTime):
        run()


def run_atheris(tally: Any, surface: str, n: int, seed: int, deadline: float, work: Path) -> bool:
    """``n`` libFuzzer runs of ``surface``'s byte oracle in a subprocess; False if atheris is missing."""
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    if n <= 0:
        return True
    from tests import fuzzing

    corpus = work / f"corpus-{surface}"
    corpus.mkdir(parents=True, exist_ok=True)
    seeds = (
        [bytes([i % 3]) + body for i, s in enumerate(fuzzing.SIGNALS) for body in fuzzing.protobuf_seeds()[s]]
        if surface == "otlp-protobuf"
        else fuzzing.gzip_seeds()
    )
    for i, body in enumerate(seeds):
        (corpus / f"seed-{i}").write_bytes(body)
    result = work / f"atheris-{surface}.json"
    seconds = max(1, int(deadline - time.monotonic()))
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--atheris-child",
        surface,
        str(result),
        f"-runs={n}",
        f"-seed={seed}",
        "-max_len=65536",
        f"-max_total_time={seconds}",
        "-rss_limit_mb=4096",
        "-print_final_stats=0",
        str(corpus),
    ]
    subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    if result.exists():
        child = json.loads(result.read_text())
        tally.tried += child["tried"]
        for kind, count in child["found"].items():
            tally.found[kind] += count
        tally.examples.extend(child["examples"][: max(0, 5 - len(tally.examples))])
    return True


def atheris_child(surface: str, result: Path, libfuzzer_args: list[str]) -> None:
    """The atheris subprocess: instrument the collector, then fuzz one byte oracle, writing the tally
    to ``result`` as it goes (libFuzzer ends the process without running exit handlers)."""
    import atheris

    with atheris.instrument_imports(include=["collector"]):
        from tests import fuzzing
    runs = next((int(a.split("=", 1)[1]) for a in libfuzzer_args if a.startswith("-runs=")), 0)
    tally = fuzzing.Tally(surface)

    def save() -> None:
        result.write_text(
            json.dumps({"tried": tally.tried, "found": tally.found, "examples": tally.examples})
        )

    def one_input(data: bytes) -> None:
        if surface == "otlp-protobuf":
            signal = fuzzing.SIGNALS[data[0] % 3] if data else "traces"
            tally.run(lambda body: fuzzing.check_protobuf(signal, body), data[1:])
        else:
            tally.run(fuzzing.check_gunzip, data)
        if tally.tried % 500 == 0 or tally.tried >= runs - 1 or tally.total_findings:
            save()

    with _quiet_logs():
        atheris.Setup([sys.argv[0], *libfuzzer_args], one_input)
        atheris.Fuzz()


# -- surfaces ------------------------------------------------------------------------------------


def fuzz_surface(surface: str, n: int, seed: int, budget: float, work: Path, use_atheris: bool) -> Any:
    """Run ``n`` inputs of ``surface`` within ``budget`` seconds; the Tally, with a note on the mix."""
    from tests import fuzzing

    tally = fuzzing.Tally(surface)
    start = time.monotonic()
    deadline = start + budget
    note = ""
    if surface == "otlp-protobuf":
        seeds = fuzzing.protobuf_seeds()
        structured = n // HYPOTHESIS_SHARE
        fuzzed = n * 3 // 10 if use_atheris else 0
        from hypothesis import strategies as st

        strategy = st.sampled_from(fuzzing.SIGNALS).flatmap(
            lambda s: fuzzing.STRUCTURED[s]().map(lambda request, s=s: (s, request))
        )
        run_hypothesis(tally, strategy, lambda v: fuzzing.check_structured(*v), structured, seed, deadline)
        done = tally.tried
        if fuzzed:
            run_atheris(tally, surface, fuzzed, seed, deadline, work)
        via_atheris = tally.tried - done
        run_loop(
            tally,
            lambda rng: _signal_and(rng, seeds),
            lambda v: fuzzing.check_protobuf(*v),
            n - tally.tried,
            seed,
            deadline,
        )
        mutated = tally.tried - done - via_atheris
        note = f"{done:,} well-formed (hypothesis), {via_atheris:,} atheris, {mutated:,} mutated"
    elif surface == "otlp-json":
        seeds = fuzzing.json_seeds()
        from hypothesis import strategies as st

        trees = st.sampled_from(fuzzing.SIGNALS).flatmap(
            lambda s: fuzzing.json_trees(s).map(lambda b, s=s: (s, b))
        )
        run_hypothesis(tally, trees, lambda v: fuzzing.check_json(*v), n // HYPOTHESIS_SHARE, seed, deadline)
        done = tally.tried
        run_loop(
            tally,
            lambda rng: (s := rng.choice(fuzzing.SIGNALS), fuzzing.random_otlp_json(rng, seeds[s])),
            lambda v: fuzzing.check_json(*v),
            n - done,
            seed,
            deadline,
        )
        note = f"{done:,} hypothesis trees, {tally.tried - done:,} mutated examples"
    elif surface == "gzip":
        seeds, specials = fuzzing.gzip_seeds(), fuzzing.gzip_specials()
        if use_atheris:
            run_atheris(tally, surface, n * 3 // 10, seed, deadline, work)
        via_atheris = tally.tried
        run_loop(
            tally,
            lambda rng: fuzzing.random_gzip(rng, seeds, specials),
            fuzzing.check_gunzip,
            n - via_atheris,
            seed,
            deadline,
        )
        note = f"{via_atheris:,} atheris, {tally.tried - via_atheris:,} generated and mutated"
    elif surface == "zipkin-json":
        seeds = fuzzing.zipkin_seeds()
        run_hypothesis(
            tally, fuzzing.zipkin_spans(), fuzzing.check_zipkin, n // HYPOTHESIS_SHARE, seed, deadline
        )
        done = tally.tried
        run_loop(
            tally,
            lambda rng: fuzzing.random_zipkin(rng, seeds),
            fuzzing.check_zipkin,
            n - done,
            seed,
            deadline,
        )
        note = f"{done:,} hypothesis span lists, {tally.tried - done:,} mutated examples"
    elif surface in ("receivers", "api"):
        from tests import fuzzing_apps

        backend = fuzzing_apps.open_store(work / f"store-{surface}")
        try:
            if surface == "receivers":
                with fuzzing_apps.receivers(backend, work / "wal") as apps:
                    maker = fuzzing_apps.PostMaker()
                    run_loop(
                        tally, maker, lambda post: fuzzing_apps.check_post(apps, post), n, seed, deadline
                    )
                note = "OTLP/HTTP and Zipkin over real queues; bodies of the four decoder surfaces"
            else:
                with fuzzing_apps.api(backend) as loaded:
                    deadline = time.monotonic() + budget - (time.monotonic() - start)
                    run_loop(
                        tally,
                        loaded.maker,
                        lambda get: fuzzing_apps.check_get(loaded.client, get),
                        n,
                        seed,
                        deadline,
                    )
                    params = sum(len(r.query) for r in loaded.routes)
                note = f"{len(loaded.routes)} GET routes, {params} (route, query parameter) pairs found"
        finally:
            backend.close()
    else:
        examples = fuzzing.SLO_EXAMPLES if surface == "slo-yaml" else fuzzing.POLICY_EXAMPLES
        check = fuzzing.check_slo_yaml if surface == "slo-yaml" else fuzzing.check_policy_yaml
        texts, docs = fuzzing.yaml_seeds(examples)
        target = work / f"{surface}.yaml"
        share = n // HYPOTHESIS_SHARE
        if surface == "slo-yaml":
            run_hypothesis(
                tally, fuzzing.native_slo_docs(), lambda t: check(t, target), share, seed, deadline
            )
        else:
            trees = fuzzing.yaml_trees.map(lambda tree: fuzzing.dump_yaml([tree]))
            run_hypothesis(tally, trees, lambda t: check(t, target), share, seed, deadline)
        done = tally.tried
        make = lambda rng: fuzzing.random_yaml(rng, texts, docs)  # noqa: E731
        run_loop(tally, make, lambda t: check(t, target), n - done, seed, deadline)
        note = f"{done:,} hypothesis documents, {tally.tried - done:,} mutated examples"
    tally.seconds, tally.note = time.monotonic() - start, note
    return tally


def _signal_and(rng: random.Random, seeds: dict[str, list[bytes]]) -> tuple[str, bytes]:
    from tests import fuzzing

    signal = rng.choice(fuzzing.SIGNALS)
    return signal, fuzzing.mutate_randomly(rng, seeds[signal])


# -- report --------------------------------------------------------------------------------------


def table(tallies: list[Any], n: int) -> list[str]:
    lines = [
        "| surface | inputs tried | crashes | 5xx | 4xx without message | wrong answers | seconds | inputs/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in tallies:
        short = "" if t.tried >= n else " (budget)"
        lines.append(
            f"| {t.surface} | {t.tried:,}{short} | {t.found['crash']} | {t.found['5xx']} | "
            f"{t.found['no-message']} | {t.found['wrong']} | {t.seconds:,.0f} | {t.tried / max(t.seconds, 1e-9):,.0f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--atheris-child"]:
        atheris_child(argv[1], Path(argv[2]), argv[3:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs per surface")
    parser.add_argument(
        "--surfaces", default=",".join(SURFACES), help="comma-separated: " + ", ".join(SURFACES)
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budget", type=float, default=3600.0, help="seconds per surface at most")
    parser.add_argument("--no-atheris", action="store_true", help="plain loops and hypothesis only")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "reliability" / "fuzz.md")
    args = parser.parse_args(argv)
    surfaces = [s.strip() for s in args.surfaces.split(",") if s.strip()]
    unknown = sorted(set(surfaces) - set(SURFACES))
    if unknown:
        parser.error(f"unknown surface(s) {', '.join(unknown)}; choose from {', '.join(SURFACES)}")

    # Stores, logs and specs in memory where there is a tmpfs: an fsync per acknowledged request costs
    # more than the request, and the disk's speed is not what is measured here.
    work = Path(tempfile.mkdtemp(prefix="sloscope-fuzz-", dir=SHM if SHM.is_dir() else None))
    tallies = []
    try:
        with _quiet_logs():
            for surface in surfaces:
                tally = fuzz_surface(surface, args.inputs, args.seed, args.budget, work, not args.no_atheris)
                print(table([tally], args.inputs)[-1], flush=True)
                tallies.append(tally)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    command = "python bench/fuzz.py " + " ".join(argv) if argv else "python bench/fuzz.py"
    findings = [e for t in tallies for e in t.examples]
    lines = [
        f"### Run — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"`{command}` on {os.cpu_count()} cores (shared), Python {platform.python_version()}, "
        f"{args.inputs:,} inputs asked per surface, seed {args.seed}"
        + ("" if args.no_atheris else ", atheris for the byte-level surfaces")
        + ". A count marked (budget) stopped at the time budget of "
        + f"{args.budget:,.0f} s.",
        "",
        *table(tallies, args.inputs),
        "",
        *[f"- {t.surface}: {t.note}" for t in tallies if t.note],
        "",
    ]
    if findings:
        lines += ["Findings (first of each surface):", "", *[f"- `{e[:400]}`" for e in findings], ""]
    text = "\n".join(lines)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if not args.output.exists():
        args.output.write_text(
            "# Fuzzing\n\nAppended by `bench/fuzz.py`; newest last. Each entry is one run of the command it "
            "names. Zero is the target in every column but the counts and times.\n\n"
        )
    with open(args.output, "a") as f:
        f.write(text + "\n")
    return 0 if not any(t.total_findings for t in tallies) else 1


if __name__ == "__main__":
    sys.exit(main())
