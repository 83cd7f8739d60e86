"""onnxruntime's own transformer fusions for the graphs it runs from the cache (:mod:`bertlstm.core.graph_cache`):
each layer's attention as one ``Attention`` node, bias and GELU as one ``BiasGelu``, residual and layer norm as
one ``SkipLayerNormalization``. They are onnxruntime's operators (its ``com.microsoft`` domain), so only the
cache's graphs get them; ``bertlstm export`` writes standard ONNX.

onnxruntime's fusion recognises attention by its mask: transformers 5 builds the padding mask through a
vectorised graph that it does not know. So the mask is first rewritten into the classic BERT form, from the
``attention_mask`` input: ``(1 - mask) * -10000`` added to the scaled scores, as (batch, 1, 1, sequence). That
is the same mask for an encoder that only hides padding; the exporter checks the fused graph against PyTorch,
and a graph that differs (another kind of mask) is not used.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)
MASK = "bertlstm_padding_mask"  # the rewritten mask's name in the graph


def fuse_graph(source: Path, target: Path, heads: int, hidden: int) -> bool:
    """``source`` with onnxruntime's transformer fusions, written to ``target`` (``heads`` attention heads of
    ``hidden`` features); False, and nothing written, where its attention is not in the form they need."""
    import onnx  # the exporter's own dependency
    from onnxruntime.transformers import optimizer  # onnxruntime's own tooling, for its own operators

    model = onnx.load(str(source))
    inputs = [copy.deepcopy(i) for i in model.graph.input]
    if not _classic_mask(model):
        return False
    fused = optimizer.optimize_model(model, model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0)
    counts = fused.get_fused_operator_statistics()
    if counts.get("Attention", 0) == 0:
        logger.debug("onnxruntime fused no attention in the graph")
        return False
    logger.debug(f"onnxruntime's fusions: {counts}")
    # the fusions drop inputs the graph does not read (a tagger's word ends where words are their first piece);
    # a predictor's batches still carry them
    del fused.model.graph.input[:]
    fused.model.graph.input.extend(inputs)
    fused.save_model_to_file(str(target))
    return True


def _classic_mask(model: Any) -> bool:
    """Rewrite every attention's mask, in place, as ``(1 - attention_mask) * -10000``, and its scaling of the
    scores as a division: the pattern onnxruntime's BERT attention fusion matches. False (the graph left as it
    was) where the scores are not ``Softmax(MatMul * scale + mask)`` with one mask shared by every layer."""
    from onnx import numpy_helper  # the exporter's own dependency

    graph = model.graph
    if not any(i.name == "attention_mask" for i in graph.input):
        return False
    made_by = {out: node for node in graph.node for out in node.output}
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    found: list[tuple[Any, Any, np.ndarray]] = []  # (Add of scores and mask, Mul that scales the scores, scale)
    for softmax in (n for n in graph.node if n.op_type == "Softmax"):
        add = made_by.get(softmax.input[0])
        if add is None or add.op_type != "Add":
            return False
        scale = made_by.get(add.input[0])
        if scale is None or scale.op_type != "Mul" or constants.get(scale.input[1]) is None:
            return False
        found.append((add, scale, constants[scale.input[1]]))
    if not found or len({add.input[1] for add, _, _ in found}) != 1 or any(v.size != 1 for *_, v in found):
        return False
    new, steps = _padding_mask()
    for i, (add, scale, value) in enumerate(found):
        add.input[1] = MASK
        new.append(numpy_helper.from_array((1.0 / value).astype(np.float32), f"{MASK}_divisor{i}"))
        scale.op_type, scale.input[1] = "Div", f"{MASK}_divisor{i}"
    graph.initializer.extend(new)
    for position, node in enumerate(steps):  # first: they read only a graph input
        graph.node.insert(position, node)
    return True


def _padding_mask() -> tuple[list[Any], list[Any]]:
    """The initializers and nodes that make :data:`MASK` from the ``attention_mask`` input: (batch, sequence) ->
    (batch, 1, 1, sequence), 0 where a piece is real and -10000 where it is padding."""
    from onnx import TensorProto, helper, numpy_helper  # the exporter's own dependency

    constants = [
        numpy_helper.from_array(np.array([1], np.int64), f"{MASK}_axis1"),
        numpy_helper.from_array(np.array([2], np.int64), f"{MASK}_axis2"),
        numpy_helper.from_array(np.array(1.0, np.float32), f"{MASK}_one"),
        numpy_helper.from_array(np.array(-10000.0, np.float32), f"{MASK}_low"),
    ]
    nodes = [
        helper.make_node("Unsqueeze", ["attention_mask", f"{MASK}_axis1"], [f"{MASK}_1"]),
        helper.make_node("Unsqueeze", [f"{MASK}_1", f"{MASK}_axis2"], [f"{MASK}_2"]),
        helper.make_node("Cast", [f"{MASK}_2"], [f"{MASK}_float"], to=TensorProto.FLOAT),
        helper.make_node("Sub", [f"{MASK}_one", f"{MASK}_float"], [f"{MASK}_hidden"]),
        helper.make_node("Mul", [f"{MASK}_hidden", f"{MASK}_low"], [MASK]),
    ]
    return constants, nodes
