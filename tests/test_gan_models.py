"""The seed architecture, the loss registry and the on-device augmentation."""
import math

import pytest

torch = pytest.importorskip("torch")

from gan import augment  # noqa: E402
from gan.config import PRESETS  # noqa: E402
from gan.losses import LOSSES, get_loss  # noqa: E402
from gan.models import Discriminator, Generator, build_models, count_parameters  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def test_seed_parameter_counts_equal_the_blog():
    G, D = build_models(PRESETS["seed"])
    assert count_parameters(G) == 13_275_939
    assert count_parameters(D) == 2_796_800


def test_seed_layers_are_the_blog_layers():
    G = Generator(128, 128, 1024)
    convs = [m for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    spec = [(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0], m.bias is not None)
            for m in convs]
    assert spec == [(128, 1024, 4, 1, 0, False), (1024, 512, 4, 2, 1, False), (512, 256, 4, 2, 1, False),
                    (256, 128, 4, 2, 1, False), (128, 64, 4, 2, 1, False), (64, 32, 4, 2, 1, False),
                    (32, 3, 3, 1, 1, True)]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in G.modules()) == 6
    assert isinstance(list(G.modules())[-1], torch.nn.Tanh)
    D = Discriminator(128, 32)
    convs = [m for m in D.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(m.in_channels, m.out_channels, m.stride[0], m.padding[0]) for m in convs] == [
        (3, 32, 2, 1), (32, 64, 2, 1), (64, 128, 2, 1), (128, 256, 2, 1), (256, 512, 2, 1), (512, 1, 1, 0)]
    assert all(m.bias is None for m in convs)
    assert [m.num_features for m in D.modules() if isinstance(m, torch.nn.BatchNorm2d)] == [128, 256, 512]
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in D.modules())


def test_forward_shapes_at_seed_size():
    G, D = build_models(PRESETS["seed"])
    with torch.no_grad():
        x = G(torch.randn(2, 128))
        assert x.shape == (2, 3, 128, 128)
        assert x.min() >= -1 and x.max() <= 1
        assert D(x).shape == (2,)


def test_spectral_norm_option_wraps_every_d_conv():
    cfg = PRESETS["tiny"].replace(spectral_norm=True)
    _, D = build_models(cfg)
    convs = [m for m in D.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(hasattr(m, "parametrizations") for m in convs)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules())
    assert D(torch.randn(3, 3, 32, 32)).shape == (3,)


def test_init_is_seeded():
    a, _ = build_models(PRESETS["tiny"], seed=3)
    b, _ = build_models(PRESETS["tiny"], seed=3)
    c, _ = build_models(PRESETS["tiny"], seed=4)
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_bad_size_is_refused():
    with pytest.raises(ValueError, match="power of two"):
        Generator(16, 48, 64)


# --------------------------------------------------------------------------------------------- losses

REAL, FAKE, Y = torch.tensor([1.0, 3.0]), torch.tensor([0.0, -1.0]), 0.8


def test_ralsgan_losses_equal_hand_computed_values():
    # mean C(xr) = 2, mean C(xf) = -0.5
    # D: ((0.7^2 + 2.7^2)/2 + (1.2^2 + 2.2^2)/2) / 2 = (3.89 + 3.14) / 2
    # G: ((2.3^2 + 4.3^2)/2 + (2.8^2 + 3.8^2)/2) / 2 = (11.89 + 11.14) / 2
    loss = get_loss("ralsgan")
    assert loss.d(REAL, FAKE, Y).item() == pytest.approx(3.515, abs=1e-6)
    assert loss.g(REAL, FAKE, Y).item() == pytest.approx(11.515, abs=1e-6)


def test_other_losses_equal_hand_computed_values():
    assert LOSSES["hinge"].d(REAL, FAKE, Y).item() == pytest.approx(0.5)       # relu(1-r)=0,0; relu(1+f)=1,0
    assert LOSSES["hinge"].g(REAL, FAKE, Y).item() == pytest.approx(0.5)
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    assert LOSSES["nonsaturating"].d(REAL, FAKE, Y).item() == pytest.approx(
        (sp(-1) + sp(-3)) / 2 + (sp(0) + sp(-1)) / 2, rel=1e-6)
    assert LOSSES["nonsaturating"].g(REAL, FAKE, Y).item() == pytest.approx((sp(0) + sp(1)) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="ralsgan"):
        get_loss("wasserstein")


