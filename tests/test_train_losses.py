"""Loss mixes: terms, weights, substitutes, gradients, independence of batch composition."""

import pytest
import torch

from sam3d_eval.data.shapes import make_shape, shape_colors
from sam3d_eval.metrics import chamfer_distance
from sam3d_eval.structures import Meshes, TexturesVertex
from sam3d_eval.train.losses import Discriminator, LossConfig, LossMix, LossWeights, RandomFeaturePerceptual, discriminator_loss


def _mesh(name, shift=0.0, requires_grad=False):
    v, f = make_shape(name)
    v = torch.tensor(v) + shift
    c = torch.tensor(shape_colors(v.numpy()))
    if requires_grad:
        v.requires_grad_(True)
        c.requires_grad_(True)
    return Meshes([v], [torch.tensor(f)], TexturesVertex([c])), v, c


def _cat(ms):
    return Meshes([v for m in ms for v in m.verts_list()], [f for m in ms for f in m.faces_list()],
                  TexturesVertex([t for m in ms for t in m.textures.verts_features]))


def test_stage_weights_are_the_recipe():
    w1, w2 = LossWeights.stage(1), LossWeights.stage(2)
    assert (w1.chamfer, w1.texture, w1.smoothness, w1.laplacian, w1.vgg, w1.gan) == (1.0, 0.5, 0.1, 0.05, 0.0, 0.0)
    assert w2.vgg > 0 and w2.gan > 0 and w2.chamfer == 1.0
    assert LossWeights.stage(1, chamfer=2.0).chamfer == 2.0


def test_terms_total_and_gradients():
    mix = LossMix(LossConfig(weights=LossWeights.stage(1), num_points=300, perceptual="substitute"))
    pred, v, c = _mesh("sphere", 0.05, requires_grad=True)
    gt, _, _ = _mesh("box")
    t = mix(pred, gt, ["s0"])
    assert set(t) == {"chamfer", "texture_l2", "texture_perceptual", "smoothness", "laplacian", "total"}
    w = mix.config.weights
    expected = (w.chamfer * t["chamfer"] + w.texture * (t["texture_l2"] + t["texture_perceptual"])
                + w.smoothness * t["smoothness"] + w.laplacian * t["laplacian"])
    assert torch.allclose(t["total"], expected)
    assert float(t["chamfer"].detach()) > 0.01
    t["total"].backward()
    assert v.grad is not None and float(v.grad.abs().sum()) > 0
    assert c.grad is not None and float(c.grad.abs().sum()) > 0  # texture terms reach the colours
    assert "random-features" in mix.substitutes["texture_perceptual"]
    same = mix(gt, gt, ["s0"])
    assert float(same["chamfer"]) < 0.1 * float(t["chamfer"].detach()) and float(same["texture_l2"]) == 0.0


def test_a_sample_term_does_not_depend_on_its_batch():
    mix = LossMix(LossConfig(weights=LossWeights(texture=0, smoothness=0, laplacian=0), num_points=200))
    a, _, _ = _mesh("sphere", 0.1)
    b, _, _ = _mesh("cone")
    g1, _, _ = _mesh("box")
    g2, _, _ = _mesh("torus")
    alone = mix(a, g1, ["k/a"])["chamfer"]
    pair = mix(_cat([a, b]), _cat([g1, g2]), ["k/a", "k/b"])["chamfer"]
    other = mix(b, g2, ["k/b"])["chamfer"]
    assert torch.allclose(pair, (alone + other) / 2, rtol=1e-6)
    # Draws are keyed: another key, other points.
    assert not torch.equal(mix(a, g1, ["k/c"])["chamfer"], alone)


def test_random_feature_perceptual_is_seeded_and_a_distance():
    p, q = RandomFeaturePerceptual(seed=3), RandomFeaturePerceptual(seed=3)
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    assert torch.equal(p(x, y), q(x, y))
    assert torch.allclose(p(x, x), torch.zeros(2), atol=1e-6)
    assert bool((p(x, y) > 0).all())
    assert not torch.equal(RandomFeaturePerceptual(seed=4)(x, y), p(x, y))


def test_gan_terms_non_saturating():
    torch.manual_seed(0)
    mix = LossMix(LossConfig(weights=LossWeights(chamfer=0, texture=0, smoothness=0, laplacian=0, gan=1.0)))
    disc = Discriminator()
    pred, v, _ = _mesh("sphere", requires_grad=True)
    images, masks = torch.rand(1, 3, 48, 48), torch.ones(1, 1, 48, 48, dtype=torch.bool)
    t = mix(pred, pred, ["x"], images=images, masks=masks, discriminator=disc)
    logit = disc(t["gan_fake"])
    assert torch.allclose(t["gan"], torch.nn.functional.softplus(-logit).mean())
    assert t["gan_real"].shape == (1, 3, 32, 32)
    d = discriminator_loss(disc, t["gan_real"], t["gan_fake"])
    assert torch.allclose(d, torch.nn.functional.softplus(-disc(t["gan_real"])).mean() + torch.nn.functional.softplus(logit).mean())
    with pytest.raises(ValueError, match="discriminator"):
        mix(pred, pred, ["x"])
