"""Backbones, adapters and the frozen-backbone behaviour."""
import pytest
import torch

from av1part_train.layers import ConvAdapter, ResidualAdapter
from av1part_train.models import StageModel, create_model, list_models


def test_registry_and_shapes():
    assert {"resnet18", "resnet18_half", "tiny"} <= set(list_models())
    with pytest.raises(KeyError, match="unknown arch"):
        create_model("vgg")
    assert create_model("resnet18", in_chans=3, stem="imagenet").trunk_shape() == (128, 2, 2)
    assert create_model("resnet18", in_chans=4, stem="small").trunk_shape() == (128, 8, 8)
    with pytest.raises(ValueError, match="unknown stem"):
        create_model("resnet18", stem="huge")
    n = sum(p.numel() for p in create_model("tiny", in_chans=3).parameters())
    assert 20_000 < n < 40_000


def test_conv_adapter_structure_and_near_identity():
    a = ConvAdapter(256, reduction=4)
    assert a.down.out_channels == 64 and a.dw.groups == 64 and a.up.out_channels == 256
    assert torch.equal(a.alpha, torch.ones(256))
    h = torch.randn(2, 256, 2, 2)
    assert (a(h) - h).abs().max() < 1e-3 * h.abs().max()
    # the equation h + alpha * Up(DW(ReLU(Down(h))))
    with torch.no_grad():
        a.alpha.fill_(2.0)
    want = h + 2.0 * a.up(a.dw(torch.relu(a.down(h))))
    assert torch.allclose(a(h), want)


def test_residual_adapter_near_identity():
    a = ResidualAdapter(128, bottleneck=64).eval()
    h = torch.randn(2, 128, 2, 2)
    assert (a(h) - h).abs().max() < 1e-3


def test_frozen_backbone_stays_eval_and_unchanged():
    m = StageModel("stage2", "tiny", 3, num_side=2, stem="small", mode="adapter")
    before = {k: v.clone() for k, v in m.backbone.state_dict().items()}
    m.train()
    assert m.training and not m.backbone.training
    assert all(not mod.training for mod in m.backbone.modules())
    assert m.head.training and all(a.training for a in m.adapters.values())
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], 1e-2)
    for _ in range(3):
        loss = m(torch.randn(8, 3, 16, 16), torch.rand(8, 2)).logsumexp(1).mean()
        opt.zero_grad(); loss.backward(); opt.step()
    for k, v in m.backbone.state_dict().items():
        assert torch.equal(v, before[k]), k  # weights and BN running stats untouched
    names = {n.split(".")[0] for n, p in m.named_parameters() if p.requires_grad}
    assert names == {"adapters", "head"}
    assert set(m.trainable_state_dict()) == {k for k in m.state_dict() if not k.startswith("backbone.")}


def test_bn_train_mode_is_an_option():
    m = StageModel("stage2", "tiny", 3, stem="small", mode="adapter", bn_mode="train")
    m.train()
    assert m.backbone.training
    # its running stats then belong to the checkpoint
    assert any(k.startswith("backbone.") and "running_mean" in k for k in m.trainable_state_dict())


def test_head_shape_and_side_features():
    m = StageModel("stage2", "resnet18", 3, num_side=2, stem="imagenet", mode="adapter")
    lin = [l for l in m.head.modules() if isinstance(l, torch.nn.Linear)]
    assert [(l.in_features, l.out_features) for l in lin] == [(514, 256), (256, 128), (128, 3)]
    assert set(m.adapters) == {"layer3", "layer4"}
    with pytest.raises(ValueError, match="side features"):
        m.eval()(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="layer3/layer4"):
        StageModel("stage2", "tiny", 3, mode="adapter", adapter_layers=("layer1",))


