"""Compact a fused bundle's graph: the same function in far fewer ONNX nodes.

Why: at the sizes of BlockNet's fused graphs ONNX Runtime's time goes to
nodes, not arithmetic (BENCHMARKS.md: `fast` runs at 43 % of one core's peak
in frame mode, and a batch-1 `predict_block` spends ~0.4 us per node of 142).
The exported graph keeps PyTorch's structure: every grid convolution sits
between two Reshapes, each Conv-Adapter is seven nodes, each head's pooling
is a Shape/Gather/Concat/Transpose/Reshape/MatMul chain, and the four stage
branches (Stage 2's and Stage 3's adapters, layer4 copies and heads on the
shared trunk) run one after the other.

What: between two nonlinear nodes the graph is affine: Reshapes,
Transposes, MatMuls and Gemms by constant matrices, bias and residual Adds,
the pooling, the Concat with the side features. Each tensor that feeds a
nonlinear node (Relu, Softmax, anything not in ``AFFINE_OPS``) is written as
``sum_s flat(S_s) @ M_s + b`` over the source tensors it reads (graph inputs
and outputs of nonlinear nodes), the matrices composed in float64, and
emitted as one Gemm/MatMul per source (an Add where ``M_s`` is the
identity). Those sums at the same depth that have the same form (the stage
branches) are stacked: one batched MatMul ``[N, D] x [B, D, D']`` or
``[B, N, D] x [B, D, D']`` per layer for all B branches.

Kept as exported: the stem (the nodes between the block input and its first
nonlinearity). As a dense matrix the per-cell patchify would run 16x its
MACs.

The compacted graph has the original's inputs and outputs (names, shapes),
so a bundle's manifest changes only in the graph's hash. The result is
checked against the original on random inputs before it is written
(``compact_bundle``); outputs differ by float rounding only (products of
matrices are formed once instead of applied one after the other).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

AFFINE_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Transpose", "MatMul", "Gemm",
              "Add", "Sub", "Mul", "Div", "Concat", "Neg"}
ELEMENTWISE = {"Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "Selu", "Softplus", "Abs", "Log", "Exp"}
# Inside the stem (copied as exported, up to its first nonlinearity) these also keep the
# stem going: a channel picked by Gather or Slice (the block statistics') is not affine
# but needs no affine form there.
STEM_OPS = AFFINE_OPS | {"Gather", "Slice"}


class CompactError(ValueError):
    pass


@dataclass
class Affine:
    """A per-block tensor of per-block shape ``shape`` as ``sum_s S_s @ M_s + bias``:
    ``terms[s]`` is ``[D_s, *shape]`` (rows: the source's flat per-block index)."""
    shape: tuple
    terms: dict = field(default_factory=dict)
    bias: np.ndarray | None = None

    def bias_or_zero(self) -> np.ndarray:
        return np.zeros(self.shape) if self.bias is None else self.bias


@dataclass
class Source:
    name: str           # tensor name in the new graph
    shape: tuple        # per-block shape (rows of a term's matrix index its flat form)
    level: int
    flat: bool          # the tensor in the new graph is already [N, D] (or [B, N, D] in a group)
    group: "Group | None" = None
    member: int = 0


@dataclass
class Sum:
    """A tensor to materialise: the affine input of one nonlinear node."""
    aff: Affine
    node: object        # the nonlinear onnx NodeProto
    out_name: str       # its output name in the original graph
    level: int = 0
    out_source: Source | None = None


@dataclass
class Group:
    name: str           # [B, N, D] tensor of the barrier outputs
    size: int


def _dims(shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if len(shape) else 1


def _is_identity(m: np.ndarray) -> bool:
    """Whether a term's matrix (rows: the source's flat index) is the identity."""
    d = m.shape[0]
    return m.size == d * d and np.array_equal(m.reshape(d, d), np.eye(d))


def _fold(model):
    """Constant-fold with ONNX Runtime's basic level (standard ONNX ops only)."""
    import onnx
    import onnxruntime as ort
    with tempfile.TemporaryDirectory() as td:
        src, dst = Path(td) / "in.onnx", Path(td) / "folded.onnx"
        onnx.save(model, str(src))
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = str(dst)
        ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
        return onnx.load(str(dst))


def _random_feed(model, n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    feed = {}
    for i in model.graph.input:
        dims = [d.dim_value if d.dim_value > 0 else n for d in i.type.tensor_type.shape.dim]
        dims[0] = n
        feed[i.name] = rng.random(dims, dtype=np.float32)
    return feed


def _all_values(model, feed: dict) -> dict:
    """Every tensor of the graph evaluated on ``feed`` (ONNX's reference evaluator)."""
    from onnx.reference import ReferenceEvaluator
    ev = ReferenceEvaluator(model)
    names = [o for n in model.graph.node for o in n.output if o]
    vals = ev.run(names, feed)
    out = dict(zip(names, vals))
    out.update(feed)
    return out


def _attr(node, name, default=None):
    import onnx
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _bcast_const(c: np.ndarray, shape: tuple) -> np.ndarray:
    """A constant operand of a per-block op, broadcast against ``[1, *shape]``, as ``shape``."""
    full = np.broadcast_to(c.astype(np.float64), np.broadcast_shapes(c.shape, (1,) + tuple(shape)))
    if full.shape[0] != 1 or full.shape[1:] != tuple(shape):
        raise CompactError(f"constant of shape {c.shape} broadcasts the batch against {shape}")
    return full[0]


class _Compactor:
    def __init__(self, model, group: bool = True):
        import onnx
        from onnx import numpy_helper
        self.group = group
        self.onnx = onnx
        self.model = _fold(model)
        g = self.model.graph
        self.consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.inputs = [i.name for i in g.input if i.name not in self.consts]
        self.outputs = [o.name for o in g.output]
        v2 = _all_values(self.model, _random_feed(self.model, 2, 1))
        v3 = _all_values(self.model, _random_feed(self.model, 3, 2))
        self.per_block, self.shape, self.fold = set(self.inputs), {}, {i: 1 for i in self.inputs}
        for i in self.inputs:
            self.shape[i] = tuple(v2[i].shape[1:])
        for node in g.node:
            data_in = [x for x in node.input if x in self.per_block]
            for o in node.output:
                a, b = np.asarray(v2[o]), np.asarray(v3[o])
                # per-block: the first axis is k*N (k = 1, or a batch folded with k rows per block,
                # as in the heads' pooling; row-major, so each block's values stay contiguous)
                k = a.shape[0] // 2 if a.ndim else 0
                if data_in and k and a.shape[0] == 2 * k and b.shape[0] == 3 * k and a.shape[1:] == b.shape[1:]:
                    self.per_block.add(o)
                    self.fold[o] = k
                    self.shape[o] = ((k,) if k > 1 else ()) + tuple(a.shape[1:])
                elif not data_in and node.op_type in ("Constant",):
                    self.consts[o] = a

    # --- the walk -------------------------------------------------------------------------------

    def run(self):
        g = self.model.graph
        self.rep: dict[str, Affine] = {}
        self.verbatim_nodes, self.sums, self.sources = [], [], {}
        self.verbatim: set[str] = set()
        for i in self.inputs:
            s = Source(i, self.shape[i], 0, flat=len(self.shape[i]) == 1)
            self.sources[i] = s
            if len(self.shape[i]) > 1:
                self.verbatim.add(i)        # an image input: its stem is copied as exported
            else:
                self.rep[i] = self._identity(s)
        for node in g.node:
            data_in = [x for x in node.input if x in self.per_block]
            if not data_in or not any(o in self.per_block for o in node.output):
                continue                     # shape arithmetic or constants: not needed any more
            if any(x in self.verbatim for x in data_in):
                self._verbatim(node, data_in)
            elif node.op_type in AFFINE_OPS:
                self.rep[node.output[0]] = self._affine(node)
            else:
                self._barrier(node, data_in)
        for o in self.outputs:
            if o not in self.per_block:
                raise CompactError(f"output {o} does not depend on the inputs")
        return self._emit()

    def _identity(self, s: Source) -> Affine:
        d = _dims(s.shape)
        return Affine(s.shape, {s.name: np.eye(d).reshape((d,) + s.shape)})

    def _verbatim(self, node, data_in):
        others = [x for x in data_in if x not in self.verbatim]
        if others:
            raise CompactError(f"{node.name or node.op_type}: mixes the stem with {others}")
        self.verbatim_nodes.append(node)
        if node.op_type in STEM_OPS:
            for o in node.output:
                self.verbatim.add(o)
        else:                                # the stem's first nonlinearity: a source from here on
            o = node.output[0]
            s = Source(o, self.shape[o], 1, flat=len(self.shape[o]) == 1)
            self.sources[o] = s
            self.rep[o] = self._identity(s)

    def _get(self, name) -> Affine:
        r = self.rep.get(name)
        if r is None:
            raise CompactError(f"tensor {name} has no affine form (unsupported producer)")
        return r

    def _const(self, name) -> np.ndarray:
        if name not in self.consts:
            raise CompactError(f"{name} is neither per-block nor constant")
        return np.asarray(self.consts[name], dtype=np.float64)

    def _map_linear(self, a: Affine, fn, out_shape, bias_fn=None) -> Affine:
        """Apply a per-block linear op ``fn`` (on [rows, *shape] arrays) to every term and the bias."""
        terms = {}
        for s, m in a.terms.items():
            r = fn(m)
            if r.shape[1:] != tuple(out_shape):
                raise CompactError(f"shape {r.shape[1:]} where {out_shape} was expected")
            terms[s] = r
        bias = None
        if a.bias is not None:
            bias = fn(a.bias[None])[0]
        if bias_fn is not None:
            bias = bias_fn(bias)
        return Affine(tuple(out_shape), terms, bias)

    def _sum(self, a: Affine, b: Affine, sign: float, osh, node) -> Affine:
        """a + sign * b of two per-block tensors of the same shape."""
        if a.shape != osh or b.shape != osh:
            raise CompactError(f"{node.name or node.op_type}: broadcasts per-block tensors")
        terms = dict(a.terms)
        for s, m in b.terms.items():
            terms[s] = terms[s] + sign * m if s in terms else sign * m
        bias = None
        if a.bias is not None or b.bias is not None:
            bias = a.bias_or_zero() + sign * b.bias_or_zero()
        return Affine(osh, terms, bias)

    def _affine(self, node) -> Affine:
        op, out = node.op_type, node.output[0]
        osh = self.shape[out]
        ins = list(node.input)
        if op in ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"):
            a = self._get(ins[0])
            return self._map_linear(a, lambda m: m.reshape((m.shape[0],) + osh), osh)
        if op == "Transpose":
            perm = list(_attr(node, "perm"))
            if perm[0] != 0 or self.fold[ins[0]] != self.fold[out]:
                raise CompactError(f"{node.name}: Transpose moves the batch axis")
            # as an op on [rows, *per-block shape]; a folded k axis stays in front
            perm = [0, 1] + [p + 1 for p in perm[1:]] if self.fold[out] > 1 else perm
            return self._map_linear(self._get(ins[0]), lambda m: m.transpose(perm), osh)
        if op == "Neg":
            return self._map_linear(self._get(ins[0]), lambda m: -m, osh)
        if op == "MatMul":
            if ins[0] in self.per_block and ins[1] not in self.per_block:
                w = self._const(ins[1])
                return self._map_linear(self._get(ins[0]), lambda m: np.matmul(m, w), osh)
            if ins[1] in self.per_block and ins[0] not in self.per_block:
                w = self._const(ins[0])
                return self._map_linear(self._get(ins[1]), lambda m: np.matmul(w, m), osh)
            raise CompactError(f"{node.name}: MatMul of two per-block tensors")
        if op == "Gemm":
            if ins[0] not in self.per_block or ins[1] in self.per_block:
                raise CompactError(f"{node.name}: Gemm with a per-block weight")
            if _attr(node, "transA", 0):
                raise CompactError(f"{node.name}: Gemm with transA")
            w = self._const(ins[1])
            if _attr(node, "transB", 0):
                w = w.T
            w = w * float(_attr(node, "alpha", 1.0))
            beta = float(_attr(node, "beta", 1.0))
            if len(ins) > 2 and ins[2] in self.per_block:   # ONNX Runtime fuses MatMul + residual Add so
                prod = self._map_linear(self._get(ins[0]), lambda m: m @ w, osh)
                return self._sum(prod, self._get(ins[2]), beta, osh, node)
            c = _bcast_const(self._const(ins[2]) * beta, osh) if len(ins) > 2 and ins[2] else None
            return self._map_linear(self._get(ins[0]), lambda m: m @ w, osh,
                                    None if c is None else (lambda b: c if b is None else b + c))
        if op in ("Add", "Sub"):
            sign = -1.0 if op == "Sub" else 1.0
            pa, pb = (x in self.per_block for x in ins)
            if pa and pb:
                return self._sum(self._get(ins[0]), self._get(ins[1]), sign, osh, node)
            if pa:
                a, c = self._get(ins[0]), _bcast_const(self._const(ins[1]), osh)
                return Affine(osh, dict(a.terms), a.bias_or_zero() + sign * c)
            b, c = self._get(ins[1]), _bcast_const(self._const(ins[0]), osh)
            return Affine(osh, {s: sign * m for s, m in b.terms.items()}, c + sign * b.bias_or_zero())
        if op in ("Mul", "Div"):
            pa, pb = (x in self.per_block for x in ins)
            if pa and pb:
                raise CompactError(f"{node.name}: {op} of two per-block tensors")
            a = self._get(ins[0] if pa else ins[1])
            c = _bcast_const(self._const(ins[1] if pa else ins[0]), osh)
            if op == "Div":
                if not pa:
                    raise CompactError(f"{node.name}: division by a per-block tensor")
                c = 1.0 / c
            if a.shape != osh:
                raise CompactError(f"{node.name}: {op} broadcasts a per-block tensor")
            return Affine(osh, {s: m * c for s, m in a.terms.items()},
                          None if a.bias is None else a.bias * c)
        if op == "Concat":
            axis = int(_attr(node, "axis"))
            rank = len(osh) + (1 if self.fold[out] == 1 else 0)
            axis = axis + rank if axis < 0 else axis
            if axis == 0:
                raise CompactError(f"{node.name}: Concat along the batch")
            if self.fold[out] > 1:
                axis += 1                   # per-block axes start with the folded k axis
            parts = []
            for x in ins:
                if x in self.per_block:
                    parts.append(self._get(x))
                else:
                    c = self._const(x)
                    if c.shape[0] != 1:
                        raise CompactError(f"{node.name}: Concat of a constant with a batch")
                    parts.append(Affine(tuple(c.shape[1:]), {}, c[0]))
            srcs = {s: self.sources[s] for p in parts for s in p.terms}
            terms = {}
            for s, src in srcs.items():
                d = _dims(src.shape)
                terms[s] = np.concatenate([p.terms.get(s, np.zeros((d,) + p.shape)) for p in parts], axis=axis)
            bias = None
            if any(p.bias is not None for p in parts):
                bias = np.concatenate([p.bias_or_zero() for p in parts], axis=axis - 1)
            return Affine(osh, terms, bias)
        raise CompactError(f"no affine form for {op}")

    def _barrier(self, node, data_in):
        if len([x for x in node.input if x]) != 1 or len(node.output) != 1:
            # a nonlinear node is re-emitted on its one materialised input: it may have no other
            raise CompactError(f"{node.name or node.op_type}: {node.op_type} is neither affine nor a "
                               f"one-input nonlinearity")
        a = self._get(data_in[0])
        lvl = 1 + max((self.sources[s].level for s in a.terms), default=0)
        sm = Sum(a, node, node.output[0], lvl)
        out = Source(node.output[0], self.shape[node.output[0]], lvl, flat=True)
        sm.out_source = out
        self.sums.append(sm)
        self.sources[out.name] = out
        self.rep[out.name] = self._identity(out)

    # --- emission -------------------------------------------------------------------------------

    def _emit(self):
        onnx, helper = self.onnx, self.onnx.helper
        self.nodes, self.inits, self.counter = [], [], 0
        self.flat_cache, self.gather_cache = {}, {}
        used_consts = set()
        for n in self.verbatim_nodes:
            self.nodes.append(n)
            used_consts.update(x for x in n.input if x in self.consts)
        from onnx import numpy_helper
        for name in sorted(used_consts):
            self.inits.append(numpy_helper.from_array(np.asarray(self.consts[name]), name))
        pending = list(self.sums)
        for o in self.outputs:
            if o not in self.sources:         # an affine output (an ensemble's mean of softmaxes)
                a = self._get(o)
                lvl = 1 + max((self.sources[s].level for s in a.terms), default=0)
                sm = Sum(a, None, o, lvl)
                sm.out_source = Source(o, a.shape, lvl, flat=len(a.shape) == 1)
                self.sources[o] = sm.out_source
                pending.append(sm)
        while pending:
            lvl = min(s.level for s in pending)
            here = [s for s in pending if s.level == lvl]
            pending = [s for s in pending if s.level != lvl]
            for grp in self._groups(here):
                self._emit_group(grp)
        for o in self.outputs:
            src = self.sources[o]
            if src.group is not None:
                self._gather(src, out_name=o)
            elif src.name != o:
                self.nodes.append(helper.make_node("Identity", [src.name], [o]))
        g = self.model.graph
        graph = helper.make_graph(self.nodes, g.name, list(g.input), list(g.output), self.inits)
        m = helper.make_model(graph, opset_imports=list(self.model.opset_import),
                              producer_name="av1part_train.compact")
        m.ir_version = self.model.ir_version
        onnx.checker.check_model(m)
        return m

    def _fresh(self, stem: str) -> str:
        self.counter += 1
        return f"c{self.counter}_{stem}"

    def _init(self, arr: np.ndarray, stem: str) -> str:
        from onnx import numpy_helper
        name = self._fresh(stem)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), name))
        return name

    def _term_key(self, s: Source):
        return ("g", id(s.group)) if s.group is not None else ("s", s.name)

    def _signature(self, sm: Sum):
        n = sm.node
        if n is None:
            return ("output", sm.out_name)
        attrs = tuple(sorted((a.name, str(self.onnx.helper.get_attribute_value(a))) for a in n.attribute))
        terms = []
        for s, m in sm.aff.terms.items():
            src = self.sources[s]
            terms.append((self._term_key(src), _dims(src.shape), _is_identity(m)))
        return (n.op_type, attrs, tuple(sm.aff.shape), tuple(sorted(terms, key=str)), sm.aff.bias is not None,
                sm.out_name in self.outputs)

    def _groups(self, sums):
        """Sums of the same form: one group each, ordered so that grouped sources line up."""
        by_sig = {}
        for sm in sums:
            by_sig.setdefault(self._signature(sm), []).append(sm)
        out = []
        for sig, members in by_sig.items():
            # sig: (op, attrs, shape, terms, has bias, is a graph output), or ("output", name)
            stackable = (self.group and len(members) > 1 and sig[0] != "output" and not sig[5]
                         and (sig[0] in ELEMENTWISE or len(sig[2]) == 1))
            if not stackable:                   # graph outputs keep their own node
                out.extend([m] for m in members)
                continue
            gkeys = [k for (k, _, _) in sig[3] if k[0] == "g"]
            if gkeys:
                def member_of(sm, key=gkeys[0]):
                    return next(self.sources[s].member for s in sm.aff.terms
                                if self._term_key(self.sources[s]) == key)
                members.sort(key=member_of)
                ok = True
                for j, sm in enumerate(members):
                    for s in sm.aff.terms:
                        src = self.sources[s]
                        if src.group is not None and (src.member != j or src.group.size != len(members)):
                            ok = False
                if not ok:
                    out.extend([m] for m in members)
                    continue
            out.append(members)
        return out

    def _flat(self, src: Source) -> str:
        if src.flat:
            return src.name
        if src.name not in self.flat_cache:
            shape = self._init_i64([-1, _dims(src.shape)], "flat")
            name = self._fresh("flat")
            self.nodes.append(self.onnx.helper.make_node("Reshape", [src.name, shape], [name]))
            self.flat_cache[src.name] = name
        return self.flat_cache[src.name]

    def _init_i64(self, vals, stem):
        from onnx import numpy_helper
        name = self._fresh(stem)
        self.inits.append(numpy_helper.from_array(np.asarray(vals, dtype=np.int64), name))
        return name

    def _gather(self, src: Source, out_name: str | None = None) -> str:
        key = (src.group.name, src.member)
        if out_name is None and key in self.gather_cache:
            return self.gather_cache[key]
        idx = self._init_i64(src.member, "idx")
        name = out_name or self._fresh("member")
        self.nodes.append(self.onnx.helper.make_node("Gather", [src.group.name, idx], [name], axis=0))
        if out_name is None:
            self.gather_cache[key] = name
        return name

    def _emit_group(self, members: list[Sum]):
        helper = self.onnx.helper
        B = len(members)
        first = members[0]
        dout = _dims(first.aff.shape)
        acc = None

        def add(t):
            nonlocal acc
            if acc is None:
                acc = t
            else:
                name = self._fresh("add")
                self.nodes.append(helper.make_node("Add", [acc, t], [name]))
                acc = name

        # terms in a canonical order: the same for every member
        def ordered(sm):
            return sorted(sm.aff.terms.items(), key=lambda kv: str(self._term_key(self.sources[kv[0]])))

        per_member = [ordered(sm) for sm in members]
        bias_pending = first.aff.bias is not None
        for t in range(len(per_member[0])):
            srcs = [self.sources[pm[t][0]] for pm in per_member]
            mats = [pm[t][1].reshape(_dims(srcs[j].shape), dout) for j, pm in enumerate(per_member)]
            s0 = srcs[0]
            ident = all(_is_identity(m) for m in mats)
            if B == 1:
                a = self._gather(s0) if s0.group is not None else self._flat(s0)
                if ident:
                    add(a)
                    continue
                name = self._fresh("mm")
                if bias_pending:
                    self.nodes.append(helper.make_node(
                        "Gemm", [a, self._init(mats[0], "w"), self._init(first.aff.bias.reshape(dout), "b")], [name]))
                    bias_pending = False
                else:
                    self.nodes.append(helper.make_node("MatMul", [a, self._init(mats[0], "w")], [name]))
                add(name)
                continue
            a = s0.group.name if s0.group is not None else self._flat(s0)
            if ident:
                add(a)
                continue
            name = self._fresh("bmm")
            self.nodes.append(helper.make_node("MatMul", [a, self._init(np.stack(mats), "w")], [name]))
            add(name)
        if bias_pending:
            if B == 1:
                b = self._init(first.aff.bias.reshape(dout), "b")
            else:
                b = self._init(np.stack([sm.aff.bias.reshape(1, dout) for sm in members]), "b")
            if acc is None:
                raise CompactError("a nonlinear node of a constant")
            add(b)
        if acc is None:
            raise CompactError("a nonlinear node of nothing")
        node = first.node
        x = acc
        if node is None:                     # an affine graph output: the sum itself, in its shape
            shp = self._init_i64([-1] + list(first.aff.shape), "shape")
            self.nodes.append(helper.make_node("Reshape", [x, shp], [first.out_name]))
            first.out_source.name = first.out_name
            return
        flat_out = node.op_type in ELEMENTWISE or len(first.aff.shape) == 1
        if not flat_out:
            shp = self._init_i64(([B] if B > 1 else []) + [-1] + list(first.aff.shape), "shape")
            y = self._fresh("unflat")
            self.nodes.append(helper.make_node("Reshape", [x, shp], [y]))
            x = y
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if B == 1:
            out = first.out_name if first.out_name in self.outputs else self._fresh(node.op_type.lower())
            self.nodes.append(helper.make_node(node.op_type, [x], [out], **attrs))
            src = first.out_source
            src.name, src.flat = out, flat_out
            return
        gname = self._fresh(node.op_type.lower() + f"x{B}")
        if node.op_type == "Softmax":
            # the stacked tensor [B, N, K] has one more axis: the last is named -1 in both
            if int(attrs.get("axis", -1)) not in (-1, len(first.aff.shape)):
                raise CompactError("a grouped Softmax over another axis than the last")
            attrs["axis"] = -1
        self.nodes.append(helper.make_node(node.op_type, [x], [gname], **attrs))
        grp = Group(gname, B)
        for j, sm in enumerate(members):
            src = sm.out_source
            src.group, src.member, src.name, src.flat = grp, j, gname, True


