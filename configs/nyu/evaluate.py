"""Evaluate given networks on the 654 NYU-v2 test images, without the training set.

Needs only the test part of the csv + PNG distribution (`nyu2_test.csv` and the files it
lists, or `nyu_data.zip`) in `--config.data.manual_dir`, and N (required) and G, G_adv, N_adv
(optional; the tables' methods that need a missing network are left out) as checkpoints of
`mde_adv.variables_io` (e.g. imported with `python -m mde_adv.import_torch`). Runs the
stages data (builds the test split alone: `nyu_depth_v2_manual/csv_png_test`), evaluate and
report; nothing is trained.

  python -m mde_adv.main --config configs/nyu/evaluate.py --workdir runs/nyu_eval \
      --config.data.manual_dir=/data/nyu --config.networks.N=ckpt/N --config.networks.G=ckpt/G

Other distributions: `--config.data.pipeline.name=nyu_depth_v2_manual/labeled_mat_test` (or
`h5_test`); an already prepared dataset: `--config.data.pipeline.name=<its version folder>`.
"""

from configs.nyu import paper


def get_config():
    c = paper.get_config()
    c.stages = ("data", "evaluate", "report")
    c.data.pipeline.name = "nyu_depth_v2_manual/csv_png_test"
    c.data.pipeline.worker_count = 0  # the test transform is light: read in this process
    c.networks.N = ""  # required: the depth network to evaluate
    return c
