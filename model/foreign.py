"""Models built elsewhere: Keras 3 files (keras-hub included), SavedModel folders, told apart by content.

Our own model code is tf-keras; the Keras that `pip install tensorflow` brings is Keras 3, and most TF
pipelines write SavedModels. `load_foreign` loads such a model (safe mode unless asked otherwise) and
wraps it as a one-layer tf-keras model at a static input size, so the rest of the export pipeline
(calibration, conversion, verification, metadata) takes it as it takes ours. What the model itself says
about its input (a keras-hub preprocessor's scale and offset, a leading Rescaling layer) and its output
travels with it as a `ModelSource`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from deeplab_edge.errors import UserError

from .model_file import config_modules, custom_objects_from, load_error


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model built elsewhere.

    input_size: the static (H, W) to convert at (default: the size the model declares).
    output: the output to use when a SavedModel signature has several.
    custom_objects: a Python file whose classes (or its `CUSTOM_OBJECTS` dict) the model needs.
    unsafe: allow deserialising Python code (Lambda layers); for files you trust only.
    """

    input_size: tuple[int, int] | None = None
    output: str | None = None
    custom_objects: str | None = None
    unsafe: bool = False


@dataclass(frozen=True)
class ModelSource:
    """What a model built elsewhere is and what it says about itself."""

    kind: str  # "keras3" or "savedmodel"
    framework: str  # e.g. "Keras 3.15.1", "keras-hub 0.32.0 DeepLabV3ImageSegmenter"
    output_kind: str  # "logits" or "probabilities"
    mean: tuple[float, float, float] | None = None  # on 0..255 pixels, when the model says it
    std: tuple[float, float, float] | None = None
    normalisation_from: str = ""  # where mean/std came from
    declared_size: tuple[int, int] | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"kind": self.kind, "framework": self.framework, "output_kind": self.output_kind,
                "mean": list(self.mean) if self.mean else None, "std": list(self.std) if self.std else None,
                "normalisation_from": self.normalisation_from,
                "declared_size": list(self.declared_size) if self.declared_size else None, "notes": list(self.notes)}



def load_foreign(path: str | Path, kind: str, options: LoadOptions | None = None):
    """(tf-keras wrapper model at a static size, ModelSource) for a Keras 3 file or a SavedModel folder."""
    options = options or LoadOptions()
    if kind == "keras3":
        fn, variables, source, in_shape, dtype, name = _load_keras3(Path(path), options)
    elif kind == "savedmodel":
        fn, variables, source, in_shape, dtype, name = _load_savedmodel(Path(path), options)
    else:
        raise ValueError(f"load_foreign takes keras3 or savedmodel; received {kind!r}")
    size = _static_size(Path(path), in_shape, source.declared_size, options.input_size)
    model = _wrap(fn, variables, source, (*size, int(in_shape[-1])), dtype, name)
    if kind == "savedmodel":  # a signature's last op is not at hand: what its values are says it
        from dataclasses import replace

        kind_seen = probe_output_kind(model)
        source = replace(source, output_kind=kind_seen,
                         notes=(*source.notes, f"output kind {kind_seen} (read from its values on a random input)"))
        model.get_layer("foreign_model").source = source
    return model, source


def _static_size(path: Path, shape, declared, wanted) -> tuple[int, int]:
    """The (H, W) to convert at: --input-size, else the size the model declares; a static model dimension
    that --input-size contradicts is refused."""
    own = tuple(None if d is None else int(d) for d in shape[1:3])
    if wanted is not None:
        wanted = tuple(int(v) for v in wanted)
        if None not in own and own != wanted:
            raise UserError(f"{path} was built for {own[0]}x{own[1]} inputs; it cannot be exported at "
                            f"{wanted[0]}x{wanted[1]}. Drop `input_size`.")
        return wanted
    if None not in own:
        return own
    if declared is not None:
        return tuple(declared)
    raise UserError(f"{path} takes inputs of any size {tuple(shape)} and declares no image size; pass "
                    "`input_size` H W to export it at a fixed size.")


def _wrap(fn, variables, source: ModelSource, shape: tuple[int, int, int], dtype: str, name: str):
    from ._keras import keras, tf

    class ForeignCall(keras.layers.Layer):
        """The foreign model's inference call as one tf-keras layer (its variables tracked)."""

        def __init__(self, **kwargs):
            super().__init__(trainable=False, **kwargs)
            self.foreign_variables = list(variables)
            self.source = source

        def call(self, x):
            y = fn(tf.cast(x, dtype) if dtype != "float32" else x)
            return tf.cast(y, "float32") if y.dtype != tf.float32 else y

    inp = keras.Input(shape, name="image")
    out = ForeignCall(name="foreign_model")(inp)
    if len(out.shape) != 4:
        raise UserError(f"The model outputs shape {tuple(out.shape)}; export takes a segmentation model whose "
                        "output is (N, H, W, classes) scores (or (N, H, W, 1) for a foreground score).")
    return keras.Model(inp, out, name=_safe_name(name))


