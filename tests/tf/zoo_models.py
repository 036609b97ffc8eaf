"""The model zoo: common Keras architectures and model shapes, random seeded weights, small inputs.

Each case builds a real Keras model (no download: ``weights=None``) whose
normalization layers get non-identity statistics, as a trained model has
(an identity BatchNorm folds to nothing and would hide a wrong fold), and
whose outputs are logits or other non-collapsed values
(``classifier_activation=None``), so an output that went flat cannot pass
for a match.  ``tests/tf/test_zoo.py`` sends every case through the TF path
and the ONNX path and compares against the Keras model itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SEED = 7
VOCAB = 50
STEPS = 12


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], Any]
    image: bool = False  # an image classifier: INT8 too, gated on correlation
    formats: tuple[str, ...] = ("savedmodel",)  # what the TF path converts: savedmodel and/or keras


def _randomize_normalization(model: Any) -> Any:
    """BatchNorm/LayerNorm (and ConvNeXt's LayerScale) get trained-looking, non-identity parameters."""
    import keras

    rng = np.random.default_rng(SEED)
    for layer in _all_layers(model):
        weights = layer.get_weights()
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma_beta = [w for w in weights[:-2]]
            mean, var = weights[-2:]
            new = [
                rng.uniform(0.5, 1.5, w.shape) if i == 0 and layer.scale else rng.normal(0, 0.1, w.shape)
                for i, w in enumerate(gamma_beta)
            ]
            new += [rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape)]
            layer.set_weights([w.astype("float32") for w in new])
        elif isinstance(layer, keras.layers.LayerNormalization) or type(layer).__name__ == "LayerScale":
            new = [
                rng.uniform(0.5, 1.5, w.shape) if i == 0 else rng.normal(0, 0.1, w.shape) for i, w in enumerate(weights)
            ]
            layer.set_weights([w.astype("float32") for w in new])
    return model


def _all_layers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(_all_layers(layer))
        for attr in ("forward_layer", "backward_layer"):
            if hasattr(layer, attr):
                out.append(getattr(layer, attr))
    return out


def _application(name: str, size: int) -> Callable[[], Any]:
    def build() -> Any:
        import keras

        keras.utils.set_random_seed(SEED)
        cls = getattr(keras.applications, name)
        model = cls(input_shape=(size, size, 3), weights=None, classes=10, classifier_activation=None)
        return _randomize_normalization(model)

    return build


def _rnn(kind: str) -> Callable[[], Any]:
    def build() -> Any:
        import keras
        from keras import layers

        keras.utils.set_random_seed(SEED)
        inp = keras.Input((STEPS,), dtype="int32", name="tokens")
        embed = keras.initializers.RandomNormal(stddev=1.0, seed=SEED)  # signals well above float noise
        h = layers.Embedding(VOCAB, 16, embeddings_initializer=embed, name="embed")(inp)
        if kind == "lstm":
            h = layers.LSTM(16, name="lstm")(h)
        elif kind == "gru":
            h = layers.GRU(16, name="gru")(h)
        elif kind == "bidirectional":
            h = layers.Bidirectional(layers.LSTM(8, return_sequences=True), name="bilstm")(h)
            h = layers.Bidirectional(layers.GRU(8), name="bigru")(h)
        else:  # stacked
            h = layers.LSTM(12, return_sequences=True, name="lstm_1")(h)
            h = layers.LSTM(12, return_sequences=True, name="lstm_2")(h)
            h = layers.GRU(8, name="gru_3")(h)
        out = layers.Dense(4, name="logits")(h)
        return keras.Model(inp, out, name=kind)

    return build


