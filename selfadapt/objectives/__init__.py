"""Training objectives: cross-entropy, SAT and the noisy-label baselines."""
from selfadapt.objectives.base import LogitLoss, Objective, StepOutput
from selfadapt.objectives.baselines import (EarlyLearningRegularization, GeneralizedCrossEntropy,
                                            HardBootstrapping, LabelSmoothing, Mixup, SoftBootstrapping,
                                            SymmetricCrossEntropy)
from selfadapt.objectives.coteaching import CoTeaching
from selfadapt.objectives.registry import OBJECTIVES, ObjectiveContext, build_objective, sat_loss_of
from selfadapt.objectives.sat import CrossEntropy, LabelIssues, SelfAdaptiveTraining, width_scaled

__all__ = ["CoTeaching", "CrossEntropy", "EarlyLearningRegularization", "GeneralizedCrossEntropy",
           "HardBootstrapping", "LabelIssues", "LabelSmoothing", "LogitLoss", "Mixup", "OBJECTIVES", "Objective",
           "ObjectiveContext", "SelfAdaptiveTraining", "SoftBootstrapping", "StepOutput", "SymmetricCrossEntropy",
           "build_objective", "sat_loss_of", "width_scaled"]