def _safe_name(name: str) -> str:
    out = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)
    return out or "model"


def source_of(model) -> ModelSource | None:
    """The `ModelSource` of a model from `load_foreign`, else None (ours, or a tf-keras model)."""
    for layer in getattr(model, "layers", ()):
        src = getattr(layer, "source", None)
        if isinstance(src, ModelSource):
            return src
        inner = source_of(layer) if hasattr(layer, "layers") else None
        if inner is not None:
            return inner
    return None


# --- Keras 3 -------------------------------------------------------------------------------------


def _keras3():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    from ._keras import tf  # noqa: F401  (TensorFlow first, with its log lines held back)

    if keras.backend.backend() != "tensorflow":
        raise UserError(f"Keras 3 runs on the {keras.backend.backend()!r} backend here (KERAS_BACKEND); export "
                        "needs TensorFlow: unset KERAS_BACKEND or set it to tensorflow.")
    return keras



def _load_keras3(path: Path, options: LoadOptions):
    keras = _keras3()
    modules = config_modules(path)
    hub = None
    if "keras_hub" in modules:
        try:
            import keras_hub as hub
        except ImportError:
            raise UserError(f"{path} is a keras-hub model; install keras-hub (pip install keras-hub) to load it."
                            ) from None
    custom = custom_objects_from(options.custom_objects)
    try:
        from deeplab_edge.logs import held_stderr

        with held_stderr():
            model = keras.saving.load_model(path, custom_objects=custom or None, compile=False,
                                            safe_mode=not options.unsafe)
    except (ValueError, TypeError, KeyError, AttributeError, ImportError, OSError) as e:
        raise load_error(path, e, unsafe=options.unsafe) from None
    if len(model.inputs) != 1:
        raise UserError(f"{path} has {len(model.inputs)} inputs; a segmentation model takes one image input.")
    if len(model.outputs) != 1:
        raise UserError(f"{path} has {len(model.outputs)} outputs; export takes one (N, H, W, C) score output.")
    framework = f"Keras {keras.__version__}"
    mean = std = None
    notes: list[str] = []
    where, declared = "", None
    converter = getattr(getattr(model, "preprocessor", None), "image_converter", None)
    if hub is not None:
        framework = f"keras-hub {hub.__version__} {type(model).__name__} on Keras {keras.__version__}"
    if converter is not None:
        mean, std, declared = _image_converter(converter)
        where = f"its preprocessor's image converter ({type(converter).__name__})"
    else:
        mean, std, where = _leading_rescaling(model)
    kind = _keras3_output_kind(model)

    def call(x):
        return model(x, training=False)

    variables = [_tf_variable(v) for v in model.variables]
    source = ModelSource("keras3", framework, kind, mean, std, where, declared, tuple(notes))
    return call, variables, source, tuple(model.inputs[0].shape), str(model.inputs[0].dtype), model.name


def _tf_variable(v):
    value = getattr(v, "value", v)
    import tensorflow as tf

    return value if isinstance(value, tf.Variable) else getattr(v, "_value", value)


def _image_converter(converter):
    """(mean, std, image size) from a keras-hub ImageConverter: x * scale + offset on 0..255 pixels."""
    import numpy as np

    scale, offset = getattr(converter, "scale", None), getattr(converter, "offset", None)
    mean = std = None
    if scale is not None or offset is not None:
        s = np.broadcast_to(np.asarray(1.0 if scale is None else scale, np.float64).reshape(-1), 3)
        o = np.broadcast_to(np.asarray(0.0 if offset is None else offset, np.float64).reshape(-1), 3)
        std = tuple(float(v) for v in 1.0 / s)
        mean = tuple(float(v) for v in -o / s)
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    size = getattr(converter, "image_size", None)
    return mean, std, (tuple(int(v) for v in size) if size is not None and None not in tuple(size) else None)


