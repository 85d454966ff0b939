"""pix2pixHD (Wang et al. 2018) as used by Bailo et al. 2019 (Sec. 4.2) for mask -> smear translation.

Modules: :mod:`.networks` (G1, G2, multi-scale D, encoder E; registered in the model registry),
:mod:`.inputs` (one-hot labels, boundary maps, instance pooling), :mod:`.losses` (GAN, feature
matching, VGG19), :mod:`.model` (config + generator side), :mod:`.checkpoint` (checkpoint files,
final model folder), :mod:`.styles` (per-class K-means style clusters), :mod:`.inference`
(:class:`~rbcray.models.pix2pixhd.inference.Pix2PixHDTranslator`, the generation engine's API).
"""

import os as _os

# Idle OpenMP threads otherwise spin; on a shared or oversubscribed CPU (Ray workers, CI) that makes
# every conv up to 100x slower. Only effective when set before torch is first imported.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
