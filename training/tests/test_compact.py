"""compact: a fused graph rewritten as one Gemm/MatMul per source between
nonlinearities, with the stage branches stacked, must compute the same
function (to float rounding) in fewer nodes."""
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from av1part_train.compact import CompactError, compact_bundle, compact_model, max_output_diff
from av1part_train.reference import ReferenceBundle

ONNX = Path(__file__).resolve().parents[2] / "onnx"


def _model(nodes, inits, inputs, outputs):
    g = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _run(m, feed):
    import onnxruntime as ort
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, feed)


def _branchy_model(rng):
    """x [N, 6] -> h = relu(x W0 + b0); two branches of the same form on h,
    each relu((h + h A_i) W_i + c_i) then a Softmax over (a reshape, a transpose, a
    pooling MatMul of) it, and a residual stage that only adds."""
    f = lambda *s: rng.standard_normal(s).astype(np.float32)
    inits = {"W0": f(6, 8), "b0": f(8), "shape": np.array([-1, 2, 4], np.int64), "flat12": np.array([-1, 12], np.int64)}
    nodes = [helper.make_node("MatMul", ["x", "W0"], ["m0"]), helper.make_node("Add", ["m0", "b0"], ["a0"]),
             helper.make_node("Relu", ["a0"], ["h"])]
    outs = []
    for i in range(2):
        inits.update({f"A{i}": f(8, 8), f"Wb{i}": f(8, 5), f"c{i}": f(5), f"P{i}": f(2, 3)})
        nodes += [helper.make_node("MatMul", ["h", f"A{i}"], [f"ha{i}"]),
                  helper.make_node("Add", ["h", f"ha{i}"], [f"r{i}"]),
                  helper.make_node("Gemm", [f"r{i}", f"Wb{i}", f"c{i}"], [f"g{i}"]),
                  helper.make_node("Relu", [f"g{i}"], [f"z{i}"]),
                  helper.make_node("Reshape", [f"r{i}", "shape"], [f"rs{i}"]),               # [N, 2, 4]
                  helper.make_node("Transpose", [f"rs{i}"], [f"rt{i}"], perm=[0, 2, 1]),      # [N, 4, 2]
                  helper.make_node("MatMul", [f"rt{i}", f"P{i}"], [f"rp{i}"]),                # [N, 4, 3]
                  helper.make_node("Reshape", [f"rp{i}", "flat12"], [f"rf{i}"]),           # [N, 12]
                  helper.make_node("Softmax", [f"rf{i}"], [f"out{i}"], axis=-1)]
        outs.append(f"out{i}")
    nodes.append(helper.make_node("Add", ["z0", "z1"], ["zsum"]))   # an affine output of two nonlinearities
    m = _model(nodes, inits, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
               [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["N", 12]) for o in outs]
               + [helper.make_tensor_value_info("zsum", TensorProto.FLOAT, ["N", 5])])
    onnx.checker.check_model(m)
    return m


def test_compacted_graph_computes_the_same_function():
    m = _branchy_model(np.random.default_rng(0))
    c = compact_model(m)
    x = np.random.default_rng(1).standard_normal((7, 6)).astype(np.float32)
    for a, b in zip(_run(m, {"x": x}), _run(c, {"x": x})):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)  # the contract's parity tolerance
    # the two branches of the same form share one batched MatMul ([2, D, D'] weight)
    inits = {t.name: t for t in c.graph.initializer}
    assert any(n.op_type == "MatMul" and n.input[1] in inits and len(inits[n.input[1]].dims) == 3
               and inits[n.input[1]].dims[0] == 2 for n in c.graph.node)
    assert [o.name for o in c.graph.output] == [o.name for o in m.graph.output]


def test_a_wrong_matrix_is_caught_by_the_check():
    """The check compact_bundle relies on can fail: one weight of the compacted
    graph perturbed moves an output."""
    m = _branchy_model(np.random.default_rng(0))
    c = compact_model(m)
    w = next(t for t in c.graph.initializer if len(t.dims) == 2 and t.dims[0] > 1 and t.dims[1] > 1)
    arr = numpy_helper.to_array(w).copy()
    arr.flat[0] += 1.0
    w.CopyFrom(numpy_helper.from_array(arr, w.name))
    assert max(max_output_diff(m, c).values()) > 1e-3


