"""unet-wgangp as a generator family (registered in :mod:`rbcray.models.registry`)."""

from rbcray.models.registry import register_family
from rbcray.models.translator import ModelFamily
from rbcray.models.unet_wgangp.config import MODEL_FORMAT

FAMILY = register_family(
    ModelFamily(
        name="unet-wgangp",
        title="U-Net WGAN-GP",
        model_format=MODEL_FORMAT,
        config="rbcray.models.unet_wgangp.config:UNetWGANGPTrainConfig",
        trainer="rbcray.train.unet_wgangp:Trainer",
        export="rbcray.train.unet_wgangp:export_model",
        translator="rbcray.models.unet_wgangp.inference:UNetTranslator",
        format_metrics="rbcray.train.unet_wgangp:format_metrics",
        presets={"demo": "unet_wgangp_demo.yaml", "paper": "unet_wgangp_paper.yaml"},
    )
)
