"""DeepLabV3+ configurations as data, and the named presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from deeplab_edge.errors import UserError, unknown_name_error


@dataclass(frozen=True)
class DeepLabConfig:
    """Everything that defines a DeepLabV3+ graph.

    `atrous_rates` are given at output stride 16 and doubled at output stride 8, as in the paper.
    `separable` switches ASPP and decoder 3x3 convs to atrous separable convs (the paper's edge design).
    `fold_atrous` applies the exact simplification of atrous branches whose rate covers the feature map.
    `native_dilation` emits dilated convs as one op (no SPACE_TO_BATCH_ND wrappers in TFLite).
    """

    backbone: str = "mobilenetv2"
    alpha: float = 1.0
    input_size: tuple[int, int] = (320, 320)
    num_classes: int = 21
    output_stride: int = 16
    atrous_rates: tuple[int, ...] = (6, 12, 18)
    separable: bool = True
    width: int = 256
    low_level_channels: int = 48
    fold_atrous: bool = True
    native_dilation: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "atrous_rates", tuple(int(v) for v in self.atrous_rates))
        positive = {"`width`": self.width, "`num_classes`": self.num_classes,
                    "`low_level_channels`": self.low_level_channels, "`output_stride`": self.output_stride}
        for flag, value in positive.items():
            if value < 1:
                raise UserError(f"{flag} must be at least 1; received {value}.")
        if not self.alpha > 0:
            raise UserError(f"`alpha` (backbone width multiplier) must be positive, e.g. 0.35 or 1.0; received {self.alpha}.")
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise UserError(f"`input_size` must be two positive numbers H W; received {self.input_size}.")
        if any(r < 1 for r in self.atrous_rates):
            raise UserError(f"`atrous_rates` must be positive integers (e.g. 6 12 18), or none for no atrous "
                            f"branches; received {list(self.atrous_rates)}.")

    @property
    def rates(self) -> tuple[int, ...]:
        """Atrous rates at this output stride (rates at stride 16 times 16 / output_stride)."""
        return tuple(r * 16 // self.output_stride for r in self.atrous_rates)

    @property
    def feature_hw(self) -> tuple[int, int]:
        return (self.input_size[0] // self.output_stride, self.input_size[1] // self.output_stride)

    def replace(self, **changes) -> DeepLabConfig:
        """A copy with `changes`; a None value keeps the current field (CLI defaults never override)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise UserError(f"Unknown config field(s) {sorted(unknown)}; valid: {[f.name for f in dataclasses.fields(self)]}.")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["input_size"] = list(self.input_size)
        d["atrous_rates"] = list(self.atrous_rates)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DeepLabConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# The normalisation of the built-in presets (training from scratch): (pixel - 127.5) / 127.5.
DEFAULT_MEAN = (127.5, 127.5, 127.5)
DEFAULT_STD = (127.5, 127.5, 127.5)
CAFFE_MEAN = (123.68, 116.779, 103.939)  # ImageNet's RGB means, keras.applications.resnet50.preprocess_input


@dataclass(frozen=True)
class Preset:
    """A named configuration and its input normalisation, (pixel - mean) / std on 0..255 RGB. The
    normalisation flows into training, the checkpoint's info, calibration, verification and metadata."""

    name: str
    description: str
    config: DeepLabConfig
    tags: tuple[str, ...] = field(default_factory=tuple)
    mean: tuple[float, float, float] = DEFAULT_MEAN
    std: tuple[float, float, float] = DEFAULT_STD


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "resnet50",
            "Classic DeepLabV3+: ResNet50, 512 px, output stride 16, plain 3x3 convs, width 256.",
            DeepLabConfig(backbone="resnet50", input_size=(512, 512), separable=False, width=256),
            ("classic",),
            CAFFE_MEAN,  # keras.applications' ResNet50 ImageNet weights: caffe style (BGR in the file; the
            (1.0, 1.0, 1.0),  # loader turns its first conv to RGB)
        ),
        Preset(
            "mobilenetv2",
            "Edge: MobileNetV2 alpha 1.0, 320 px, atrous separable ASPP and decoder, width 256.",
            DeepLabConfig(backbone="mobilenetv2", alpha=1.0, input_size=(320, 320), separable=True, width=256),
            ("edge",),
        ),
        Preset(
            "edge",
            "Edge, small: MobileNetV2 alpha 0.35, 256 px, atrous separable ASPP and decoder, width 128. "
            "The demo's preset.",
            DeepLabConfig(backbone="mobilenetv2", alpha=0.35, input_size=(256, 256), separable=True, width=128),
            ("edge",),
        ),
        Preset(
            "tiny",
            "Unit tests: MobileNetV2 alpha 0.35, 64 px, separable, width 32.",
            DeepLabConfig(backbone="mobilenetv2", alpha=0.35, input_size=(64, 64), separable=True, width=32,
                          low_level_channels=16),
            ("test",),
        ),
    )
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise unknown_name_error("preset", name, PRESETS) from None


def list_presets() -> list[Preset]:
    return list(PRESETS.values())
