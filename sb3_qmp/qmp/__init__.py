from sb3_qmp.mtsac.policies import MlpPolicy, MultiTaskSACPolicy
from sb3_qmp.qmp.qmp import QMP
from sb3_qmp.qmp.variants import QMPDomain, QMPUniform

__all__ = ["QMP", "MlpPolicy", "MultiTaskSACPolicy", "QMPDomain", "QMPUniform"]
