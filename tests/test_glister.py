"""GLISTER: the vectorised greedy equals a plain-loop greedy over explicit last-layer gradient vectors, and
the model update after each pick changes the choice where a static top-k by initial gain would not."""

import numpy as np
import pytest
import torch
from benchmark.methods.glister import Glister

from benchmark.errors import UserError
from benchmark.selection import SelectionContext, ValidationOutputs, create_selector
from tests.conftest import tiny_context


def grad_vector(error, embedding):
    """[dL/db, dL/dW] of the cross-entropy loss of one point, flattened: the explicit gradient."""
    return np.concatenate([error, np.outer(error, embedding).ravel()])


def reference_greedy(emb, probs, labels, val_emb, val_probs, val_labels, groups, eta):
    """Explicit loops: per group, pick the candidate maximising eta * <g_i, mean_v g_v(theta_S)>, then step
    theta_S <- theta_S - eta * g_best and recompute every validation gradient at the new parameters."""
    num_classes, dim = probs.shape[1], emb.shape[1]
    eye = np.eye(num_classes)
    chosen, scores = [], {}
    for indices, budget, val_rows in groups:
        delta = np.zeros(num_classes + num_classes * dim)  # theta_S - theta, as [db, dW]
        picked = []
        for step in range(budget + 1):
            val_grad = np.zeros_like(delta)
            for v in val_rows:
                weight_step = delta[num_classes:].reshape(num_classes, dim)
                z = np.log(val_probs[v]) + delta[:num_classes] + weight_step @ val_emb[v]
                p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
                val_grad += grad_vector(p - eye[val_labels[v]], val_emb[v]) / len(val_rows)
            gains = {i: eta * grad_vector(probs[i] - eye[labels[i]], emb[i]) @ val_grad for i in indices}
            if step == budget:
                break
            best = max((i for i in indices if i not in picked), key=lambda i: gains[i])
            picked.append(best)
            scores[best] = gains[best]
            delta -= eta * grad_vector(probs[best] - eye[labels[best]], emb[best])
        scores.update({i: gains[i] for i in indices if i not in picked})
        chosen += picked
    return sorted(chosen), scores


def random_arrays(per_class=(8, 7, 9), val_per_class=(4, 3, 5), dim=4, seed=0):
    rng = np.random.default_rng(seed)
    num_classes = len(per_class)
    labels = np.repeat(np.arange(num_classes), per_class)
    val_labels = np.repeat(np.arange(num_classes), val_per_class)
    emb = np.abs(rng.normal(size=(len(labels), dim)))  # non-negative, like the proxy's ReLU features
    val_emb = np.abs(rng.normal(size=(len(val_labels), dim)))
    probs = torch.tensor(rng.normal(size=(len(labels), num_classes)) * 1.5).softmax(1).numpy()
    val_probs = torch.tensor(rng.normal(size=(len(val_labels), num_classes)) * 1.5).softmax(1).numpy()
    return labels, emb, probs, val_labels, val_emb, val_probs


def context_from(labels, emb, probs, val_labels, val_emb, val_probs, **kwargs):
    validation = ValidationOutputs(torch.as_tensor(val_labels), torch.tensor(val_emb, dtype=torch.float32),
                                   torch.tensor(val_probs, dtype=torch.float32))
    return SelectionContext.from_arrays(labels=labels, embeddings=emb, probabilities=probs, validation=validation,
                                        **kwargs)


@pytest.mark.parametrize("balance", [True, False])
def test_matches_plain_loop_reference(balance):
    labels, emb, probs, val_labels, val_emb, val_probs = random_arrays()
    eta = 0.3
    context = context_from(labels, emb, probs, val_labels, val_emb, val_probs, budget=9, balance=balance,
                           num_classes=3)
    selection = Glister(eta=eta).select(context)
    if balance:  # one greedy per class, on that class's validation points
        groups = [(list(idx), int(b), list(np.flatnonzero(val_labels == labels[idx[0]])))
                  for idx, b in context.groups()]
    else:
        groups = [(list(range(len(labels))), 9, list(range(len(val_labels))))]
    chosen, scores = reference_greedy(emb, probs, labels, val_emb, val_probs, val_labels, groups, eta)
    assert selection.indices.tolist() == chosen
    np.testing.assert_allclose(selection.scores, [scores[i] for i in range(len(labels))], rtol=1e-4, atol=1e-6)


