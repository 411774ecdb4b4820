from sb3_qmp.mtsac.mtsac import MultiTaskSAC
from sb3_qmp.mtsac.policies import MlpPolicy, MultiTaskSACPolicy

__all__ = ["MlpPolicy", "MultiTaskSAC", "MultiTaskSACPolicy"]
