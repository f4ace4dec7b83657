"""The rows of the paper's tables: each pretraining method as AnatCLEmbedder parameters."""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["PAPER_METHODS"]

#: Read-only ``{row name: AnatCLEmbedder parameters}`` in the paper's row order (Tables 2-5):
#: SimCLR, L1 age regression, y-Aware, ExpW, then AnatCL with the global (G3) and local (L3)
#: descriptor over the three measures. Combine with the training parameters, e.g.
#: ``AnatCLEmbedder(**PAPER_METHODS["AnatCL-G3"], max_epochs=300)``.
PAPER_METHODS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "SimCLR": MappingProxyType({"method": "simclr"}),
        "L1": MappingProxyType({"method": "l1"}),
        "y-Aware": MappingProxyType({"method": "yaware"}),
        "ExpW": MappingProxyType({"method": "expw"}),
        "AnatCL-G3": MappingProxyType({"method": "anatcl", "descriptor": "global"}),
        "AnatCL-L3": MappingProxyType({"method": "anatcl", "descriptor": "local"}),
    }
)
