"""Faster R-CNN cell detector (Bailo et al. Sec. 5, Table 2 "Faster R-CNN"; Ren et al. 2015).

torchvision's Faster R-CNN with a ResNet-FPN backbone: ResNet-50 by default, ResNet-101 as in
the paper, ResNet-18/34 for CPU-sized demos. Trained from scratch (batch norm left trainable)
or from files the user provides: a whole-detector state dict (``weights``) or a torchvision
ResNet state dict for the backbone (``backbone_weights``, then batch norm is frozen as torchvision
does for pretrained backbones). Nothing is ever downloaded.

Images are not resized by the detector: :func:`set_native_size` makes torchvision's transform
keep each batch's size, so the data config alone decides the scale cells are seen at.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from torchvision.models import resnet
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from rbcray.config import check, from_dict
from rbcray.models.fcn import load_into, load_state_file
from rbcray.models.registry import register_model

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")


@dataclass(frozen=True)
class DetectorConfig:
    """Faster R-CNN hyper-parameters (defaults: ResNet-50-FPN, one cell class)."""

    backbone: str = "resnet50"
    #: foreground classes (background is added): 1 = red blood cell
    num_classes: int = 1
    #: one anchor size per FPN level (5 levels); cells of ~25-50 px want 16..256
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    #: ResNet stages left trainable (5 = all; from scratch everything must train)
    trainable_layers: int = 5
    #: FPN width and box-head MLP width (torchvision: 256 and 1024; smaller for CPU demos,
    #: where the RoI head dominates the cost)
    fpn_channels: int = 256
    representation_size: int = 1024
    detections_per_img: int = 300
    box_score_thresh: float = 0.05
    rpn_batch_size_per_image: int = 256
    box_batch_size_per_image: int = 512
    weights: str | None = None
    backbone_weights: str | None = None

    def __post_init__(self) -> None:
        check(self.backbone in BACKBONES, f"detector backbone {self.backbone!r} is not one of {list(BACKBONES)}")
        check(self.num_classes >= 1, f"detector num_classes must be >= 1, got {self.num_classes}")
        check(len(self.anchor_sizes) == 5, f"detector anchor_sizes needs 5 sizes (one per FPN level), got {len(self.anchor_sizes)}")
        check(all(s > 0 for s in self.anchor_sizes), "detector anchor_sizes must be positive")
        check(0 <= self.trainable_layers <= 5, f"detector trainable_layers must be in 0..5, got {self.trainable_layers}")
        check(self.detections_per_img >= 1, "detector detections_per_img must be >= 1")
        check(self.fpn_channels >= 1 and self.representation_size >= 1, "detector fpn_channels / representation_size must be >= 1")


def _resnet_fpn(cfg: DetectorConfig) -> BackboneWithFPN:
    """ResNet body + FPN of width ``cfg.fpn_channels`` (torchvision's layout, narrower if asked)."""
    pretrained = cfg.backbone_weights is not None
    # torchvision freezes batch norm only for pretrained backbones; from scratch it must learn.
    body = getattr(resnet, cfg.backbone)(weights=None, norm_layer=FrozenBatchNorm2d if pretrained else nn.BatchNorm2d)
    if cfg.backbone_weights:
        load_into(body, load_state_file(cfg.backbone_weights), cfg.backbone_weights)
    n_train = cfg.trainable_layers if pretrained else 5
    train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:n_train] + (["bn1"] if n_train == 5 else [])
    for name, p in body.named_parameters():
        if not any(name.startswith(t) for t in train):
            p.requires_grad_(False)
    c2 = body.inplanes // 8
    return BackboneWithFPN(
        body,
        return_layers={"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
        in_channels_list=[c2 * 2 ** i for i in range(4)],
        out_channels=cfg.fpn_channels,
        extra_blocks=LastLevelMaxPool(),
    )


def build_detector(cfg: DetectorConfig) -> FasterRCNN:
    """Faster R-CNN for ``cfg`` (weights loaded when the config names files)."""
    backbone = _resnet_fpn(cfg)
    anchors = AnchorGenerator(
        sizes=tuple((int(s),) for s in cfg.anchor_sizes),
        aspect_ratios=(tuple(float(a) for a in cfg.aspect_ratios),) * len(cfg.anchor_sizes),
    )
    model = FasterRCNN(
        backbone,
        rpn_anchor_generator=anchors,
        box_head=TwoMLPHead(cfg.fpn_channels * 7 * 7, cfg.representation_size),
        box_predictor=FastRCNNPredictor(cfg.representation_size, cfg.num_classes + 1),
        box_detections_per_img=cfg.detections_per_img,
        box_score_thresh=cfg.box_score_thresh,
        rpn_batch_size_per_image=cfg.rpn_batch_size_per_image,
        box_batch_size_per_image=cfg.box_batch_size_per_image,
    )
    if cfg.weights:
        load_into(model, load_state_file(cfg.weights), cfg.weights)
    return model


def set_native_size(model: FasterRCNN, height: int, width: int) -> None:
    """Make the detector's transform keep (height, width) images at their size (scale 1)."""
    model.transform.min_size = (int(min(height, width)),)
    model.transform.max_size = int(max(height, width))


@register_model("faster_rcnn")
def build_faster_rcnn(**kwargs: object) -> FasterRCNN:
    """Faster R-CNN from keyword arguments of :class:`DetectorConfig` (validated)."""
    return build_detector(from_dict(DetectorConfig, dict(kwargs), where="faster_rcnn"))
