"""`digits` (scikit-learn's handwritten digits, vision_jax's builder) as labelled images."""
import tensorflow as tf
import tensorflow_datasets as tfds

from vision_jax.data import labelled_images


def labelled_image_source(builder) -> labelled_images.LabelledImageSource:
  features = builder.info.features
  shape = tuple(int(s) for s in features['image'].shape)

  def canonical(example):
    image = tf.io.decode_png(example['image'], channels=shape[-1])
    return {'image': tf.ensure_shape(image, shape), 'label': example['label']}

  return labelled_images.LabelledImageSource(
      builder=builder, class_names=tuple(features['label'].names), image_shape=shape,
      decoders={'image': tfds.decode.SkipDecoding()}, canonical=canonical)