def test_unsupported_graph_is_refused_with_a_message():
    """A product of two per-block tensors is not affine in either: refused, naming the node."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Transpose", ["r"], ["rt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["r", "rt"], ["y"], name="outer"),
             helper.make_node("Relu", ["y"], ["out"])]
    m = _model(nodes, {}, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 1])],
               [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 3, 3])])
    with pytest.raises(CompactError, match="outer"):
        compact_model(m)


def test_compacted_test_fused_bundle_keeps_its_decisions(tmp_path):
    """The shipped fused test bundle (BlockNet, an AB ensemble of two): far fewer
    nodes, the same stage outputs on its golden blocks, a golden set recomputed
    on the same blocks, and a manifest that records the compaction."""
    src = ONNX / "test-fused"
    m = compact_bundle(src, tmp_path / "c")
    before, after = m["training"]["recipe"]["compaction"]["nodes"]
    assert after < before / 2
    g_old = json.loads((src / "golden.json").read_text())
    g_new = json.loads((tmp_path / "c" / "golden.json").read_text())
    assert len(g_new["blocks"]) == len(g_old["blocks"])
    assert [b["partition"] for b in g_new["blocks"]] == [b["partition"] for b in g_old["blocks"]]
    p_old = np.array([b["probabilities"] for b in g_old["blocks"]])
    p_new = np.array([b["probabilities"] for b in g_new["blocks"]])
    assert np.abs(p_old - p_new).max() < 1e-5
    assert [r["skip_below"] for r in g_new.get("skip_runs", [])] == [r["skip_below"] for r in g_old.get("skip_runs", [])]
    r = ReferenceBundle(tmp_path / "c").run_blocks(g_old["blocks"])
    assert np.abs(r.probabilities - p_old).max() < 1e-5


def test_compact_refuses_schema_1_bundles(tmp_path):
    with pytest.raises(CompactError, match="fused"):
        compact_bundle(ONNX / "test-tiny", tmp_path / "c")


def test_committed_test_cells_bundle_is_test_fused_compacted(tmp_path):
    """onnx/test-cells (the plugin's parity tests run it) is what compact makes of
    onnx/test-fused: the same nodes and weight shapes, outputs within float rounding."""
    compact_bundle(ONNX / "test-fused", tmp_path / "c")
    new = onnx.load(str(tmp_path / "c" / "model.onnx"))
    old = onnx.load(str(ONNX / "test-cells" / "model.onnx"))
    assert [n.op_type for n in new.graph.node] == [n.op_type for n in old.graph.node]
    assert sorted(tuple(t.dims) for t in new.graph.initializer) == sorted(tuple(t.dims) for t in old.graph.initializer)
    assert max(max_output_diff(old, new).values()) < 1e-5
    m_new = json.loads((tmp_path / "c" / "manifest.json").read_text())
    m_old = json.loads((ONNX / "test-cells" / "manifest.json").read_text())
    assert m_new["input"] == m_old["input"] and m_new["graph"]["inputs"] == m_old["graph"]["inputs"]


def test_an_op_of_two_inputs_that_is_not_affine_is_refused():
    """A Gather of the block tensor is neither affine here nor a one-input
    nonlinearity that could be re-emitted on its materialised input."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Gather", ["r", "idx"], ["g"], axis=1, name="pick"),
             helper.make_node("Relu", ["g"], ["out"])]
    m = _model(nodes, {"idx": np.array([0, 2], np.int64)},
               [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
               [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 2])])
    with pytest.raises(CompactError, match="pick"):
        compact_model(m)


def test_stacked_softmaxes_keep_their_axis():
    """Two softmaxes of the same form that are not outputs (an ensemble's members)
    are stacked into [2, N, K]; axis=1 of the original [N, K] must stay the class axis."""
    rng = np.random.default_rng(3)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)
    inits = {"W0": f(6, 8), "A0": f(8, 4), "c0": f(4), "A1": f(8, 4), "c1": f(4), "half": np.float32([0.5])}
    nodes = [helper.make_node("MatMul", ["x", "W0"], ["m0"]), helper.make_node("Relu", ["m0"], ["h"])]
    for i in range(2):
        nodes += [helper.make_node("Gemm", ["h", f"A{i}", f"c{i}"], [f"l{i}"]),
                  helper.make_node("Softmax", [f"l{i}"], [f"p{i}"], axis=1)]
    nodes += [helper.make_node("Add", ["p0", "p1"], ["ps"]), helper.make_node("Mul", ["ps", "half"], ["out"])]
    m = _model(nodes, inits, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
               [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4])])
    c = compact_model(m)
    assert any(n.op_type == "Softmax" for n in c.graph.node)
    inits_c = {t.name: t for t in c.graph.initializer}
    assert any(n.op_type == "MatMul" and n.input[1] in inits_c and len(inits_c[n.input[1]].dims) == 3
               for n in c.graph.node)
    x = np.random.default_rng(4).standard_normal((5, 6)).astype(np.float32)
    # the contract's parity tolerance
    np.testing.assert_allclose(_run(m, {"x": x})[0], _run(c, {"x": x})[0], rtol=1e-5, atol=1e-5)
