"""coreset-bench: how accurate and how robust are models trained on coresets chosen by each method?"""

__version__ = "0.2.0"
