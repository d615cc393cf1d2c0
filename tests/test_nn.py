"""nn.Module machinery, layers against torch, state dicts with clear errors."""
import numpy as np
import pytest

import edgetorch as et
from edgetorch import nn
from edgetorch.nn import functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.bn = nn.BatchNorm1d(3)
        self.blocks = nn.ModuleList([nn.Linear(3, 3), nn.Linear(3, 3)])
        self.heads = nn.ModuleDict({"a": nn.Linear(3, 2)})

    def forward(self, x):
        x = self.bn(self.fc(x))
        for b in self.blocks:
            x = F.relu(b(x))
        return self.heads["a"](x)


def test_module_traversal_and_state_dict():
    n = Net()
    names = [k for k, _ in n.named_parameters()]
    assert names[:2] == ["fc.weight", "fc.bias"] and "heads.a.weight" in names
    assert [k for k, _ in n.named_buffers()] == ["bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]
    assert {k for k, _ in n.named_modules()} >= {"", "fc", "blocks.0", "heads.a"}
    sd = n.state_dict()
    assert "bn.running_mean" in sd and len(list(n.children())) == 4
    n2 = Net()
    n2.load_state_dict(sd)
    x = et.randn(5, 4)
    n.eval(), n2.eval()
    np.testing.assert_allclose(n(x).detach().numpy(), n2(x).detach().numpy())
    assert "Linear(in_features=4, out_features=3, bias=True)" in repr(n)


def test_load_state_dict_reports_every_problem():
    n = Net()
    sd = n.state_dict()
    sd["fc.wieght"] = sd.pop("fc.weight")
    sd["bn.bias"] = et.zeros(7)
    with pytest.raises(et.StateDictError) as e:
        n.load_state_dict(sd)
    msg = str(e.value)
    assert "Missing key(s): 'fc.weight'" in msg and "Unexpected key(s): 'fc.wieght'" in msg
    assert "size mismatch for bn.bias: checkpoint shape (7,), model shape (3,)" in msg
    sd["bn.bias"] = et.zeros(3)
    res = n.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["fc.weight"] and res.unexpected_keys == ["fc.wieght"]


def test_train_eval_zero_grad_requires_grad_apply_hooks():
    n = Net()
    n.eval()
    assert not any(m.training for m in n.modules())
    n(et.randn(2, 4)).sum().backward()
    assert n.fc.weight.grad is not None
    n.zero_grad()
    assert n.fc.weight.grad is None
    n.requires_grad_(False)
    assert not n.fc.weight.requires_grad
    seen = []
    h = n.fc.register_forward_hook(lambda m, a, o: seen.append(tuple(o.shape)))
    n(et.randn(2, 4))
    h.remove()
    n(et.randn(2, 4))
    assert seen == [(2, 3)]
    n.apply(lambda m: nn.init.zeros_(m.weight) if isinstance(m, nn.Linear) else None)
    assert n.fc.weight.abs().sum().item() == 0


@pytest.mark.oracle
def test_layers_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)

    def cmp(mine, theirs, x, atol=1e-5):
        theirs.load_state_dict({k: torch.tensor(v.numpy()) for k, v in mine.state_dict().items()})
        a = mine(et.tensor(x)).detach().numpy()
        b = theirs(torch.tensor(x)).detach().numpy()
        np.testing.assert_allclose(a, b, atol=atol, rtol=1e-4)

    x4 = rng.normal(size=(2, 4, 9, 9)).astype(np.float32)
    cmp(nn.Conv2d(4, 6, 3, stride=2, padding="valid"), torch.nn.Conv2d(4, 6, 3, stride=2), x4)
    cmp(nn.Conv2d(4, 4, 4, padding="same", groups=4), torch.nn.Conv2d(4, 4, 4, padding="same", groups=4), x4)
    cmp(nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1),
        torch.nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1), x4)
    x3 = rng.normal(size=(2, 4, 11)).astype(np.float32)
    cmp(nn.Conv1d(4, 5, 3, padding="same", dilation=2), torch.nn.Conv1d(4, 5, 3, padding="same", dilation=2), x3)
    bn, tbn = nn.BatchNorm2d(4), torch.nn.BatchNorm2d(4)
    cmp(bn, tbn, x4)  # training mode, batch statistics
    np.testing.assert_allclose(bn.running_var.numpy(), tbn.running_var.numpy(), rtol=1e-5)
    bn.eval(), tbn.eval()
    cmp(bn, tbn, x4)
    cmp(nn.LayerNorm(11), torch.nn.LayerNorm(11), x3)
    cmp(nn.RMSNorm(11, eps=1e-6), torch.nn.RMSNorm(11, eps=1e-6), x3)
    cmp(nn.MaxPool2d(3, 2, 1), torch.nn.MaxPool2d(3, 2, 1), x4)
    cmp(nn.AvgPool2d(2), torch.nn.AvgPool2d(2), x4)
    cmp(nn.AdaptiveAvgPool2d((2, 3)), torch.nn.AdaptiveAvgPool2d((2, 3)), x4)
    xs = rng.normal(size=(5, 2, 8)).astype(np.float32)
    mha, tmha = nn.MultiheadAttention(8, 2), torch.nn.MultiheadAttention(8, 2)
    tmha.load_state_dict({k: torch.tensor(v.numpy()) for k, v in mha.state_dict().items()})
    o, w = mha(et.tensor(xs), et.tensor(xs), et.tensor(xs))
    to, tw = tmha(torch.tensor(xs), torch.tensor(xs), torch.tensor(xs))
    np.testing.assert_allclose(o.detach().numpy(), to.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(w.detach().numpy(), tw.detach().numpy(), atol=1e-5)


@pytest.mark.oracle
def test_losses_match_torch():
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 5)).astype(np.float32)
    tgt = np.array([0, 4, -100, 2, 2, 1])
    w = rng.uniform(0.5, 2, size=5).astype(np.float32)
    probs = rng.dirichlet(np.ones(5), size=6).astype(np.float32)
    cases = [
        (lambda L, T: F.cross_entropy(L, T, ignore_index=-100), lambda L, T: tF.cross_entropy(L, T), tgt),
        (lambda L, T: F.cross_entropy(L, T, weight=et.tensor(w), label_smoothing=0.1),
         lambda L, T: tF.cross_entropy(L, T, weight=torch.tensor(w), label_smoothing=0.1), tgt),
        (lambda L, T: F.cross_entropy(L, T, label_smoothing=0.2), lambda L, T: tF.cross_entropy(L, T, label_smoothing=0.2),
         probs),
        (lambda L, T: F.nll_loss(F.log_softmax(L, 1), T, reduction="sum"),
         lambda L, T: tF.nll_loss(tF.log_softmax(L, 1), T, reduction="sum"), tgt),
        (F.mse_loss, tF.mse_loss, probs), (F.l1_loss, tF.l1_loss, probs),
        (F.binary_cross_entropy_with_logits, tF.binary_cross_entropy_with_logits, probs),
    ]
    for mine, theirs, t in cases:
        L = et.tensor(logits, requires_grad=True)
        TL = torch.tensor(logits, requires_grad=True)
        a, b = mine(L, et.tensor(t)), theirs(TL, torch.tensor(t))
        a.backward(), b.backward()
        np.testing.assert_allclose(a.item(), b.item(), rtol=1e-5)
        np.testing.assert_allclose(L.grad.numpy(), TL.grad.numpy(), atol=1e-6)
    xs = rng.normal(size=(4, 6)).astype(np.float32)
    pw = rng.uniform(0.5, 2, size=6).astype(np.float32)
    a = F.binary_cross_entropy_with_logits(et.tensor(xs), et.tensor(probs[:4, :5].repeat(2, 1)[:, :6]),
                                           pos_weight=et.tensor(pw))
    b = tF.binary_cross_entropy_with_logits(torch.tensor(xs), torch.tensor(probs[:4, :5].repeat(2, 1)[:, :6]),
                                            pos_weight=torch.tensor(pw))
    np.testing.assert_allclose(a.item(), b.item(), rtol=1e-5)


def test_dropout_train_and_eval():
    d = nn.Dropout(0.5)
    x = et.ones(1000)
    y = d(x)
    assert set(np.unique(y.numpy())) <= {0.0, 2.0} and 300 < (y.numpy() == 0).sum() < 700
    d.eval()
    assert d(x) is x


def test_init_functions():
    w = nn.Parameter(et.zeros(64, 32))
    nn.init.kaiming_uniform_(w, nonlinearity="relu")
    assert abs(w.detach().numpy().max()) <= np.sqrt(2) * np.sqrt(3 / 32) + 1e-6
    nn.init.xavier_normal_(w)
    assert 0.5 * np.sqrt(2 / 96) < w.detach().numpy().std() < 1.5 * np.sqrt(2 / 96)
    nn.init.trunc_normal_(w, std=1.0, a=-0.5, b=0.5)
    assert np.abs(w.detach().numpy()).max() <= 0.5
    assert not w.grad_fn
