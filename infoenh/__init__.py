"""InfoEnh: information-bottleneck filtering and optimal-transport alignment for multimodal
sentiment analysis (Xie et al., LREC-COLING 2024), as read by the InfoEnh book.

Submodules (one job each):

- :mod:`infoenh.ot`       entropic optimal transport (batched log-domain Sinkhorn, cosine cost)
- :mod:`infoenh.fib`      feature information bottleneck (projection, top-k pooling, gate/mask)
- :mod:`infoenh.infonce`  sentiment-aware InfoNCE between unfiltered and filtered features
- :mod:`infoenh.fia`      feature information alignment (OT between all ordered modality pairs)
- :mod:`infoenh.module`   :class:`InfoEnh`, the plug-in module (FIB then FIA)
"""

__version__ = "0.1.0"

from .module import InfoEnh, InfoEnhOutput  # noqa: E402