def compact_model(model, group: bool = True, layout: str = "planar", collapse: bool = True):
    """The compacted ModelProto of a fused graph (see the module docstring); ``group=False``
    emits every branch on its own (for measuring what the stacking buys). ``layout="cells"``
    also makes the block input cell-major (``tensor.to_layout``), which drops the stem's
    Reshape/Transpose/Reshape."""
    m = _Compactor(model, group).run() if collapse else _fold(model)
    if layout == "cells":
        m = cells_input(m)
    elif layout != "planar":
        raise CompactError(f"unknown layout {layout!r}")
    return m


def cells_input(model, name: str = "x"):
    """The model with block input ``name`` taken cell-major, ``[N, 16, C * 16]``: the
    patchify the exporter wrote (Reshape to ``[N, C, 4, 4, 4, 4]``, Transpose
    ``(0, 2, 4, 1, 3, 5)``, Reshape to ``[N, 16, C * 16]``) is removed, so its consumer reads
    the input directly. Refused unless exactly that chain is found."""
    import onnx
    from onnx import helper, numpy_helper
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    inp = next((i for i in g.input if i.name == name), None)
    if inp is None:
        raise CompactError(f"no input {name!r}")
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[2:] != [16, 16]:
        raise CompactError(f"input {name!r} is not a planar block tensor [N, C, 16, 16]")
    c = dims[1]

    def only_consumer(t):
        users = [n for n in g.node if t in n.input]
        return users[0] if len(users) == 1 else None

    def shape_is(node, want):
        v = inits.get(node.input[1]) if len(node.input) > 1 else None
        return v is not None and list(v[1:]) == want and v[0] in (-1, 0)

    r1 = only_consumer(name)
    tr = r1 and r1.op_type == "Reshape" and shape_is(r1, [c, 4, 4, 4, 4]) and only_consumer(r1.output[0])
    r2 = tr and tr.op_type == "Transpose" and list(_attr(tr, "perm")) == [0, 2, 4, 1, 3, 5] \
        and only_consumer(tr.output[0])
    if not (r2 and r2.op_type == "Reshape" and shape_is(r2, [16, c * 16])):
        raise CompactError(f"input {name!r}: the stem is not the cell patchify the cells layout replaces")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    out = r2.output[0]
    keep = [n for n in g.node if n.output[0] not in (r1.output[0], tr.output[0], out)]
    for n in keep:
        for i, x in enumerate(n.input):
            if x == out:
                n.input[i] = name
    del g.node[:]
    g.node.extend(keep)
    used = {x for n in g.node for x in n.input}
    live = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(live)
    for i in g.input:
        if i.name == name:
            i.CopyFrom(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["N", 16, c * 16]))
    onnx.checker.check_model(m)
    return m