def planted(s=3.0):
    """One class, C = 2. Candidates 0 and 1 are near-duplicates aimed at validation cluster 1 (six poorly
    fit points), candidate 2 at cluster 2 (three points), candidate 3 is already well fit."""
    emb = np.array([[s, 0.0], [0.99 * s, 0.0], [0.0, s], [s, s]])
    probs = np.array([[0.2, 0.8], [0.2, 0.8], [0.2, 0.8], [0.97, 0.03]])
    val_emb = np.array([[s, 0.0]] * 6 + [[0.0, s]] * 3)
    val_probs = np.array([[0.2, 0.8]] * 6 + [[0.3, 0.7]] * 3)
    return np.zeros(4, dtype=np.int64), emb, probs, np.zeros(9, dtype=np.int64), val_emb, val_probs


def test_the_update_changes_the_choice_relative_to_a_static_top_k():
    labels, emb, probs, val_labels, val_emb, val_probs = planted()
    eta = 0.2
    context = context_from(labels, emb, probs, val_labels, val_emb, val_probs, budget=2, num_classes=2)
    selection = Glister(eta=eta).select(context)
    groups = [([0, 1, 2, 3], 2, list(range(9)))]
    chosen, scores = reference_greedy(emb, probs, labels, val_emb, val_probs, val_labels, groups, eta)
    # static: the initial gains (no pick made yet) rank the two duplicates first
    _, initial = reference_greedy(emb, probs, labels, val_emb, val_probs, val_labels, [([0, 1, 2, 3], 0, groups[0][2])],
                                  eta)
    static = sorted(sorted(initial, key=lambda i: -initial[i])[:2])
    assert static == [0, 1]
    # after taking candidate 0, cluster 1 is fit and candidate 2 helps more than the duplicate
    assert chosen == [0, 2] and selection.indices.tolist() == chosen
    assert scores[2] > scores[1] and initial[1] > initial[2]
    np.testing.assert_allclose(selection.scores, [scores[i] for i in range(4)], rtol=1e-4)


def test_at_the_default_step_the_update_changes_the_picks_where_features_are_large():
    """At eta = 1e-3 a pick moves the validation logits by eta (1 + <h, h_v>) e: with embeddings of norm 50,
    about 2, enough to make the duplicate of the first pick worth less than the point serving the other
    cluster. With norm-3 embeddings (or up to 30, checked by hand) the same step changes no pick."""
    labels, emb, probs, val_labels, val_emb, val_probs = planted(s=50.0)
    context = context_from(labels, emb, probs, val_labels, val_emb, val_probs, budget=2, num_classes=2)
    assert Glister().eta == 1e-3
    groups = [([0, 1, 2, 3], 2, list(range(9)))]
    _, initial = reference_greedy(emb, probs, labels, val_emb, val_probs, val_labels, [([0, 1, 2, 3], 0, groups[0][2])],
                                  1e-3)
    assert sorted(sorted(initial, key=lambda i: -initial[i])[:2]) == [0, 1]  # a static top-k takes both twins
    chosen, _ = reference_greedy(emb, probs, labels, val_emb, val_probs, val_labels, groups, 1e-3)
    assert chosen == [0, 2] and Glister().select(context).indices.tolist() == [0, 2]
    small = context_from(*planted(s=3.0), budget=2, num_classes=2)
    assert Glister().select(small).indices.tolist() == [0, 1]  # small features: the update changes nothing


def test_tiny_step_is_top_k_by_initial_gain():
    labels, emb, probs, val_labels, val_emb, val_probs = planted()
    context = context_from(labels, emb, probs, val_labels, val_emb, val_probs, budget=2, num_classes=2)
    assert Glister(eta=1e-6).select(context).indices.tolist() == [0, 1]


def test_exact_budget_class_budgets_scores_and_determinism():
    first = Glister().select(tiny_context(budget=9, class_budgets=[5, 0, 4], seed=2))
    again = Glister().select(tiny_context(budget=9, class_budgets=[5, 0, 4], seed=2))
    labels = np.repeat(np.arange(3), 12)
    assert np.bincount(labels[first.indices], minlength=3).tolist() == [5, 0, 4]
    np.testing.assert_array_equal(first.indices, again.indices)
    assert first.scores.shape == (36,) and np.isfinite(first.scores).all()
    assert np.any(first.scores[labels == 1] != 0)  # the class with no budget is scored too
    unbalanced = Glister().select(tiny_context(budget=7, balance=False))
    assert len(unbalanced.indices) == 7 and len(np.unique(unbalanced.indices)) == 7


def test_eta_must_be_positive():
    with pytest.raises(UserError, match="eta must be positive"):  # when it is built, before any data loads
        create_selector("glister", {"eta": "0"})
