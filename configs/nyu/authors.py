"""Evaluate the authors' released N and G (WACV 2019 / ICCV 2019) on NYU-v2, and train G_adv
and N_adv against that N, with no code change: only the networks are given.

  python -m mde_adv.import_torch --model depth --encoder resnet50 \
      --checkpoint model_resnet.pth.tar --out ckpt/N
  python -m mde_adv.import_torch --model saliency --encoder drn_d_22 \
      --checkpoint net_mask.pth.tar --out ckpt/G
  python -m mde_adv.main --config configs/nyu/authors.py --workdir runs/authors \
      --config.data.manual_dir=/data/nyu --config.networks.N=ckpt/N --config.networks.G=ckpt/G
"""

from configs.nyu import paper


def get_config():
    c = paper.get_config()
    c.networks.N = ""  # required: the imported authors' N
    c.networks.G = ""  # required: the imported authors' G
    return c
