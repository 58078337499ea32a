"""The study this benchmark grew from (Harshvardhan & Sharma, "Framework for Testing Adversarial Robustness of
Coreset Selection Paradigms for Data-Efficient Machine Learning", Boston University): the methods it compared,
which the standard board runs first, and its Table 1 and conclusions as data, for the leaderboard's side by side."""

import json
from pathlib import Path

STUDY_METHODS = ("random", "cal", "contextual_diversity", "glister", "grand", "graphcut", "moderate_ds")

STUDY_TITLE = ("Framework for Testing Adversarial Robustness of Coreset Selection Paradigms for Data-Efficient "
               "Machine Learning")
STUDY_AUTHORS = "G. M. Harshvardhan and H. Sharma (Boston University)"
STUDY_URL = "https://github.com/97harsh/CoreAdv"
TABLE1 = Path(__file__).resolve().parent / "study-table1.json"


def study_table() -> dict:
    """The study's Table 1 (clean accuracy, %, per method and fraction), its setup and its conclusions, as shipped
    with the package (`study-table1.json`, from ../shared/study/table1.json)."""
    return json.loads(TABLE1.read_text(encoding="utf-8"))