def max_output_diff(a, b, n: int = 64, seed: int = 0, b_layout: str = "planar", x_name: str | None = "x") -> dict:
    """Largest |difference| per output of two models on the same random inputs (ONNX Runtime);
    ``b_layout``: the layout ``b`` takes its block input ``x_name`` in (None: no block input)."""
    import onnxruntime as ort
    from .tensor import to_layout
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sa = ort.InferenceSession(a.SerializeToString(), so, providers=["CPUExecutionProvider"])
    sb = ort.InferenceSession(b.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feed = _random_feed(a, n, seed)
    feed_b = {k: (to_layout(v, b_layout) if k == x_name else v) for k, v in feed.items()}
    names = [o.name for o in a.graph.output]
    ra, rb = sa.run(names, feed), sb.run(names, feed_b)
    return {k: float(np.max(np.abs(x - y))) for k, x, y in zip(names, ra, rb)}


def compact_bundle(src, dst, name: str | None = None, tolerance: float = 1e-5, layout: str = "cells",
                   group: bool = True, collapse: bool = True) -> dict:
    """A copy of fused bundle ``src`` with a compacted graph (taking its block input in
    ``layout``), checked against the original on random inputs (``tolerance``) and with its
    golden set recomputed on the same blocks."""
    import onnx
    from .export import write_golden
    from .reference import ReferenceBundle, SCHEMA_VERSION_FUSED, sha256_file
    from .tensor import InputSpec

    src, dst = Path(src), Path(dst)
    m = json.loads((src / "manifest.json").read_text())
    src_m = json.loads(json.dumps(m))
    if m.get("schema_version") != SCHEMA_VERSION_FUSED:
        raise CompactError(f"{src}: only fused (schema 2) bundles are compacted")
    if m["input"].get("layout", "planar") != "planar":
        raise CompactError(f"{src}: already compacted (input layout {m['input']['layout']!r})")
    orig = onnx.load(str(src / m["graph"]["file"]))
    block_inputs = [i["name"] for i in m["graph"]["inputs"] if i["source"] == "block"]
    if not block_inputs:
        layout = "planar"   # a graph without block input (no trunk) has no block tensor to reorder
    new = compact_model(orig, group=group, layout=layout, collapse=collapse)
    diffs = max_output_diff(orig, new, b_layout=layout, x_name=block_inputs[0] if block_inputs else None)
    if max(diffs.values()) > tolerance:
        raise CompactError(f"compacted graph differs from {src} by {diffs} (tolerance {tolerance})")
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td) / "bundle"
        tmp.mkdir()
        onnx.save(new, str(tmp / m["graph"]["file"]))
        m["name"] = name or dst.name
        m["description"] = (m.get("description", "") + f" [compacted: {len(orig.graph.node)} -> "
                            f"{len(new.graph.node)} nodes, {layout} input]").strip()
        m["graph"]["sha256"] = sha256_file(tmp / m["graph"]["file"])
        if layout != "planar":
            m["input"]["layout"] = layout
            spec = InputSpec.from_manifest(m["input"])
            for i in m["graph"]["inputs"]:
                if i["source"] == "block":
                    i["shape"] = spec.x_shape()
        m.setdefault("training", {}).setdefault("recipe", {})["compaction"] = {
            "tool": "av1part_train.compact", "nodes": [len(orig.graph.node), len(new.graph.node)],
            "collapsed": collapse, "stacked_branches": group and collapse, "layout": layout,
            "max_abs_diff_random_inputs": diffs,
            "from": {"bundle": src_m["name"], "sha256": src_m["graph"]["sha256"]}}
        (tmp / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
        golden = src / "golden.json"
        if golden.exists():
            doc = json.loads(golden.read_text())
            blocks = [{k: b[k] for k in ("bit_depth", "y", "u", "v", "prev_y", "qindex", "intra")}
                      for b in doc["blocks"]]
            write_golden(ReferenceBundle(tmp), tmp / "golden.json", m["name"], blocks,
                         float(doc.get("skip_below", 0.0)), [r["skip_below"] for r in doc.get("skip_runs", [])])
        for extra in src.iterdir():
            if extra.name not in ("manifest.json", "golden.json", m["graph"]["file"]) and extra.is_file():
                shutil.copy2(extra, tmp / extra.name)
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(tmp, dst)
    return m
