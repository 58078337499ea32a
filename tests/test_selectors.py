"""Contract tests that every registered selector passes (a new selector file is tested with no new code)."""

import numpy as np
import pytest

from benchmark.errors import UserError
from benchmark.selection import available_selectors, create_selector, validate_selection
from tests.conftest import tiny_context

SELECTORS = sorted(available_selectors())
SUBSET_SELECTORS = [name for name in SELECTORS if not available_selectors()[name].whole_pool]
# methods whose choice is a deterministic function of the features: different seeds may agree
RANDOMIZED = {"random", "kcenter_greedy", "contextual_diversity", "ccs", "dual"}


def _select(name, **context_args):
    if available_selectors()[name].whole_pool:  # the harness runs these at fraction 1.0
        context_args["budget"] = sum(context_args.get("per_class", (12, 12, 12)))
    context = tiny_context(**context_args)
    selector = create_selector(name)
    return validate_selection(selector.select(context), context, name), context


def test_whole_pool_selectors_return_the_pool():
    selection, context = _select("full")
    assert selection.indices.tolist() == list(range(context.pool_size))


@pytest.mark.parametrize("name", SUBSET_SELECTORS)
def test_exact_budget_and_class_budgets(name):
    selection, context = _select(name, budget=9)
    assert len(selection.indices) == 9
    counts = np.bincount(context.labels[selection.indices], minlength=context.num_classes)
    assert counts.tolist() == context.class_budgets.tolist() == [3, 3, 3]


@pytest.mark.parametrize("name", SUBSET_SELECTORS)
def test_explicit_class_budgets_are_honoured(name):
    selection, context = _select(name, budget=9, class_budgets=[5, 1, 3])
    counts = np.bincount(context.labels[selection.indices], minlength=3)
    assert counts.tolist() == [5, 1, 3]


@pytest.mark.parametrize("name", SELECTORS)
def test_same_seed_same_indices(name):
    first, _ = _select(name, seed=3)
    second, _ = _select(name, seed=3)
    np.testing.assert_array_equal(first.indices, second.indices)


@pytest.mark.parametrize("name", sorted(RANDOMIZED))
def test_different_seeds_differ_where_random(name):
    draws = {tuple(_select(name, seed=seed)[0].indices) for seed in range(4)}
    assert len(draws) > 1


@pytest.mark.parametrize("name", SUBSET_SELECTORS)
def test_unbalanced_selects_over_the_whole_pool(name):
    selection, context = _select(name, per_class=(20, 4, 4), budget=10, balance=False)
    assert len(selection.indices) == 10 and len(np.unique(selection.indices)) == 10


def test_class_smaller_than_its_budget_is_a_clear_error():
    with pytest.raises(UserError, match="class 1 has 4 points but a budget of 6"):
        tiny_context(per_class=(12, 4, 12), budget=12, class_budgets=[3, 6, 3])


@pytest.mark.parametrize("name", SELECTORS)
def test_every_selector_cites_its_paper(name):
    cls = available_selectors()[name]
    module = __import__(cls.__module__, fromlist=["_"])
    assert cls.paper and module.__doc__ and len(module.__doc__.strip()) > 20
