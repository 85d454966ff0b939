"""A U-Net generator against a WGAN-GP critic for mask -> smear translation (the ``unet-wgangp`` family).

After Chen et al., "Generative Adversarial U-Net for Domain-free Medical Image Augmentation": a
U-Net generator (encoder-decoder with skip connections, batch renormalisation, LeakyReLU 0.01)
trained against a Wasserstein critic with gradient penalty (Gulrajani et al. 2017: lambda = 10,
Adam lr 1e-4, betas (0, 0.9), layer norm instead of batch norm in the critic, per-sample uniform
interpolation, penalty (||grad||_2 - 1)^2, ``n_critic`` critic steps per generator step). Here it
is a conditional translator with pix2pixHD's inputs (one-hot classes + instance boundary map, plus
a seeded noise map) and a critic that scores (mask, image) pairs.

Modules: :mod:`.config` (frozen configs), :mod:`.networks` (G, critic, batch renormalisation;
registered in the model registry), :mod:`.losses` (gradient penalty, R1), :mod:`.inference`
(:class:`~rbcray.models.unet_wgangp.inference.UNetTranslator`), :mod:`.family` (registration).
Training: :mod:`rbcray.train.unet_wgangp`.
"""

import os as _os

# see rbcray.models.pix2pixhd: idle OpenMP threads spin on a shared CPU
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
