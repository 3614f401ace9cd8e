"""Training objectives: cross-entropy, SAT and the noisy-label baselines."""
from selfadapt.objectives.base import LogitLoss, Objective, StepOutput
from selfadapt.objectives.registry import OBJECTIVES, ObjectiveContext, build_objective, sat_loss_of
from selfadapt.objectives.sat import CrossEntropy, LabelIssues, SelfAdaptiveTraining, width_scaled

__all__ = ["CrossEntropy", "LabelIssues", "LogitLoss", "OBJECTIVES", "Objective", "ObjectiveContext",
           "SelfAdaptiveTraining", "StepOutput", "build_objective", "sat_loss_of", "width_scaled"]
