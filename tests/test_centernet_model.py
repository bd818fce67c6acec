"""Tests for vision_jax.models.centernet: the network, its decode, and a tiny fit."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vision_jax.losses import focal
from vision_jax.losses import regression
from vision_jax.models import centernet
from vision_jax.losses import centernet as centernet_losses

# 'rbg' keys: same tests, much faster init compiles on CPU than threefry.
KEY = jax.random.key(0, impl='rbg')
TINY = dict(num_classes=3, width=8, neck_channels=(16, 16, 16), head_channels=8)


def shapes_of(model, x_shape):
  x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
  variables = jax.eval_shape(model.init, KEY, x)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']),
                       variables, x)[0]
  return variables, out


@pytest.mark.parametrize('backbone,upsample,norm,dtype', [
    ('resnet18', 'deconv', 'batch', 'float32'),
    ('resnet18', 'bilinear', 'group', 'bfloat16'),
    ('resnet50', 'nearest', 'frozen_batch', 'float32'),
])
def test_output_shapes(backbone, upsample, norm, dtype):
  model = centernet.CenterNet(**TINY, backbone=backbone, upsample=upsample, norm=norm,
                              dtype=dtype)
  variables, out = shapes_of(model, (2, 64, 96, 3))
  assert set(out) == {'heatmap', 'size', 'offset'}
  assert out['heatmap'].shape == (2, 16, 24, 3)
  assert out['size'].shape == (2, 16, 24, 2)
  assert out['offset'].shape == (2, 16, 24, 2)
  assert all(o.dtype == jnp.float32 for o in out.values())
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
  neck = variables['params']['neck']
  if norm == 'frozen_batch':  # the new neck still trains its batch norm
    assert 'up0_norm' in neck
  kernel = neck['up0_conv']['kernel'].shape
  assert kernel == ((4, 4, 16, 64 * (4 if backbone == 'resnet50' else 1))
                    if upsample == 'deconv' else (3, 3, 64 * (4 if backbone == 'resnet50'
                                                              else 1), 16))


def test_skips_add_backbone_laterals_and_leave_the_plain_neck_alone():
  plain, _ = shapes_of(centernet.CenterNet(**TINY), (2, 64, 96, 3))
  skip, out = shapes_of(centernet.CenterNet(**TINY, skips=True), (2, 64, 96, 3))
  assert out['heatmap'].shape == (2, 16, 24, 3) and out['size'].shape == (2, 16, 24, 2)
  assert not any('lateral' in name for name in plain['params']['neck'])
  neck = skip['params']['neck']
  # resnet18 at width 8: C4, C3, C2 have 32, 16, 8 channels; each stage has 16.
  for i, c in enumerate((32, 16, 8)):
    assert neck[f'up{i}_lateral']['kernel'].shape == (1, 1, c, 16)
    assert f'up{i}_lateral_norm' in skip['batch_stats']['neck']
  # The plain path keeps its names and shapes (checkpoints of either stay readable).
  for name, leaf in plain['params']['neck'].items():
    assert jax.tree.map(jnp.shape, neck[name]) == jax.tree.map(jnp.shape, leaf)


def test_bad_inputs_raise():
  with pytest.raises(ValueError, match='multiples of 32'):
    shapes_of(centernet.CenterNet(**TINY), (1, 48, 64, 3))
  with pytest.raises(ValueError, match='upsample'):
    shapes_of(centernet.CenterNet(**TINY, upsample='pixelshuffle'), (1, 64, 64, 3))


@pytest.fixture(scope='module')
def tiny_model():
  model = centernet.CenterNet(**TINY)
  x = jax.random.uniform(KEY, (2, 64, 64, 3))
  return model, jax.jit(model.init)(KEY, x), x


def test_heatmap_bias_init(tiny_model):
  model, variables, x = tiny_model
  bias = variables['params']['heatmap']['out']['bias']
  np.testing.assert_allclose(bias, np.full(3, -2.19), rtol=1e-6)
  np.testing.assert_array_equal(variables['params']['size']['out']['bias'], 0)
  out = jax.jit(model.apply)(variables, x)
  # Starts near p = 0.1 everywhere; size/offset start near 0.
  assert 0.05 < float(jax.nn.sigmoid(out['heatmap']).mean()) < 0.2
  assert float(jnp.abs(out['size']).max()) < 0.1


def test_deconv_is_torch_conv_transpose():
  """The 'deconv' stage equals torch ConvTranspose2d(k=4, s=2, p=1) with weight
  w_torch[in, out, kh, kw] = kernel[kh, kw, out, in] (no flip)."""
  neck = centernet.UpsampleNeck(channels=(3,), upsample='deconv', norm='none')
  x = jax.random.normal(KEY, (1, 5, 6, 2))
  variables = jax.jit(neck.init)(KEY, x)
  k = np.asarray(variables['params']['up0_conv']['kernel'])
  y = np.asarray(neck.apply(variables, x))[0]
  xn = np.asarray(x)[0]
  h, w, _ = xn.shape
  full = np.zeros((2 * h + 2, 2 * w + 2, 3))
  for i in range(h):  # out[2i - 1 + a, 2j - 1 + b] += x[i, j] @ w[:, :, a, b]
    for j in range(w):
      for a in range(4):
        for b in range(4):
          full[2 * i + a, 2 * j + b] += xn[i, j] @ k[a, b].T
  np.testing.assert_allclose(y, np.maximum(full[1:-1, 1:-1], 0), atol=1e-5)


def perfect_outputs(targets, num_classes):
  """Dense outputs that a perfect network would produce for these targets."""
  hm = np.clip(np.asarray(targets['heatmap']), 1e-4, 1 - 1e-4)
  batch, h, w, _ = hm.shape
  size = np.zeros((batch, h * w, 2), np.float32)
  offset = np.zeros((batch, h * w, 2), np.float32)
  for b, k in zip(*np.nonzero(np.asarray(targets['mask']))):
    size[b, targets['indices'][b, k]] = targets['size'][b, k]
    offset[b, targets['indices'][b, k]] = targets['offset'][b, k]
  return {'heatmap': jnp.asarray(np.log(hm / (1 - hm))),
          'size': jnp.asarray(size.reshape(batch, h, w, 2)),
          'offset': jnp.asarray(offset.reshape(batch, h, w, 2))}


def iou(a, b):
  ix = np.maximum(0, np.minimum(a[2], b[2]) - np.maximum(a[0], b[0]))
  iy = np.maximum(0, np.minimum(a[3], b[3]) - np.maximum(a[1], b[1]))
  inter = ix * iy
  area = lambda z: (z[2] - z[0]) * (z[3] - z[1])
  return inter / (area(a) + area(b) - inter)


def test_decode_recovers_boxes_from_perfect_outputs():
  rng = np.random.default_rng(0)
  batch, m, size, c = 3, 4, 128, 3
  # One box per quadrant (well separated centers), random size and sub-pixel position.
  corners = np.array([[0, 0], [64, 0], [0, 64], [64, 64]], np.float32)
  xy = corners[None] + rng.uniform(2, 20, size=(batch, m, 2))
  wh = rng.uniform(6, 40, size=(batch, m, 2))
  boxes = np.concatenate([xy, xy + wh], -1).astype(np.float32)
  classes = rng.integers(0, c, size=(batch, m)).astype(np.int32)
  valid = np.array([[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 1]], bool)
  targets = centernet_losses.centernet_targets(boxes, classes, valid, output_size=(32, 32),
                                       stride=4, num_classes=c)
  dets = jax.jit(lambda o: centernet.decode(o, max_detections=20))(
      perfect_outputs(targets, c))
  assert dets['boxes'].shape == (batch, 20, 4) and dets['classes'].dtype == jnp.int32
  scores = np.asarray(dets['scores'])
  assert (np.diff(scores, axis=1) <= 0).all()
  for b in range(batch):
    n = int(valid[b].sum())
    assert (scores[b, :n] > 0.99).all() and (scores[b, n:] < 0.01).all()
    for k in np.nonzero(valid[b])[0]:
      ious = [iou(boxes[b, k], dets['boxes'][b, d]) for d in range(n)]
      best = int(np.argmax(ious))
      assert ious[best] > 0.999, (b, k, ious)
      assert dets['classes'][b, best] == classes[b, k]
  assert np.asarray(dets['valid']).all()  # threshold 0: every kept peak
  strict = centernet.decode(perfect_outputs(targets, c), max_detections=20,
                            score_threshold=0.5)
  np.testing.assert_array_equal(np.asarray(strict['valid']).sum(1), valid.sum(1))


def test_decode_peak_suppression_and_padding():
  logits = jnp.full((1, 4, 4, 1), -10.0)
  logits = logits.at[0, 1, 1, 0].set(3.0).at[0, 1, 2, 0].set(2.0)  # neighbour: suppressed
  logits = logits.at[0, 3, 3, 0].set(1.0)
  out = {'heatmap': logits, 'size': jnp.ones((1, 4, 4, 2)),
         'offset': jnp.full((1, 4, 4, 2), 0.5)}
  dets = centernet.decode(out, max_detections=20, stride=4, score_threshold=0.01)
  assert dets['boxes'].shape == (1, 20, 4)  # padded beyond h*w*C = 16
  np.testing.assert_array_equal(np.asarray(dets['valid'])[0].sum(), 2)
  np.testing.assert_allclose(dets['scores'][0, :2], jax.nn.sigmoid(jnp.array([3.0, 1.0])))
  np.testing.assert_allclose(dets['boxes'][0, 0], [4, 4, 8, 8])  # center (6, 6), 4x4 px
  np.testing.assert_allclose(dets['boxes'][0, 1], [12, 12, 16, 16])
  assert not np.asarray(dets['valid'])[0, 16:].any()


def test_tiny_model_fits_one_batch(tiny_model):
  """Loss + grads are finite and a few Adam steps reduce the loss on one batch."""
  model, variables, _ = tiny_model
  rng = np.random.default_rng(1)
  images = jnp.asarray(rng.uniform(size=(2, 64, 64, 3)).astype(np.float32))
  boxes = jnp.array([[[8, 8, 30, 40], [36, 30, 60, 62]], [[10, 30, 50, 50], [0, 0, 0, 0]]],
                    jnp.float32)
  targets = centernet_losses.centernet_targets(boxes, jnp.array([[0, 2], [1, 0]]),
                                       jnp.array([[True, True], [True, False]]),
                                       output_size=(16, 16), stride=4, num_classes=3)
  tx = optax.adam(1e-2)

  def loss_fn(params, batch_stats):
    out, upd = model.apply({'params': params, 'batch_stats': batch_stats}, images,
                           train=True, mutable=['batch_stats'])
    loss = (focal.penalty_reduced_focal_loss(out['heatmap'], targets['heatmap'])
            + 0.1 * regression.masked_l1_loss(out['size'], targets['indices'],
                                              targets['size'], targets['mask'])
            + regression.masked_l1_loss(out['offset'], targets['indices'],
                                        targets['offset'], targets['mask']))
    return loss, upd['batch_stats']

  @jax.jit
  def step(params, batch_stats, opt_state):
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params,
                                                                           batch_stats)
    updates, opt_state = tx.update(grads, opt_state)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss, grads

  params, batch_stats = variables['params'], variables['batch_stats']
  opt_state = tx.init(params)
  losses = []
  for i in range(12):
    params, batch_stats, opt_state, loss, grads = step(params, batch_stats, opt_state)
    if i == 0:
      assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    losses.append(float(loss))
  assert np.isfinite(losses).all()
  assert losses[-1] < 0.7 * losses[0], losses