def _transformer() -> Any:
    """One Transformer encoder block with a padding mask: two inputs, tokens and mask."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(SEED)
    tokens = keras.Input((STEPS,), dtype="int32", name="tokens")
    mask = keras.Input((STEPS,), dtype="float32", name="mask")
    h = layers.Embedding(VOCAB, 32, name="embed")(tokens)
    attention_mask = keras.ops.expand_dims(mask, 1)  # [batch, 1, steps]: every query sees the unmasked keys
    a = layers.MultiHeadAttention(num_heads=4, key_dim=8, name="attention")(h, h, attention_mask=attention_mask)
    h = layers.LayerNormalization(name="norm_1")(h + a)
    f = layers.Dense(64, activation="gelu", name="ffn_1")(h)
    h = layers.LayerNormalization(name="norm_2")(h + layers.Dense(32, name="ffn_2")(f))
    h = layers.GlobalAveragePooling1D(name="pool")(h)
    out = layers.Dense(5, name="logits")(h)
    return _randomize_normalization(keras.Model([tokens, mask], out, name="transformer"))


def _mask(rng: np.random.Generator, n: int) -> np.ndarray:
    m = (rng.random((n, STEPS)) > 0.3).astype(np.float32)
    m[:, 0] = 1.0  # every sample keeps one token
    return m


def _two_heads() -> Any:
    import keras
    from keras import layers

    keras.utils.set_random_seed(SEED)
    inp = keras.Input((24, 24, 3), name="image")
    h = layers.Conv2D(16, 3, strides=2, use_bias=False, name="conv")(inp)
    h = layers.BatchNormalization(name="bn")(h)
    h = layers.Activation("swish", name="swish")(h)
    h = layers.GlobalAveragePooling2D(name="pool")(h)
    logits = layers.Dense(6, name="class_logits")(h)
    box = layers.Dense(4, name="box")(h)
    return _randomize_normalization(keras.Model(inp, {"class_logits": logits, "box": box}, name="two_heads"))


def _grouped_conv() -> Any:
    """ConvNeXt's pattern, small: Keras 3 runs a grouped Conv2D as an XLA-compiled function call."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(SEED)
    inp = keras.Input((16, 16, 8), name="image")
    h = layers.Conv2D(8, 3, padding="same", groups=8, name="depthwise_conv")(inp)
    h = layers.LayerNormalization(epsilon=1e-6, name="norm")(h)
    h = layers.Conv2D(16, 3, padding="same", groups=4, activation="gelu", name="grouped_conv")(h)
    h = layers.GlobalAveragePooling2D(name="pool")(h)
    out = layers.Dense(5, name="logits")(h)
    return _randomize_normalization(keras.Model(inp, out, name="grouped_conv"))


def _dynamic_hw() -> Any:
    import keras
    from keras import layers

    keras.utils.set_random_seed(SEED)
    inp = keras.Input((None, None, 3), name="image")
    h = layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv_1")(inp)
    h = layers.BatchNormalization(name="bn_1")(h)
    h = layers.ReLU(name="relu")(h)
    h = layers.DepthwiseConv2D(3, strides=2, padding="same", name="dw")(h)
    h = layers.GlobalAveragePooling2D(name="pool")(h)
    out = layers.Dense(7, name="logits")(h)
    return _randomize_normalization(keras.Model(inp, out, name="dynamic_hw"))


CASES = {
    c.name: c
    for c in (
        Case("efficientnetb0", _application("EfficientNetB0", 32), True, ("savedmodel", "keras")),
        Case("efficientnetv2b0", _application("EfficientNetV2B0", 32), True, ("savedmodel", "keras")),
        Case("mobilenetv2", _application("MobileNetV2", 32), True),
        Case("mobilenetv3small", _application("MobileNetV3Small", 32), True),
        Case("densenet121", _application("DenseNet121", 32), True),
        Case("inceptionv3", _application("InceptionV3", 75), True),
        Case("xception", _application("Xception", 71), True),
        Case("resnet50v2", _application("ResNet50V2", 32), True),
        Case("convnexttiny", _application("ConvNeXtTiny", 32), True),
        Case("nasnetmobile", _application("NASNetMobile", 32), True),
        Case("lstm", _rnn("lstm")),
        Case("gru", _rnn("gru")),
        Case("bidirectional", _rnn("bidirectional")),
        Case("stacked_rnn", _rnn("stacked")),
        Case("transformer", _transformer),
        Case("two_heads", _two_heads),
        Case("grouped_conv", _grouped_conv),
        Case("dynamic_hw", _dynamic_hw),
    )
}


def sample_inputs(model: Any, n: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """Seeded inputs for ``model``, keyed by its input names (tokens, masks, images by their shapes)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for t in model.inputs:
        name = t.name
        if name == "tokens":
            out[name] = rng.integers(1, VOCAB, (n, STEPS)).astype(np.int32)
        elif name == "mask":
            out[name] = _mask(rng, n)
        else:
            # Pixel-like values (the applications rescale 0..255 themselves); 20x20 where H, W are free.
            dims = [20 if d is None else int(d) for d in t.shape[1:]]
            out[name] = (rng.random((n, *dims)) * 255).astype(np.float32)
    return out


def keras_outputs(model: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The Keras model's own answer, keyed like the exported signature (``output_0`` or the dict keys)."""
    args = [feeds[t.name] for t in model.inputs]
    result = model(args if len(args) > 1 else args[0], training=False)
    if isinstance(result, dict):
        return {k: np.asarray(v) for k, v in result.items()}
    return {"output_0": np.asarray(result)}


def write_case(case: Case, directory: Path) -> tuple[Any, dict[str, Path]]:
    """Build ``case`` and write it in its formats; return the model and {format: path}."""
    model = case.build()
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if "savedmodel" in case.formats:
        paths["savedmodel"] = directory / "saved_model"
        model.export(str(paths["savedmodel"]), verbose=False)
    if "keras" in case.formats:
        paths["keras"] = directory / "model.keras"
        model.save(str(paths["keras"]))
    return model, paths