def test_detached_real_logits_give_the_same_generator_gradient():
    # The blog back-propagated G's loss through the (stale) real logits too; they hold no G parameter,
    # so detaching them leaves the generator's gradient unchanged.
    fake = torch.tensor([0.3, -0.2, 0.5], requires_grad=True)
    real = torch.tensor([0.9, 0.1, 0.4], requires_grad=True)
    g1, = torch.autograd.grad(get_loss("ralsgan").g(real, fake, Y), fake)
    g2, = torch.autograd.grad(get_loss("ralsgan").g(real.detach(), fake, Y), fake)
    assert torch.allclose(g1, g2)


# ------------------------------------------------------------------------------------------ augment

def _u8(b=4, s=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, s, s, 3), dtype=torch.uint8, generator=g)


def test_real_batch_converts_and_flips():
    x = _u8()
    base = x.permute(0, 3, 1, 2).float() / 127.5 - 1
    u = torch.tensor([[0.1, 0.9, 0.5], [0.9, 0.9, 0.5], [0.4, 0.9, 0.5], [0.6, 0.9, 0.5]])
    for rotate_p in (0.0, 0.3):        # flip alone, and through the affine (rotation) path with angle 0
        out = augment.real_batch(x, u, flip_p=0.5, rotate_p=rotate_p, rotate_deg=5)
        assert out.shape == (4, 3, 16, 16) and out.dtype == torch.float32
        assert torch.allclose(out[[1, 3]], base[[1, 3]], atol=1e-6)
        assert torch.allclose(out[[0, 2]], base[[0, 2]].flip(3), atol=1e-6)


def test_real_batch_rotation_fills_black_corners():
    x = torch.full((2, 32, 32, 3), 200, dtype=torch.uint8)
    u = torch.tensor([[0.9, 0.0, 1.0], [0.9, 0.0, 0.0]])               # +5 and -5 degrees
    out = augment.real_batch(x, u, flip_p=0.5, rotate_p=0.3, rotate_deg=5)
    assert (out[:, :, 16, 16] > 0.5).all()                               # centre keeps the image
    assert (out[:, :, 0, 0] == -1).all() or (out[:, :, 0, 31] == -1).all()   # a corner rotated out: black
    assert ((out == -1).sum(dim=(1, 2, 3)) > 0).all()


def test_diff_augment_identity_draws_and_dtype():
    x = torch.rand(3, 3, 16, 16, dtype=torch.float64) * 2 - 1
    u = torch.tensor([[0.5, 0.5, 0.5, 0.5, 0.5]] * 3, dtype=torch.float64)   # no change, shift 0
    out = augment.diff_augment(x, "color,translation", u)
    assert out.dtype == torch.float64 and torch.allclose(out, x)
    assert augment.n_uniforms("color,translation,cutout") == 7 and augment.n_uniforms("") == 0


def test_translation_shifts_by_whole_pixels_and_cutout_blanks_a_square():
    x = torch.arange(16.0).repeat(1, 3, 16, 1) / 16                      # column index as the value
    shifted = augment.diff_augment(x, "translation", torch.tensor([[0.5, 0.99]]))  # dx = +2 pixels
    assert torch.allclose(shifted[0, 0, 5, 2:], x[0, 0, 5, :-2]) and (shifted[0, :, :, :2] == 0).all()
    cut = augment.diff_augment(torch.ones(2, 3, 16, 16), "cutout", torch.tensor([[0.5, 0.5], [0.0, 0.0]]))
    assert (cut[0] == 0).sum().item() == 3 * 8 * 8                      # a full 8x8 square inside
    assert (cut[1] == 0).sum().item() == 3 * 4 * 4                      # clipped at the corner


def test_diff_augment_is_differentiable_and_follows_the_draws():
    x = (torch.rand(4, 3, 16, 16) * 2 - 1).requires_grad_()
    u = torch.rand(4, 7, generator=torch.Generator().manual_seed(1))
    y1 = augment.diff_augment(x, "color,translation,cutout", u)
    y2 = augment.diff_augment(x, "color,translation,cutout", u.clone())
    assert torch.equal(y1, y2)
    y1.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown"):
        augment.diff_augment(x, "colour", u)
