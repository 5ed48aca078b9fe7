"""The graph each file is converted from, how it takes pixels, and the metadata it carries."""

from __future__ import annotations

from dataclasses import dataclass

from deeplab_edge import __version__
from deeplab_edge.errors import UserError
from deeplab_edge.runtime.metadata import ModelMetadata

from .formats import ExportFormat
from .spec import ModelSpec


def export_graph(model, info, *, input_size: tuple[int, int] | None = None):
    """The graph to convert: ours rebuilt with exact folding and native dilation (trained weights mapped
    over); a model built elsewhere as it is, given a fixed input size when its own is dynamic."""
    from deeplab_edge.model.deeplab import rebuild
    if info is not None and info.extra.get("qat"):  # already the export graph, with fake quantisation
        if input_size is not None and tuple(input_size) != tuple(info.config.input_size):
            raise UserError("A quantisation-aware checkpoint exports at the size it was fine-tuned at "
                            f"({info.config.input_size[0]}x{info.config.input_size[1]}); drop `input_size`.")
        return model
    if info is not None:
        return rebuild(model, info.config, fold_atrous=True, native_dilation=True, input_size=input_size)
    own = tuple(model.input_shape[1:3])
    if None in own:
        if input_size is None:
            raise UserError(f"The model takes inputs of any size {model.input_shape}; pass `input_size` H W to "
                            "export it at a fixed size.")
        from deeplab_edge.model._keras import keras

        inp = keras.Input((*input_size, model.input_shape[-1]), name="image")
        return keras.Model(inp, model(inp), name=model.name)
    if input_size is not None and tuple(input_size) != own:
        raise UserError(f"The model was built for {own[0]}x{own[1]} inputs and was not trained by deeplab-edge, so "
                        f"it cannot be rebuilt at {input_size[0]}x{input_size[1]}; drop `input_size`.")
    return model


LOGITS_AT = ("input", "stride")
PIXELS = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # the mean/std of a file that normalises its uint8 input itself


@dataclass(frozen=True)
class PixelPlan:
    """How one file takes raw pixels: a normalising first op, its int8 input's quantisation, or neither."""

    first_op: bool = False
    input_quantization: tuple[float, float] | None = None  # (mean, std) realised by the 8-bit input
    normalisation: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # what the metadata says


def pixel_plan(fmt: ExportFormat, spec: ModelSpec, pixel_input: bool) -> PixelPlan:
    """TFLite files take pixels when `pixel_input`: full-int8 through its uint8 input's quantisation when one
    mean/std serves all channels (round(mean): 127.5 -> 128, half a grey level), else a first op
    (cast, mul, add) that the int8 converter quantises too. ONNX files keep normalised float32 inputs:
    onnxruntime ran the int8 file with the first op 51% slower (14.8 vs 9.8 ms, AVX2 EPYC). 16x8 files keep
    float32 inputs (their activations are int16; a uint8 input has no 16x8 requantisation)."""
    if not pixel_input or fmt.backend != "tflite" or fmt.precision == "int16x8":
        return PixelPlan()
    if fmt.precision == "int8" and len(set(spec.mean)) == 1 and len(set(spec.std)) == 1:
        mean, std = float(round(spec.mean[0])), spec.std[0]
        return PixelPlan(False, (mean, std), ((mean,) * 3, (std,) * 3))
    return PixelPlan(True, (0.0, 1.0) if fmt.precision == "int8" else None, PIXELS)


def make_metadata(info, spec: ModelSpec, input_size, fmt: ExportFormat, head: str, *,
                  normalisation: tuple[tuple[float, ...], tuple[float, ...]] | None = None) -> ModelMetadata:
    mean, std = normalisation or (spec.mean, spec.std)
    return ModelMetadata(
        class_names=spec.class_names, input_size=tuple(input_size), mean=mean, std=std,
        layout="NHWC", output="labels" if head == "labels" else spec.output, threshold=spec.threshold,
        preset=(info.preset if info else ""), variant=fmt.name, version=__version__,
        config=(info.config.to_dict() if info else {}),
    )
