"""Perceptual losses against pytorch/examples fast_neural_style's formulation (written here in
numpy, NCHW as the reference) and Johnson's TotalVariation.lua."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from vision_jax.losses import perceptual

STYLE_LAYERS = ('relu1_2', 'relu2_2', 'relu3_3', 'relu4_3')
SHAPES = {'relu1_2': (32, 32, 8), 'relu2_2': (16, 16, 16), 'relu3_3': (8, 8, 32),
          'relu4_3': (4, 4, 64)}


def _features(n, seed):
  """VGG-like taps {name: [n, h, w, C]} float32: non-negative, magnitudes ~10."""
  rng = np.random.default_rng(seed)
  return {name: np.maximum(rng.normal(0, 10, (n,) + shape), 0).astype(np.float32)
          for name, shape in SHAPES.items()}


def _nchw(x):
  return np.transpose(x, (0, 3, 1, 2)).astype(np.float64)


def _reference_gram(y):
  """pytorch/examples utils.gram_matrix on an NCHW array."""
  b, ch, h, w = y.shape
  features = y.reshape(b, ch, w * h)
  return features @ features.transpose(0, 2, 1) / (ch * h * w)


def _reference_losses(out, target, style, batch_size):
  """pytorch/examples neural_style.train's content and style losses (weights 1).

  The style image is repeated to batch_size, its Grams sliced to the batch (gm_s[:n_batch]).
  """
  n_batch = len(out['relu2_2'])
  content = np.mean((_nchw(out['relu2_2']) - _nchw(target['relu2_2'])) ** 2)
  style_loss = 0.0
  for name in STYLE_LAYERS:
    gm_s = _reference_gram(np.repeat(_nchw(style[name]), batch_size, axis=0))
    gm_y = _reference_gram(_nchw(out[name]))
    style_loss += np.mean((gm_y - gm_s[:n_batch, :, :]) ** 2)
  return content, style_loss


@pytest.fixture(scope='module')
def feats():
  # A last, short batch of 3 of a batch size of 4, as the reference slices gm_s for.
  return _features(3, 0), _features(3, 1), _features(1, 2)


def test_matches_pytorch_examples_formulation(feats):
  out, target, style = feats
  want_content, want_style = _reference_losses(out, target, style, batch_size=4)
  grams = perceptual.style_grams(style, STYLE_LAYERS)
  assert {k: v.shape for k, v in grams.items()} == {
      k: (1, s[2], s[2]) for k, s in SHAPES.items()}
  losses = jax.jit(lambda o, t, g: (
      perceptual.feature_reconstruction_loss(o, t, 'relu2_2'),
      perceptual.style_reconstruction_loss(o, g, STYLE_LAYERS)))(out, target, grams)
  got_content, got_style = (float(x) for x in losses)
  assert got_content == pytest.approx(want_content, rel=1e-5)
  assert got_style == pytest.approx(want_style, rel=1e-5)
  # A per-image style target [N, C, C] gives the same; weights scale each layer.
  full = {k: jnp.repeat(v, 3, axis=0) for k, v in grams.items()}
  assert float(perceptual.style_reconstruction_loss(out, full, STYLE_LAYERS)) == (
      pytest.approx(got_style, rel=1e-6))
  weights = {'relu2_2': 2.0, 'relu4_3': 0.5}
  want = sum(w * float(perceptual.style_reconstruction_loss(out, grams, k))
             for k, w in weights.items())
  assert float(perceptual.style_reconstruction_loss(out, grams, weights)) == (
      pytest.approx(want, rel=1e-6))
  want = sum(float(perceptual.feature_reconstruction_loss(out, target, k))
             for k in STYLE_LAYERS)
  assert float(perceptual.feature_reconstruction_loss(out, target, STYLE_LAYERS)) == (
      pytest.approx(want, rel=1e-6))


def test_matches_live_torch(feats):
  torch = pytest.importorskip('torch')
  out, target, style = feats
  to_t = lambda x: torch.from_numpy(np.ascontiguousarray(_nchw(x)))

  def gram(y):
    b, ch, h, w = y.size()
    f = y.view(b, ch, w * h)
    return f.bmm(f.transpose(1, 2)) / (ch * h * w)

  mse = torch.nn.MSELoss()
  content = mse(to_t(out['relu2_2']), to_t(target['relu2_2'])).item()
  style_loss = sum(mse(gram(to_t(out[k])), gram(to_t(style[k]).repeat(4, 1, 1, 1))[:3])
                   for k in STYLE_LAYERS).item()
  grams = perceptual.style_grams(style, STYLE_LAYERS)
  assert float(perceptual.feature_reconstruction_loss(out, target, 'relu2_2')) == (
      pytest.approx(content, rel=1e-5))
  assert float(perceptual.style_reconstruction_loss(out, grams, STYLE_LAYERS)) == (
      pytest.approx(style_loss, rel=1e-5))


def test_identical_features_give_zero_and_errors(feats):
  out, _, _ = feats
  assert float(perceptual.feature_reconstruction_loss(out, out, STYLE_LAYERS)) == 0
  grams = perceptual.style_grams(out, STYLE_LAYERS)
  assert float(perceptual.style_reconstruction_loss(out, grams, STYLE_LAYERS)) == 0
  with pytest.raises(KeyError, match="'relu5_3'.*relu1_2"):
    perceptual.feature_reconstruction_loss(out, out, 'relu5_3')
  with pytest.raises(ValueError, match=r'\(3, 16, 16, 16\).*\(1, 16, 16, 16\)'):
    perceptual.feature_reconstruction_loss(out, _features(1, 3), 'relu2_2')
  with pytest.raises(ValueError, match=r'\(2, 16, 16\)'):
    perceptual.style_reconstruction_loss(
        out, {'relu2_2': jnp.zeros((2, 16, 16))}, 'relu2_2')


def test_total_variation_hand_case():
  image = np.array([[0., 1., 3.], [2., 2., 2.]], np.float32)[None, ..., None]
  # Grid 1x2: (dx, dy) = (1, 2) and (2, 1).
  assert float(perceptual.total_variation_loss(image)) == pytest.approx(5.0)
  assert float(perceptual.total_variation_loss(image, 'l1')) == pytest.approx(3.0)
  assert float(perceptual.total_variation_loss(np.full((2, 5, 7, 3), 0.3))) == 0
  # A mean: a ramp of slope a in x has TV a^2 ('l2') and a ('l1') at any size.
  for size in (4, 9):
    ramp = np.broadcast_to(0.1 * np.arange(size, dtype=np.float32)[None, None, :, None],
                           (2, size, size, 3))
    assert float(perceptual.total_variation_loss(ramp)) == pytest.approx(0.01, rel=1e-5)
    assert float(perceptual.total_variation_loss(ramp, 'l1')) == pytest.approx(0.1, rel=1e-5)
  with pytest.raises(ValueError, match='l2, l1'):
    perceptual.total_variation_loss(image, 'l3')
  with pytest.raises(ValueError, match=r'\(1, 1, 3, 1\)'):
    perceptual.total_variation_loss(image[:, :1])


def test_total_variation_gradient_is_johnsons():
  """TotalVariation.lua's gradInput (strength 1), in numpy, equals the gradient of our 'l2'
  loss times 0.5 N (H - 1) (W - 1) C."""
  x = np.random.default_rng(4).uniform(size=(2, 3, 6, 5)).astype(np.float64)  # NCHW
  n, c, h, w = x.shape
  x_diff = x[:, :, :-1, :-1] - x[:, :, :-1, 1:]
  y_diff = x[:, :, :-1, :-1] - x[:, :, 1:, :-1]
  want = np.zeros_like(x)
  want[:, :, :-1, :-1] += x_diff + y_diff
  want[:, :, :-1, 1:] -= x_diff
  want[:, :, 1:, :-1] -= y_diff
  got = jax.grad(perceptual.total_variation_loss)(jnp.asarray(x.transpose(0, 2, 3, 1)))
  got = np.asarray(got).transpose(0, 3, 1, 2) * 0.5 * n * (h - 1) * (w - 1) * c
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_gradients_finite_and_correct(feats):
  out, target, style = feats
  grams = perceptual.style_grams(style, STYLE_LAYERS)

  def total(o, image):
    return (perceptual.feature_reconstruction_loss(o, target, 'relu2_2')
            + 1e-2 * perceptual.style_reconstruction_loss(o, grams, STYLE_LAYERS)
            + perceptual.total_variation_loss(image, 'l1'))

  image = np.random.default_rng(5).uniform(size=(3, 8, 8, 3)).astype(np.float32)
  grads = jax.jit(jax.grad(total, argnums=(0, 1)))(out, image)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  small = {'relu2_2': np.random.default_rng(6).normal(size=(2, 3, 3, 4))}
  small_grams = perceptual.style_grams(
      {'relu2_2': np.random.default_rng(7).normal(size=(1, 3, 3, 4))}, 'relu2_2')
  check_grads(lambda f: perceptual.style_reconstruction_loss(
      {'relu2_2': f}, small_grams, 'relu2_2'), (small['relu2_2'],), order=1,
              modes=['rev'], atol=1e-2, rtol=1e-2)
