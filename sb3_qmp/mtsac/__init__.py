from sb3_qmp.mtsac.mixture_policy import MixturePolicy
from sb3_qmp.mtsac.mtsac import MultiTaskSAC
from sb3_qmp.mtsac.policies import MlpPolicy, MultiTaskSACPolicy

__all__ = ["MixturePolicy", "MlpPolicy", "MultiTaskSAC", "MultiTaskSACPolicy"]
