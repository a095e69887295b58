"""pile_index.fanout: the same results, order and errors in this process and on Ray."""

from __future__ import annotations

import pickle
import sys

import pytest

from pile_index.errors import ConfigError, NotFoundError
from pile_index.fanout import fan_out
from pile_index.format.store import TokenStore
from tests.stores import sized_store


def _square_minus(x: int, y: int) -> int:
    return x * x - y


def _refuse(x: int) -> int:
    if x == 2:
        raise NotFoundError(f"revision step{x} is not in the cache; download it first")
    return x


def _bug(x: int) -> int:
    return {}[x]  # a KeyError: not the project's error, raised as itself


TASKS = [(3, 1), (1, 0), (4, 2), (2, 5)]
SQUARES = [8, 1, 14, -1]


def test_local_runs_in_order_and_hands_each_result_over():
    seen = []
    assert fan_out(_square_minus, TASKS, progress=False) == SQUARES
    out = fan_out(_square_minus, TASKS, on_done=lambda i, r: seen.append((i, r)) or -i, progress=False)
    assert seen == list(enumerate(SQUARES))  # in task order, as each ends
    assert out == [0, -1, -2, -3]  # what on_done returned
    assert fan_out(_square_minus, [], progress=False) == []


def test_local_error_is_the_task_error_and_stops_the_rest():
    seen = []
    with pytest.raises(NotFoundError, match="revision step2 is not in the cache"):
        fan_out(_refuse, [(1,), (2,), (3,)], on_done=lambda i, r: seen.append(r), progress=False)
    assert seen == [1]


def test_a_store_pickles_as_its_prefixes(tmp_path):
    store = TokenStore(sized_store(str(tmp_path / "s"), [3, 5, 2]))
    again = pickle.loads(pickle.dumps(store))
    assert isinstance(again, TokenStore) and again.prefixes == store.prefixes
    assert [again[i].tolist() for i in range(len(store))] == [store[i].tolist() for i in range(len(store))]
    assert len(pickle.dumps(store)) < 500  # the prefixes, not the memmapped arrays


@pytest.fixture(scope="module")
def ray_running():
    """One local Ray instance (1 CPU) for the module's Ray tests; fan_out joins it and leaves it running."""
    ray = pytest.importorskip("ray")
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import a test module by name
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_gives_the_local_results_in_task_order(ray_running):
    seen = []
    out = fan_out(_square_minus, TASKS, on_done=lambda i, r: seen.append((i, r)), ray_address="local",
                  progress=False)
    assert out == [None] * len(TASKS)
    assert sorted(seen) == list(enumerate(SQUARES))
    assert fan_out(_square_minus, TASKS, ray_address="auto", progress=False) == SQUARES
    assert ray_running.is_initialized()  # not started by fan_out, so not shut down by it


@pytest.mark.slow
def test_ray_task_errors_are_raised_as_themselves(ray_running):
    with pytest.raises(NotFoundError) as caught:
        fan_out(_refuse, [(1,), (2,), (3,)], ray_address="local", progress=False)
    assert type(caught.value) is NotFoundError  # the project's error, not Ray's wrapper of it
    assert str(caught.value) == "revision step2 is not in the cache; download it first"
    assert caught.value.__cause__ is None and "Traceback" not in str(caught.value)
    with pytest.raises(KeyError) as caught:
        fan_out(_bug, [(7,)], ray_address="local", progress=False)
    assert type(caught.value) is KeyError and caught.value.args == (7,)


def test_missing_ray_is_a_config_error_naming_ray(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"^`ray` needs Ray: pip install 'pile-index\[ray\]'$"):
        fan_out(_square_minus, TASKS, ray_address="local", progress=False)
    assert fan_out(_square_minus, TASKS, progress=False) == SQUARES  # only asked for when Ray is

