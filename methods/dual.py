"""DUAL: Cho, Shin, Kang & Yun, "Lightweight Dataset Pruning without Full Training via Example Difficulty and
Prediction Uncertainty", ICML 2025 (https://arxiv.org/abs/2502.06905; code: github.com/behaapyy/dual-pruning).

The DUAL (Difficulty and Uncertainty-Aware Lightweight) score looks at p_t, the probability a network gives an
example's label at epoch t, early in training, over sliding windows of J epochs among the first T:

    DUAL(x) = 1 / (T - J + 1) * sum_{k=1}^{T-J+1} std(p_k, ..., p_{k+J-1}) * (1 - mean(p_k, ..., p_{k+J-1})),

high for examples whose prediction still swings (uncertainty) while it is mostly wrong (difficulty). Here p_t is
exp(-loss) from the shared proxy's training dynamics (`context.training_dynamics()`, recorded from the training
forward passes, one row per epoch). The std is the sample std (1 / (J - 1)), as the authors' code computes it
(torch.std), which also multiplies by a constant 10; constant factors change neither the order nor the sampling.

At high pruning rates keeping the top scores fails (too many hard examples, as CCS showed), so the paper samples
by a Beta distribution whose mode moves towards easy examples as the pruning rate r grows (ratio-adaptive
sampling). With mu_i the mean of p_t over the first T epochs, mu_anchor the mean mu of the 10 highest-DUAL
examples, and c_D (`c_d`, default 4),

    beta = 15 (1 - mu_anchor) (1 - r^c_D),    alpha = 16 - beta,

and the coreset is drawn without replacement with probabilities proportional to Beta(mu_i; alpha, beta) * DUAL(x_i)
(the pdf of the Beta distribution at mu_i, times the score). These are the definitions of the authors' code
(exp_cifar/importance_evaluation.py: `dual`, exp_cifar/data_subset.py: `beta_sampling`); the paper's text could
not be read here beyond its abstract, so its exact notation is not quoted.

Paper numbers (CIFAR-10, ResNet-18, test accuracy): at 90 % pruning, DUAL about 87.1 % against Random about
83.7 % (also D2 about 86.1 %, CCS about 85.9 %), read off the paper's Figure 1 as reproduced in the authors'
repository (main_plot.png); the paper's table values could not be read here.

Choices:
- Windows and epochs: `window` J = 10 and `epochs` T = 30, the authors' CIFAR setting (30 of 200 epochs), both
  capped at the epochs the proxy recorded (10 in the standard preset, 3 in cifar10-cpu): with 10 epochs there
  is one window of 10. Those proxy epochs run a whole short cosine schedule, so they reach further into
  training than the first 30 of 200 epochs do. At least 2 recorded epochs are needed (a std needs two values).
- `sampling`: "beta" (default) is the ratio-adaptive sampling at every pruning rate (the authors' commands use it
  at 70 % and 90 % alike); "top" keeps the highest DUAL scores (ties to the lower pool index). r is the run's
  pruning rate, 1 - budget / pool size.
- mu is clipped to [1e-6, 1 - 1e-6]: a probability of exactly 1 (float32 rounding of a tiny loss) would give
  an infinite pdf when beta < 1. Sampling without replacement is done by exponential keys (Efraimidis-Spirakis:
  the budget smallest -log(u) / w), which draws successively proportional to the weights, the distribution of
  numpy's choice(p=..., replace=False) that the authors use; points of weight 0 (score 0) are drawn, uniformly,
  only when fewer points than the budget have a positive weight. Randomness comes from `context.rng`.
- Groups: per class with the class budgets when balanced, each class with its own anchor (its 10 highest
  scores); the paper samples over the whole dataset, as `--unbalanced` does.
- The authors' README example passes the index file of the sorted scores (`dual_mask_T30.npy`) as the score
  file, so its sampling weights would multiply the pdf by sample indices; the score is used here.
DeepCore has no DUAL.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch

from benchmark.errors import UserError
from benchmark.selection import Selection, SelectionContext, Selector, keep_highest, register

ANCHORS = 10  # the highest-scoring examples whose mean prediction sets the Beta distribution
CLIP = 1e-6  # mean predictions are kept in [CLIP, 1 - CLIP]


def dual_scores(probabilities: torch.Tensor, window: int) -> torch.Tensor:
    """DUAL per column of a T x N matrix of label probabilities, with windows of `window` epochs."""
    windows = probabilities.to(torch.float64).unfold(0, window, 1)  # (T - J + 1) x N x J
    return (windows.std(dim=2) * (1.0 - windows.mean(dim=2))).mean(0)


def beta_parameters(anchor: float, pruning_rate: float, c_d: float) -> tuple[float, float]:
    """(alpha, beta) of the sampling distribution: beta = 15 (1 - anchor) (1 - r^c_D), alpha = 16 - beta."""
    beta = 15.0 * (1.0 - anchor) * (1.0 - pruning_rate ** c_d)
    return 16.0 - beta, beta


def beta_pdf(x: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    log_norm = math.lgamma(alpha) + math.lgamma(beta) - math.lgamma(alpha + beta)
    return np.exp((alpha - 1.0) * np.log(x) + (beta - 1.0) * np.log1p(-x) - log_norm)


@register
@dataclass(frozen=True)
class DUAL(Selector):
    name = "dual"
    paper = ("Cho, Shin, Kang & Yun. Lightweight Dataset Pruning without Full Training via Example Difficulty and "
             "Prediction Uncertainty. ICML 2025")
    url = "https://arxiv.org/abs/2502.06905"

    window: int = 10  # J, epochs per window
    epochs: int = 30  # T, the first epochs used (capped at the proxy's)
    c_d: float = 4.0  # c_D of the Beta sampling
    sampling: str = "beta"  # "beta" (ratio-adaptive Beta sampling) or "top" (highest scores)

    def __post_init__(self):
        if self.window < 2 or self.epochs < 2:
            raise ValueError(f"window and epochs must be at least 2, got {self.window} and {self.epochs}")
        if self.c_d <= 0:
            raise ValueError(f"c_d must be positive, got {self.c_d}")
        if self.sampling not in ("beta", "top"):
            raise ValueError(f"sampling must be 'beta' or 'top', got {self.sampling!r}")

    def select(self, context: SelectionContext) -> Selection:
        dynamics = context.training_dynamics()
        epochs = min(self.epochs, dynamics.epochs)
        if epochs < 2:
            raise UserError(f"dual needs the proxy's training dynamics of at least 2 epochs, got {dynamics.epochs}")
        probabilities = torch.exp(-dynamics.loss[:epochs].to(torch.float64))
        scores = dual_scores(probabilities, min(self.window, epochs)).cpu().numpy()
        if self.sampling == "top":
            return keep_highest(context, scores)
        means = probabilities.mean(0).clamp(CLIP, 1.0 - CLIP).cpu().numpy()
        pruning_rate = 1.0 - context.budget / context.pool_size
        chosen = []
        for indices, budget in context.groups():
            top = indices[np.lexsort((indices, -scores[indices]))[:ANCHORS]]
            alpha, beta = beta_parameters(float(means[top].mean()), pruning_rate, self.c_d)
            weights = beta_pdf(means[indices], alpha, beta) * scores[indices]
            chosen.append(indices[self._draw(weights, budget, context.rng)])
        return Selection(indices=np.sort(np.concatenate(chosen)).astype(np.int64), scores=scores)

    @staticmethod
    def _draw(weights: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
        """`budget` positions drawn without replacement, successively proportional to `weights`: the smallest
        exponential keys -log(u) / w; weight-0 positions after all others, in random order."""
        exponential = -np.log1p(-rng.random(len(weights)))  # -log(1 - u) for u in [0, 1): finite
        positive = weights > 0
        keys = np.where(positive, exponential / np.where(positive, weights, 1.0), exponential)
        return np.lexsort((keys, ~positive))[:budget]