def test_stage_label_maps():
    from av1part_train.models.stage import LABEL_MAPS
    # NONE=0, HORZ=1, VERT=2, SPLIT=3, HORZ_A=4, HORZ_B=5, VERT_A=6, VERT_B=7, HORZ_4=8, VERT_4=9
    assert LABEL_MAPS["stage1"] == [0, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    assert LABEL_MAPS["stage2"] == [-1, 1, 1, 0, 2, 2, 2, 2, 1, 1]
    assert LABEL_MAPS["stage3_rect"] == [-1, 0, 1, -1, -1, -1, -1, -1, 2, 3]
    assert LABEL_MAPS["stage3_ab"] == [-1, -1, -1, -1, 0, 1, 2, 3, -1, -1]


# ---- BlockNet: built for 16x16 blocks --------------------------------------

from av1part_train.macs import count_macs, cascade_macs  # noqa: E402
from av1part_train.models.stage import FusedExport, POOL_FACTOR, pool_features  # noqa: E402


def _hierarchy(arch, stem, in_chans=3, num_side=2):
    import copy
    s1 = StageModel("stage1", arch, in_chans, num_side=num_side, stem=stem, mode="full")
    out = {"stage1": [s1]}
    for s in ("stage2", "stage3_rect", "stage3_ab"):
        out[s] = [StageModel(s, arch, in_chans, num_side=num_side, stem=stem, mode="adapter",
                             backbone=copy.deepcopy(s1.backbone))]
    return out


@pytest.mark.parametrize("arch", ["blocknet8", "blocknet24", "blocknet64"])
def test_blocknet_keeps_a_4x4_grid_through_every_layer(arch):
    m = StageModel("stage2", arch, 3, num_side=2, stem="patch4", mode="adapter")
    r = count_macs(m, torch.zeros(1, 3, 16, 16), torch.zeros(1, 2))
    width = m.backbone.width
    grid = [l for l in r["layers"] if l["kind"] in ("CellConvBN", "CellDepthwise", "LinearBN")]
    # the stem maps the 16 cells' samples to features; every later grid
    # layer works on 16 cells, the adapters' depthwise 3x3 included
    assert grid[0]["name"] == "backbone.stem.lin" and grid[0]["out"] == [16, width]
    # (cell layout [16, C], or the flat [16*C] between a block's two convs)
    assert all(l["in"][0] % 16 == 0 and l["out"][0] % 16 == 0 for l in grid)
    assert all((l["in"][0] == 16) == (len(l["in"]) == 2) for l in grid)
    assert any(l["name"] == "adapters.layer3.dw" for l in grid)
    # a 3x3 on the 4x4 grid has 100 (out cell, in cell) pairs on real cells;
    # the dense MatMul runs all 256
    c3 = [l for l in grid if l["kind"] == "CellConvBN"]
    assert len(c3) == 8 and all(l["real"] * 256 == l["dense"] * 100 for l in c3)
    with torch.no_grad():
        h = m.backbone.forward_trunk(torch.randn(2, 3, 16, 16))
    assert tuple(h.shape) == (2, 16, width)


def test_grid_conv_is_a_3x3_convolution_over_cells():
    """CellConvBN equals Conv2d(3x3, padding 1) on the 4x4 map of cells."""
    from av1part_train.models.blocknet import CellConvBN
    torch.manual_seed(0)
    cc = CellConvBN(5, 7).eval()
    with torch.no_grad():
        cc.lin.bn.running_mean.uniform_(-1, 1)
        cc.lin.bn.running_var.uniform_(0.5, 2)
        cc.lin.bn.weight.uniform_(0.5, 2)
        cc.lin.bn.bias.uniform_(-1, 1)
        h = torch.randn(3, 16, 5)
        got = cc(h)
        # the same weights as a Conv2d: [cout, 9 taps, cin] -> [cout, cin, 3, 3]
        w = cc.lin.weight.reshape(7, 9, 5).permute(0, 2, 1).reshape(7, 5, 3, 3)
        nchw = h.reshape(3, 4, 4, 5).permute(0, 3, 1, 2)
        ref = torch.nn.functional.conv2d(nchw, w, padding=1)
        ref = torch.nn.functional.batch_norm(ref, cc.lin.bn.running_mean, cc.lin.bn.running_var,
                                             cc.lin.bn.weight, cc.lin.bn.bias, False, 0.0, cc.lin.bn.eps)
        assert torch.allclose(got, ref.permute(0, 2, 3, 1).reshape(3, 16, 7), atol=1e-5)
    # train mode uses batch statistics, eval the folded running ones
    cc.train()
    y = cc(torch.randn(64, 16, 5))
    assert abs(float(y.detach().mean())) < 0.2


def test_resnet18_imagenet_stem_wastes_most_of_its_compute_on_padding():
    m = StageModel("stage2", "resnet18", 3, num_side=2, stem="imagenet", mode="adapter")
    r = count_macs(m, torch.zeros(1, 3, 16, 16), torch.zeros(1, 2))
    deep = [l for l in r["layers"] if l["name"].startswith("backbone.layer4") and l["kind"] == "conv"
            and l["name"].endswith(("conv1", "conv2"))]
    assert all(l["out"][1:] == [1, 1] for l in deep)        # layer4 runs on 1x1 maps
    assert sum(l["real"] for l in deep) * 9 <= sum(l["dense"] for l in deep) * 1.5


@pytest.mark.parametrize("layout", ["nchw", "cells"])
def test_grid_pooling_tells_rows_from_columns(layout):
    h = torch.zeros(1, 1, 4, 4)
    h[0, 0, 0, :] = 1.0          # top row lit
    v = torch.zeros(1, 1, 4, 4)
    v[0, 0, :, 0] = 1.0          # left column lit
    if layout == "cells":
        h, v = h.reshape(1, 1, 16).transpose(1, 2), v.reshape(1, 1, 16).transpose(1, 2)
    ph, pv = pool_features(h, "grid"), pool_features(v, "grid")
    assert ph.shape[1] == POOL_FACTOR["grid"] == 13
    assert torch.equal(ph[0, 0], pv[0, 0])                  # same global mean
    assert not torch.equal(ph, pv)                           # but rows/cols differ
    assert torch.equal(pool_features(h, "mean"), pool_features(v, "mean"))
    if layout == "cells":   # same values as the NCHW pooling of the same map
        m = h.transpose(1, 2).reshape(1, 1, 4, 4)
        assert torch.allclose(pool_features(h, "grid").sort().values, pool_features(m, "grid").sort().values)


@pytest.mark.parametrize("arch,lo,hi", [("blocknet8", 0.05e6, 0.2e6), ("blocknet24", 0.5e6, 2e6),
                                        ("blocknet64", 4e6, 12e6)])
def test_blocknet_cascade_sizes(arch, lo, hi):
    """The three widths span ~0.1 M, ~1 M, ~10 M MACs per block for the
    whole fused cascade; the fused graph computes trunk and layer3 once."""
    st = _hierarchy(arch, "patch4")
    fused = cascade_macs(st, 3, 2, fused=True)
    files = cascade_macs(st, 3, 2, fused=False)
    assert lo <= fused["real"] <= hi, fused["real"]
    assert fused["real"] < files["real"]                     # layer3 once, not four times
    with torch.no_grad():
        x, side = torch.randn(5, 3, 16, 16), torch.rand(5, 2)
        outs = FusedExport(st).eval()(x, side)
        for s, o in zip(("stage1", "stage2", "stage3_rect", "stage3_ab"), outs):
            ref = st[s][0].eval()(x, side).softmax(1)
            assert torch.allclose(o, ref, atol=1e-6), s


def test_cell_adapters_start_near_identity_and_train():
    from av1part_train.layers import CellConvAdapter, CellResidualAdapter
    torch.manual_seed(0)
    h = torch.randn(4, 16, 24)
    for a in (CellConvAdapter(24, reduction=4), CellResidualAdapter(24, bottleneck=8)):
        out = a(h)
        assert out.shape == h.shape
        assert (out - h).abs().max() < 1e-3                    # near-zero init: features pass through
        loss = (a(h) - 2 * h).pow(2).mean()
        loss.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in a.parameters())


def test_blocknet_adapter_mode_trains_only_adapters_and_head():
    m = StageModel("stage2", "blocknet8", 4, num_side=3, stem="patch4", mode="adapter")
    groups = m.param_groups()
    assert not groups["backbone"] and groups["adapter"] and groups["head"]
    m.train()
    assert not m.backbone.training                                # BN of the frozen backbone in eval
    n_train = sum(p.numel() for p in m.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in m.parameters())
    assert n_train < n_all
