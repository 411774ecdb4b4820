from sb3_qmp.mtsac.policies import MlpPolicy, MultiTaskSACPolicy
from sb3_qmp.qmp.qmp import QMP

__all__ = ["QMP", "MlpPolicy", "MultiTaskSACPolicy"]
