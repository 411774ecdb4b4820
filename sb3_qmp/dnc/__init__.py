from sb3_qmp.dnc.dnc import DnC, DnCReg, gaussian_kl, pairwise_policy_kl
from sb3_qmp.mtsac.policies import MlpPolicy, MultiTaskSACPolicy

__all__ = ["DnC", "DnCReg", "MlpPolicy", "MultiTaskSACPolicy", "gaussian_kl", "pairwise_policy_kl"]
