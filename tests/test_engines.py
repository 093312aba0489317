"""Engines: results in order, back-pressure, errors, progress; the repository passes its engine down."""

from __future__ import annotations

import pickle
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

import assay
from assay._types import Progress
from assay.engines import Engine, InProcessEngine, RayEngine, default_engine, open_engine
from assay.errors import MissingExtra
from tests.conftest import make_table


def _square(x: int) -> int:
    return x * x


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_results_come_back_in_the_order_of_the_items(threads: int) -> None:
    assert list(InProcessEngine(threads).map(_square, range(50))) == [x * x for x in range(50)]
    assert list(InProcessEngine(threads).map(_square, [])) == []


def test_items_are_consumed_at_most_a_window_ahead() -> None:
    taken: list[int] = []
    ahead: list[int] = []

    def items() -> Iterator[int]:
        for i in range(20):
            taken.append(i)
            yield i

    results = InProcessEngine(2, window=3).map(_square, items())
    for n, _ in enumerate(results, 1):
        ahead.append(len(taken) - n)
    assert max(ahead) <= 3 and len(taken) == 20


def test_work_runs_on_several_threads() -> None:
    seen: set[str] = set()
    barrier = threading.Barrier(2, timeout=10)

    def meet(x: int) -> int:
        barrier.wait()  # returns only once two tasks run at the same time
        seen.add(threading.current_thread().name)
        return x

    assert list(InProcessEngine(2).map(meet, [1, 2])) == [1, 2]
    assert len(seen) == 2


def test_an_error_in_fn_is_raised_where_its_result_is_taken() -> None:
    def fail_on_three(x: int) -> int:
        if x == 3:
            raise KeyError("three")
        return x

    for threads in (1, 2):
        got: list[int] = []
        with pytest.raises(KeyError, match="three"):
            for r in InProcessEngine(threads).map(fail_on_three, range(10)):
                got.append(r)
        assert got == [0, 1, 2]


def test_progress_counts_results_with_the_stage_name() -> None:
    calls: list[tuple[str, int, int]] = []
    list(InProcessEngine(2).map(_square, [1, 2, 3], progress=lambda *a: calls.append(a), stage="squaring"))
    assert calls == [("squaring", 1, 3), ("squaring", 2, 3), ("squaring", 3, 3)]
    calls.clear()
    list(InProcessEngine(1).map(_square, iter([1, 2]), progress=lambda *a: calls.append(a), total=2))
    assert calls == [("working", 1, 2), ("working", 2, 2)]


def test_bad_settings_are_input_errors() -> None:
    with pytest.raises(assay.InputError, match="at least one thread"):
        InProcessEngine(0)
    with pytest.raises(assay.InputError, match="window"):
        InProcessEngine(2, window=0)


def test_the_default_engine_is_in_process_and_picklable() -> None:
    engine = default_engine()
    assert isinstance(engine, InProcessEngine) and engine.threads == 2
    assert pickle.loads(pickle.dumps(engine)).threads == engine.threads  # a worker can be handed the engine


class Recording(InProcessEngine):
    """A real in-process engine that also records how many tasks each call ran."""

    def __init__(self) -> None:
        super().__init__(threads=1)
        self.tasks = 0

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], *, progress: Progress | None = None,
            stage: str | None = None, total: int | None = None) -> Iterator[Any]:
        def counted(item: Any) -> Any:
            self.tasks += 1
            return fn(item)

        return super().map(counted, items, progress=progress, stage=stage, total=total)


def test_the_repository_passes_its_engine_down(tmp_path: Path) -> None:
    engine = Recording()
    assay.init(tmp_path)
    with assay.Repo(tmp_path, engine=engine) as repo:
        repo.add("t", make_table(200), key="id")
        after_add = engine.tasks
        assert after_add >= 1  # the fragments were written through it
        repo.set_suite("t", "dataset: t\nexpectations:\n"
                            "  - {expect: quantile_between, column: x, quantile: 0.5, min: 0, max: 1}\n")
        repo.commit("first")
        after_commit = engine.tasks
        assert after_commit > after_add  # the suite's pass ran through it
        repo.add("t", make_table(200, seed=1), key="id")
        assert repo.diff(dataset="t")[0].changed == 200
    other = Recording()
    with assay.Repo(tmp_path) as repo:
        assert repo.diff(dataset="t", engine=other)[0].changed == 200
        assert other.tasks >= 1  # a method's engine= overrides the repository's


def test_engines_subclass_the_protocol() -> None:
    assert issubclass(InProcessEngine, Engine)
    with pytest.raises(TypeError):
        Engine()  # type: ignore[abstract]


def test_open_engine_reads_the_forms_users_write() -> None:
    threads = open_engine("inprocess:3")
    assert isinstance(open_engine(None), InProcessEngine) and isinstance(threads, InProcessEngine)
    assert threads.threads == 3
    rays = [open_engine(u) for u in ("ray", "ray:auto", "ray:10.0.0.1:6379", "ray://head:10001")]
    assert [e.address for e in rays if isinstance(e, RayEngine)] == [None, "auto", "10.0.0.1:6379", "ray://head:10001"]
    with pytest.raises(assay.InputError, match="unknown engine 'spark'"):
        open_engine("spark")
    with pytest.raises(assay.InputError, match="whole number"):
        open_engine("inprocess:many")


def test_the_ray_engine_pickles_as_its_settings_and_connects_only_when_it_runs() -> None:
    engine = pickle.loads(pickle.dumps(RayEngine("10.0.0.1:6379", num_cpus=2, window=3)))
    assert (engine.address, engine.num_cpus, engine.window) == ("10.0.0.1:6379", 2, 3)


def test_without_ray_installed_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` finds where Ray is not installed
    with pytest.raises(MissingExtra, match=r"pip install 'assay\[ray\]'"):
        list(RayEngine().map(abs, [1]))


def test_neighbour_queries_in_blocks_of_an_engine_match_one_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from assay.screens._neighbors import neighbors
    from assay.screens.data import ScreenData

    features = np.random.default_rng(0).normal(size=(3_000, 6)).astype(np.float32)
    features[10] = features[11]  # copies tie at distance 0
    whole = neighbors(ScreenData(features, [str(i) for i in range(3_000)]), 5)
    monkeypatch.setattr("assay.screens._neighbors.BLOCK_ROWS", 700)
    engine = Recording()
    blocks = neighbors(ScreenData(features, [str(i) for i in range(3_000)], engine=engine), 5)
    assert engine.tasks == 5  # 3,000 samples in blocks of 700
    assert np.array_equal(whole[0], blocks[0]) and np.array_equal(whole[1], blocks[1])
