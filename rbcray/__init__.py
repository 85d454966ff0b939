"""rbcray: synthetic, fully annotated blood-smear datasets on Ray.

Pipeline stages, one sub-package each (Bailo et al., "Red blood cell image generation for data
augmentation using Conditional GANs", CVPR-W 2019):

- ``rbcray.data``      real data: dataset registry, mask formats, derived instance masks, statistics (Sec. 3)
- ``rbcray.synth``     synthetic instance masks: shape bank, adhesive placement, palette colouring (Sec. 4.1)
- ``rbcray.models``    networks (pix2pixHD, downstream FCN-8s / Faster R-CNN / DCAN) (Sec. 4.2, 5)
- ``rbcray.train``     training loops (plain library; Ray Train wraps them)
- ``rbcray.generate``  the generation engine: masks -> images -> shards
- ``rbcray.evaluate``  downstream evaluation (Sec. 5, Table 2)
- ``rbcray.distributed`` the thin Ray adapters, all in one place
"""

import os as _os

__version__ = "0.1.0"

# OpenMP threads that spin while waiting steal the cores of every other process on a busy node
# (Ray actors, data workers); passive waiting costs nothing on an idle one. Must be set before
# torch loads its OpenMP runtime, hence here.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
