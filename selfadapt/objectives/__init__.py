"""Training objectives: cross-entropy, SAT and the noisy-label baselines, each registered as a method.

Importing this package registers every method (see :mod:`selfadapt.objectives.registry`).
"""
from selfadapt.label_issues import LabelIssues
from selfadapt.objectives.base import Batch, LogitLoss, Objective, Progress, StepOutput
from selfadapt.objectives.baselines import (EarlyLearningRegularization, GeneralizedCrossEntropy,
                                            HardBootstrapping, LabelSmoothing, Mixup, SoftBootstrapping,
                                            SymmetricCrossEntropy)
from selfadapt.objectives.coteaching import CoTeaching
from selfadapt.objectives.registry import METHODS, Method, MethodContext, build_objective, get_method, register
from selfadapt.objectives.sat import CrossEntropy, SelfAdaptiveTraining, width_scaled
from selfadapt.objectives.selective import DeepGamblers, SATSelective, SelectiveNet

__all__ = ["Batch", "CoTeaching", "CrossEntropy", "DeepGamblers", "EarlyLearningRegularization",
           "GeneralizedCrossEntropy", "HardBootstrapping", "LabelIssues", "LabelSmoothing", "LogitLoss", "METHODS",
           "Method", "MethodContext", "Mixup", "Objective", "Progress", "SATSelective", "SelectiveNet",
           "SelfAdaptiveTraining", "SoftBootstrapping", "StepOutput", "SymmetricCrossEntropy", "build_objective",
           "get_method", "register", "width_scaled"]
