"""Per-point scores read off the shared proxy's training dynamics (`benchmark.selection.TrainingDynamics`),
shared by the selectors that rank by them (forgetting, aum, ccs, d2_pruning): computed once, tested once."""

from __future__ import annotations

import numpy as np
import torch

from benchmark.selection import TrainingDynamics

SCORES = ("aum", "forgetting", "el2n")


def forgetting_counts(correct: torch.Tensor) -> torch.Tensor:
    """Toneva et al.'s forgetting events: correct-to-incorrect transitions per column of an E x N matrix. A
    point never classified correctly counts E, more than any learnt point can reach (the paper treats it as
    forgotten infinitely often)."""
    correct = correct.bool()
    forgotten = (correct[:-1] & ~correct[1:]).sum(0).to(torch.float64)
    return torch.where(correct.any(0), forgotten, torch.full_like(forgotten, float(correct.shape[0])))


def area_under_margin(margin: torch.Tensor) -> torch.Tensor:
    """Pleiss et al.'s AUM: the mean over epochs of the labelled logit minus the largest other. Low = hard."""
    return margin.to(torch.float64).mean(0)


def label_error(loss: torch.Tensor) -> torch.Tensor:
    """The mean over epochs of 1 - exp(-loss) = 1 - p_y: the proxy records losses, not whole softmaxes, so this
    stands in for EL2N = ||p - onehot(y)||, which it bounds: sqrt(C / (C - 1)) (1 - p_y) <= EL2N <= sqrt(2)
    (1 - p_y). High = hard."""
    return (1.0 - torch.exp(-loss.to(torch.float64))).mean(0)


def importance(dynamics: TrainingDynamics, score: str) -> np.ndarray:
    """One of SCORES for every pool point, as its paper orients it."""
    if score == "aum":
        values = area_under_margin(dynamics.margin)
    elif score == "forgetting":
        values = forgetting_counts(dynamics.correct)
    elif score == "el2n":
        values = label_error(dynamics.loss)
    else:
        raise ValueError(f"unknown score {score!r}; known: {', '.join(SCORES)}")
    return values.cpu().numpy()


def difficulty(values: np.ndarray, score: str) -> np.ndarray:
    """An importance score oriented so that higher is harder (AUM is low for hard points)."""
    return -values if score == "aum" else values
