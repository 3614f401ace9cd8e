"""selfadapt: self-adaptive training (SAT) for PyTorch.

>>> from selfadapt import SelfAdaptiveTraining
"""
from selfadapt.errors import SelfAdaptError
from selfadapt.indexed import IndexedDataset
from selfadapt.label_issues import LabelIssues
from selfadapt.objectives.sat import SelfAdaptiveTraining, width_scaled
from selfadapt.targets import TargetStore

__version__ = "0.1.0"
__all__ = ["IndexedDataset", "LabelIssues", "SelfAdaptError", "SelfAdaptiveTraining", "TargetStore", "width_scaled"]
