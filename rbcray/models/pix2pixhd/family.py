"""pix2pixHD as a generator family (registered in :mod:`rbcray.models.registry`)."""

from rbcray.models.pix2pixhd.checkpoint import MODEL_FORMAT
from rbcray.models.registry import register_family
from rbcray.models.translator import ModelFamily

FAMILY = register_family(
    ModelFamily(
        name="pix2pixhd",
        title="pix2pixHD",
        model_format=MODEL_FORMAT,
        config="rbcray.train.pix2pixhd:Pix2PixHDTrainConfig",
        trainer="rbcray.train.pix2pixhd_loop:Trainer",
        export="rbcray.train.pix2pixhd_export:export_model",
        translator="rbcray.models.pix2pixhd.inference:Pix2PixHDTranslator",
        format_metrics="rbcray.train.pix2pixhd:format_metrics",
        preflight="rbcray.train.pix2pixhd:check_vgg",
        presets={"demo": "pix2pixhd_demo.yaml", "paper": "pix2pixhd_paper.yaml"},
    )
)
