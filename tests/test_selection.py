"""The selector protocol: validation of what selectors return, the registry, plug-ins, budgets."""

import dataclasses
import importlib.metadata
from typing import ClassVar

import numpy as np
import pytest

from benchmark import selection as sel
from benchmark.data import stratified_counts
from benchmark.errors import UserError
from benchmark.selection import Selection, SelectionContext, create_selector, validate_selection


def _context(budget=4):
    return SelectionContext.from_arrays(labels=[0, 0, 0, 0, 1, 1, 1, 1], budget=budget, seed=0)


@pytest.mark.parametrize("indices, message", [
    ([0, 0, 4, 5], "1 duplicate indices"),
    ([0, 1, 4, 8], "indices outside 0..7"),
    ([-1, 1, 4, 5], "indices outside 0..7"),
    ([0, 1, 4], "3 indices for a budget of 4"),
    ([0.0, 1.0, 4.0, 5.0], "expected integers"),
    ([[0, 1], [4, 5]], "expected a 1-D array"),
])
def test_invalid_selections_name_the_selector_and_the_problem(indices, message):
    with pytest.raises(UserError, match=f"selector 'mine' returned .*{message}"):
        validate_selection(Selection(indices=np.array(indices)), _context(), "mine")


def test_weighted_selection_may_be_smaller_but_weights_must_be_sane():
    valid = validate_selection(Selection(indices=np.array([0, 4]), weights=np.array([2.0, 2.0])), _context(), "w")
    assert valid.indices.tolist() == [0, 4]
    with pytest.raises(UserError, match="weights"):
        validate_selection(Selection(indices=np.array([0, 4]), weights=np.array([np.nan, 1.0])), _context(), "w")


def test_scores_must_cover_the_pool():
    with pytest.raises(UserError, match="scores of shape"):
        validate_selection(Selection(indices=np.array([0, 1, 4, 5]), scores=np.ones(3)), _context(), "s")


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(UserError, match="unknown method 'nope'; known methods: .*random"):
        create_selector("nope")


def test_parameters_are_typed_and_checked():
    @dataclasses.dataclass(frozen=True)
    class Knobs(sel.Selector):
        name: ClassVar[str] = "knobs-test"
        paper: ClassVar[str] = "test"
        k: int = 3
        scale: float = 1.0
        exact: bool = False

    sel.register(Knobs)
    try:
        made = create_selector("knobs-test", {"k": "5", "scale": "0.5", "exact": "true"})
        assert made.params() == {"k": 5, "scale": 0.5, "exact": True}
        with pytest.raises(UserError, match="parameter k must be int"):
            create_selector("knobs-test", {"k": "five"})
        with pytest.raises(UserError, match="has no parameter 'j'; its parameters: k, scale, exact"):
            create_selector("knobs-test", {"j": "1"})
    finally:
        del sel.SELECTORS._entries["knobs-test"]


def test_a_selector_without_a_paper_is_refused_at_registration():
    @dataclasses.dataclass(frozen=True)
    class Unsourced(sel.Selector):
        name: ClassVar[str] = "unsourced-test"

    with pytest.raises(TypeError, match="needs a class attribute `paper`"):
        sel.register(Unsourced)
    assert "unsourced-test" not in sel.SELECTORS._entries


def test_entry_point_plugins_are_discovered(monkeypatch):
    @dataclasses.dataclass(frozen=True)
    class Plugged(sel.Selector):
        name: ClassVar[str] = "plugged-test"
        paper: ClassVar[str] = "a contributor's package"

    class EntryPoint:
        name = "plugged-test"

        def load(self):
            return Plugged

    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group: [EntryPoint()] if group == sel.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(sel.SELECTORS, "_discovered", False)
    try:
        assert "plugged-test" in sel.available_selectors()
    finally:
        sel.SELECTORS._entries.pop("plugged-test", None)


def test_stratified_counts_are_proportional_and_exact():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    assert stratified_counts(labels, 3, 10).tolist() == [5, 3, 2]
    counts = stratified_counts(labels, 3, 7)  # quotas 3.5, 2.1, 1.4 -> floors 3, 2, 1, leftover to class 0
    assert counts.tolist() == [4, 2, 1] and counts.sum() == 7


def test_gradient_embeddings_match_autograd():
    import torch

    rng = np.random.default_rng(0)
    h = torch.tensor(rng.normal(size=(5, 4)), dtype=torch.float32)
    weight = torch.tensor(rng.normal(size=(3, 4)), dtype=torch.float32, requires_grad=True)
    bias = torch.zeros(3, requires_grad=True)
    labels = np.array([0, 1, 2, 0, 1])
    probabilities = (h @ weight.T + bias).softmax(1).detach()
    context = SelectionContext.from_arrays(labels=labels, budget=2, seed=0, embeddings=h,
                                           probabilities=probabilities, balance=False)
    closed_form = context.gradient_embeddings()
    for i in range(5):
        loss = torch.nn.functional.cross_entropy((h[i:i + 1] @ weight.T + bias), torch.tensor([labels[i]]))
        grad_w, grad_b = torch.autograd.grad(loss, (weight, bias))
        torch.testing.assert_close(closed_form[i], torch.cat([grad_b, grad_w.flatten()]), rtol=1e-5, atol=1e-6)


def test_nan_embeddings_are_refused():
    with pytest.raises(UserError, match="NaN or infinite"):
        SelectionContext.from_arrays(labels=[0, 1], budget=1, embeddings=[[0.0, np.nan], [1.0, 1.0]])
