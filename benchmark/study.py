"""The study this benchmark grew from (Harshvardhan & Sharma, "Framework for Testing Adversarial Robustness of
Coreset Selection Paradigms for Data-Efficient Machine Learning", Boston University): the methods it compared,
which the standard board runs first."""

STUDY_METHODS = ("random", "cal", "contextual_diversity", "glister", "grand", "graphcut", "moderate_ds")
