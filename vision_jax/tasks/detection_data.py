"""The input side shared by the detection tasks: `config.data` through the detection pipeline."""
from vision_jax.data import detection_pipeline


class DetectionData:
  """`train_data` / `eval_data` of a `base.Task` that reads detection batches.

  Reads `config.data` (dataset, splits, image size, augmentation) with
  `detection_pipeline.make_detection_dataset_from_config`, at `config.train.batch_size`
  for training and `config.eval.batch_size` for evaluation. A task adds its own
  pipeline options (masks, keypoints) by overriding `data_options`.
  """

  def data_options(self) -> dict:
    """Extra `make_detection_dataset` arguments of this task (e.g. with_masks)."""
    return {}

  def _data(self, split, training, batch_size, **kwargs):
    return detection_pipeline.make_detection_dataset_from_config(
        self.config.data, split=split, batch_size=batch_size, training=training,
        seed=self.config.seed, **self.data_options(), **kwargs)

  def train_data(self, *, start_batch, process_index, process_count):
    return self._data(self.config.data.train_split, True, self.config.train.batch_size,
                      start_batch=start_batch, process_index=process_index,
                      process_count=process_count)

  def eval_data(self, *, process_index, process_count):
    return self._data(self.config.data.eval_split, False, self.config.eval.batch_size,
                      process_index=process_index, process_count=process_count)