def _leading_rescaling(model):
    """mean/std when the model's first layer is a Rescaling of 0..255 pixels (scale 1/255 or 1/127.5)."""
    layers = [la for la in model.layers if type(la).__name__ != "InputLayer"]
    if not layers or type(layers[0]).__name__ != "Rescaling":
        return None, None, ""
    import numpy as np

    scale = np.asarray(layers[0].scale, np.float64).reshape(-1)
    if not np.allclose(scale, 1 / 255, rtol=1e-3) and not np.allclose(scale, 1 / 127.5, rtol=1e-3):
        return None, None, ""
    return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), f"its first layer ({layers[0].name}: Rescaling of 0..255 pixels)"


def _keras3_output_kind(model) -> str:
    """The kind of a Keras 3 model's output: its last layer's, looking into a nested model (keras-hub)."""
    layer = model.layers[-1]
    if hasattr(layer, "layers") and layer.layers:
        return _keras3_output_kind(layer)
    return layer_output_kind(layer)


def layer_output_kind(layer) -> str:
    """"probabilities" when a Keras layer (tf-keras or Keras 3) applies softmax or sigmoid, else "logits"."""
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", "") if activation is not None else ""
    kind = type(layer).__name__
    if name in ("softmax", "sigmoid") or kind == "Softmax" or (kind == "Activation" and name in ("softmax", "sigmoid")):
        return "probabilities"
    return "logits"


# --- SavedModel ----------------------------------------------------------------------------------


def _load_savedmodel(path: Path, options: LoadOptions):
    from deeplab_edge.logs import held_stderr

    from ._keras import tf

    try:
        with held_stderr():
            loaded = tf.saved_model.load(str(path))
    except Exception as e:  # TensorFlow raises many kinds for a damaged folder
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise UserError(f"Cannot load the SavedModel {path}: {first}") from None
    sigs = dict(getattr(loaded, "signatures", {}) or {})
    if not sigs:
        raise UserError(f"The SavedModel {path} has no serving signature; save it with a signature "
                        "(`model.export(DIR)` or `tf.saved_model.save(obj, DIR, signatures=...)`).")
    sig_name = "serving_default" if "serving_default" in sigs else sorted(sigs)[0]
    sig = sigs[sig_name]
    _, kwargs = sig.structured_input_signature
    if len(kwargs) != 1:
        raise UserError(f"The SavedModel {path} signature {sig_name!r} takes {len(kwargs)} inputs "
                        f"({', '.join(sorted(kwargs))}); a segmentation model takes one image input.")
    in_name, in_spec = next(iter(kwargs.items()))
    if in_spec.shape.rank != 4:
        raise UserError(f"The SavedModel {path} input {in_name!r} has shape {in_spec.shape}; a segmentation model "
                        "takes (N, H, W, 3) images.")
    if in_spec.shape[0] is not None:
        raise UserError(f"The SavedModel {path} input {in_name!r} has a fixed batch of {in_spec.shape[0]}; save it "
                        "with a dynamic batch dimension (None).")
    outputs = sig.structured_outputs
    names = sorted(outputs) if isinstance(outputs, dict) else []
    if options.output is not None:
        if options.output not in names:
            from deeplab_edge.errors import did_you_mean

            raise UserError(f"The SavedModel {path} has no output {options.output!r}.{did_you_mean(options.output, names)}"
                            f" Its outputs: {', '.join(names)}.")
        out_name = options.output
    elif len(names) == 1:
        out_name = names[0]
    else:
        raise UserError(f"The SavedModel {path} has {len(names)} outputs ({', '.join(names)}); pass `output` NAME "
                        "with the segmentation scores.")
    def call(x):
        return sig(**{in_name: x})[out_name]

    framework = f"TensorFlow SavedModel (signature {sig_name!r}, output {out_name!r})"
    source = ModelSource("savedmodel", framework, "logits", declared_size=None,
                         notes=(f"SavedModel signature {sig_name!r}: input {in_name!r}, output {out_name!r}",))
    variables = list(sig.variables)
    call.loaded = loaded  # the loaded object owns the functions the signature calls: kept alive with it
    return call, variables, source, tuple(in_spec.shape.as_list()), in_spec.dtype.name, path.name


def probe_output_kind(model) -> str:
    """"probabilities" when the model's outputs on a random input lie in [0, 1] and (several channels) sum to
    1 per pixel, else "logits": for a graph whose last op cannot be read (a SavedModel)."""
    import numpy as np

    x = np.random.default_rng(0).normal(0.0, 1.0, (1, *model.input_shape[1:])).astype(np.float32)
    y = np.asarray(model(x, training=False))
    in_unit = float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    if y.shape[-1] == 1:
        return "probabilities" if in_unit else "logits"
    return "probabilities" if in_unit and np.allclose(y.sum(-1), 1.0, atol=1e-3) else "logits"
