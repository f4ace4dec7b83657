"""The scikit-learn transformer that pretrains AnatCL with skorch and embeds brain images."""

from ._embedder import AnatCLEmbedder
from ._net import ContrastiveNet, NonFiniteLossError

__all__ = ["AnatCLEmbedder", "ContrastiveNet", "NonFiniteLossError"]
