"""YolactEdge pieces: partial backbone, FPN with given top-down maps, the flow net's
feature transfer, and the clip scan."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.models import yolact
from vision_jax.models import yolact_edge
from vision_jax.nn import fpn
from vision_jax.nn import resnet

SMALL = yolact_edge.YolactEdgeConfig(
    num_classes=3, backbone='resnet18', width=8, fpn_channels=16, num_prototypes=8,
    proto_channels=8, head_channels=8, anchor_scales=(12.0, 24.0, 48.0, 96.0, 192.0),
    anchor_reference_size=128, detections_per_image=10, flow_channels=8,
    flow_widths=(16, 16), keyframe_interval=2)

# 'rbg' keys: same tests, much faster init compiles on CPU than threefry.
KEY = jax.random.key(0, impl='rbg')
KEY1 = jax.random.key(1, impl='rbg')


@pytest.fixture(scope='module')
def edge():
  model = yolact_edge.YolactEdge(SMALL)
  frames = jax.random.randint(jax.random.key(1), (1, 3, 64, 64, 3), 0, 255).astype(jnp.uint8)
  variables = model.init(KEY, frames[:, 0])
  return model, variables, frames


def test_backbone_up_to_c3_equals_the_full_backbone():
  net = resnet.get_resnet('resnet18', width=8)
  x = jax.random.normal(jax.random.key(0), (1, 64, 64, 3))
  variables = net.init(KEY1, x)
  full = net.apply(variables, x)
  part = net.apply(variables, x, up_to='C3')
  assert sorted(part) == ['C2', 'C3']
  np.testing.assert_array_equal(part['C3'], full['C3'])
  with pytest.raises(ValueError, match='up_to'):
    net.apply(variables, x, up_to='C9')


def test_fpn_with_given_top_down_maps_reproduces_the_full_pass():
  feats = {f'C{i}': jax.random.normal(jax.random.key(i), (1, 128 // 2**i, 128 // 2**i, 4))
           for i in range(3, 6)}
  net = fpn.FPN(8, in_levels=('C3', 'C4', 'C5'), extra_levels=2, extra_kind='conv',
                upsample='bilinear', relu_outputs=True)
  variables = net.init(KEY, feats)
  full, inter = net.apply(variables, feats, with_intermediates=True)
  lateral = net.apply(variables, {'C3': feats['C3']}, laterals_only=True)
  np.testing.assert_array_equal(lateral['C3'], inter['laterals']['C3'])
  given = {name: inter['merged'][name] for name in ('C4', 'C5')}
  again = net.apply(variables, {}, top_down=given, laterals=lateral)
  for a, b in zip(full, again):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
  with pytest.raises(ValueError, match='coarsest'):
    net.apply(variables, feats, top_down={'C4': given['C4']})


def test_transfer_starts_as_the_identity(edge):
  """Zero-initialised flow and calibration: a non-keyframe on its own keyframe's image
  gives the keyframe's outputs exactly (identity warp, scale 1, bias 0)."""
  model, variables, frames = edge
  assert 'flow_net' in variables['params']
  outputs, cache = model.apply(variables, frames[:, 0], method=yolact_edge.YolactEdge.keyframe)
  assert sorted(cache) == ['C3_lateral', 'C4', 'C5']
  again, extra = model.apply(variables, frames[:, 0], cache,
                             method=yolact_edge.YolactEdge.non_keyframe)
  for key in outputs:
    np.testing.assert_allclose(again[key], outputs[key], rtol=1e-5, atol=1e-5)
  assert [f.shape for f in extra['flows']] == [(1, 4, 4, 2), (1, 2, 2, 2)]


def test_flow_moves_the_transferred_maps(edge):
  model, variables, frames = edge
  _, cache = model.apply(variables, frames[:, 0], method=yolact_edge.YolactEdge.keyframe)
  params = jax.tree.map(lambda x: x, variables['params'])
  bias = params['flow_net']['flow0']['bias']
  params['flow_net']['flow0']['bias'] = bias.at[0].set(1.0)  # dx = 1 level pixel
  moved, _ = model.apply({**variables, 'params': params}, cache, cache['C3_lateral'],
                         method=yolact_edge.YolactEdge.transfer)
  np.testing.assert_allclose(moved['C4'][:, :, :-1], cache['C4'][:, :, 1:], atol=1e-5)
  np.testing.assert_allclose(moved['C4'][:, :, -1], 0.0, atol=1e-6)  # zeros enter


def test_transferred_prototypes_follow_the_flow():
  """transfer_prototypes: a non-keyframe warps the keyframe's prototypes (identity at
  init) by the P4 flow carried to their resolution instead of running the protonet."""
  model = yolact_edge.YolactEdge(dataclasses.replace(SMALL, transfer_prototypes=True))
  frames = jax.random.randint(jax.random.key(2), (1, 2, 64, 64, 3), 0, 255).astype(jnp.uint8)
  variables = model.init(KEY, frames[:, 0])
  outputs, cache = model.apply(variables, frames[:, 0], method=yolact_edge.YolactEdge.keyframe)
  np.testing.assert_array_equal(cache['prototypes'], outputs['prototypes'])
  # On another frame the protonet would give other prototypes; the transfer keeps the key's.
  again, _ = model.apply(variables, frames[:, 1], cache,
                         method=yolact_edge.YolactEdge.non_keyframe)
  np.testing.assert_allclose(again['prototypes'], cache['prototypes'], atol=1e-6)
  own = model.apply(variables, frames[:, 1])['prototypes']
  assert not np.allclose(own, cache['prototypes'], atol=1e-3)
  params = jax.tree.map(lambda x: x, variables['params'])
  bias = params['flow_net']['flow0']['bias']
  params['flow_net']['flow0']['bias'] = bias.at[0].set(1.0)  # dx = 1 P4 pixel = 4 proto px
  moved, _ = model.apply({**variables, 'params': params}, frames[:, 1], cache,
                         method=yolact_edge.YolactEdge.non_keyframe)
  np.testing.assert_allclose(moved['prototypes'][:, :, :-4], cache['prototypes'][:, :, 4:],
                             atol=1e-5)


def test_clip_scan_uses_keyframes_every_k_frames(edge):
  model, variables, frames = edge
  run = jax.jit(lambda v, c, k: yolact_edge.predict_clip(model, v, c, keyframe_interval=k),
                static_argnums=2)
  every = run(variables, frames, 1)
  assert every['masks'].shape == (1, 3, 10, 64, 64)
  # k = 1 is YOLACT on each frame.
  for t in range(3):
    single = yolact.predict(model, variables, frames[:, t])
    np.testing.assert_allclose(every['boxes'][:, t], single['boxes'], atol=1e-3)
  # With an untrained (identity) flow net, k = 2 differs from k = 1 only on frame 1,
  # which reuses frame 0's P4 / P5.
  second = run(variables, frames, 2)
  for t in (0, 2):
    np.testing.assert_allclose(second['scores'][:, t], every['scores'][:, t], atol=1e-5)
  assert not np.allclose(second['scores'][:, 1], every['scores'][:, 1], atol=1e-5)
  with pytest.raises(ValueError, match='keyframe_interval'):
    yolact_edge.predict_clip(model, variables, frames, keyframe_interval=0)


def test_config_checks():
  with pytest.raises(ValueError, match='flow_widths'):
    dataclasses.replace(SMALL, flow_widths=(8,))
  with pytest.raises(ValueError, match='unknown YolactEdge model keys'):
    yolact_edge.from_config_dict({'flow_width': 3}, num_classes=2)
