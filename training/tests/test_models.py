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
