from sb3_qmp.mtsac.policies import MlpPolicy, MultiTaskSACPolicy
from sb3_qmp.separated.separated import Separated

__all__ = ["MlpPolicy", "MultiTaskSACPolicy", "Separated"]
